import Foundation

/// A seeded pseudo-random generator (xoshiro256**, seeded through SplitMix64).
///
/// Its whole state is four words, so it can be saved in a checkpoint and restored exactly.
public struct SeededGenerator: RandomNumberGenerator, Codable, Equatable, Sendable {
    public var state: [UInt64]

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) {
        var s = seed
        state = (0..<4).map { _ in
            // SplitMix64: spreads one seed over the four state words.
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    public mutating func next() -> UInt64 {
        let result = rotate(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]
        state[3] ^= state[1]
        state[1] ^= state[2]
        state[0] ^= state[3]
        state[2] ^= t
        state[3] = rotate(state[3], 45)
        return result
    }

    private func rotate(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// A uniform value in [0, 1) with 53 random bits.
    public mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// A standard normal value (Box-Muller; the second value of each pair is discarded so the
    /// state alone determines the sequence).
    public mutating func nextNormal() -> Double {
        let u1 = max(nextUnit(), Double.leastNormalMagnitude)
        let u2 = nextUnit()
        return (-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2)
    }
}

/// A shared, lock-protected generator: what layers draw initial weights and dropout masks from,
/// so that one seed controls a whole run.
public final class RandomSource: @unchecked Sendable {
    private var generator: SeededGenerator
    private let lock = NSLock()

    public init(seed: UInt64) { generator = SeededGenerator(seed: seed) }

    /// The process-wide default source; `reseed` it at the start of a run.
    public static let shared = RandomSource(seed: 0x5EED)

    /// Restarts the sequence from `seed`.
    public func reseed(_ seed: UInt64) { withGenerator { $0 = SeededGenerator(seed: seed) } }

    /// The generator's state, for checkpoints.
    public var generatorState: SeededGenerator {
        get { withGenerator { $0 } }
        set { withGenerator { $0 = newValue } }
    }

    /// Runs `body` with exclusive access to the generator.
    public func withGenerator<R>(_ body: (inout SeededGenerator) throws -> R) rethrows -> R {
        lock.lock()
        defer { lock.unlock() }
        return try body(&generator)
    }
}

extension Tensor {
    /// Elements drawn from a normal distribution.
    public static func randomNormal(
        _ shape: [Int], mean: Scalar = 0, standardDeviation: Scalar = 1, using source: RandomSource = .shared
    ) throws -> Tensor {
        try validate(shape: shape)
        let values = draw(shape.reduce(1, *), from: source, offset: mean, scale: standardDeviation) { $0.nextNormal() }
        return Tensor(unchecked: shape, scalars: values)
    }

    /// Elements drawn uniformly from [lower, upper).
    public static func randomUniform(
        _ shape: [Int], lower: Scalar = 0, upper: Scalar = 1, using source: RandomSource = .shared
    ) throws -> Tensor {
        try validate(shape: shape)
        let values = draw(shape.reduce(1, *), from: source, offset: lower, scale: upper - lower) { $0.nextUnit() }
        return Tensor(unchecked: shape, scalars: values)
    }

    /// `count` elements offset + scale * Scalar(sample). Float and Double run concrete loops:
    /// this generic code called from another module is not specialized, and a generic loop sent
    /// every element through witness tables (measured: about 300 ns per element; a fifth of the
    /// lstm-medium-infer benchmark process went to drawing its weights and inputs).
    static func draw(_ count: Int, from source: RandomSource, offset: Scalar, scale: Scalar,
                     _ sample: (inout SeededGenerator) -> Double) -> [Scalar] {
        source.withGenerator { g in
            if Scalar.self == Float.self {
                return unsafeBitCast(drawn(count, &g, unsafeBitCast(offset, to: Float.self), unsafeBitCast(scale, to: Float.self), sample),
                                     to: [Scalar].self)
            }
            if Scalar.self == Double.self {
                return unsafeBitCast(drawn(count, &g, unsafeBitCast(offset, to: Double.self), unsafeBitCast(scale, to: Double.self), sample),
                                     to: [Scalar].self)
            }
            return (0..<count).map { _ in offset + scale * Scalar(sample(&g)) }
        }
    }
}

/// The loop of `Tensor.draw` for a concrete T (specialized at each of its two calls).
private func drawn<T: BinaryFloatingPoint>(_ count: Int, _ g: inout SeededGenerator, _ offset: T, _ scale: T,
                                           _ sample: (inout SeededGenerator) -> Double) -> [T] {
    [T](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count { buffer[i] = offset + scale * T(sample(&g)) }
        initialized = count
    }
}
