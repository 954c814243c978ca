import CBLAS

/// Settings of the OpenBLAS library every matrix product goes through.
public enum BLAS {
    /// Sets the number of threads OpenBLAS uses for one product. Results are bit-reproducible
    /// only for a fixed thread count: the split of a product's inner sums depends on it.
    public static func setThreadCount(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
    }

    /// The number of threads OpenBLAS currently uses.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

    /// OpenBLAS's description of its build (version, target core, threading).
    public static var configuration: String {
        guard let text = openblas_get_config() else { return "unknown" }
        return String(cString: text)
    }
}
