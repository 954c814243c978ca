/// Loom's version, as `loom --version` prints it.
public enum LoomVersion {
    public static let current = "0.2.0"
}
