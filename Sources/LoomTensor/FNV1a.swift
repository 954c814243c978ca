/// The 64-bit FNV-1a hash: a stable fingerprint across runs and machines (Swift's `Hasher` is
/// seeded per process), for run identities and splits that must not depend on file order.
public struct FNV1a: Sendable {
    public private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    /// Adds one byte.
    public mutating func add(byte: UInt8) {
        value ^= UInt64(byte)
        value = value &* 0x100_0000_01b3
    }

    /// Adds the 8 bytes of `word`, least significant first.
    public mutating func add(_ word: UInt64) {
        for shift in stride(from: 0, to: 64, by: 8) { add(byte: UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
    }

    /// The hash of a text's UTF-8 bytes.
    public static func hash(_ text: String) -> UInt64 {
        var h = FNV1a()
        for byte in text.utf8 { h.add(byte: byte) }
        return h.value
    }
}
