import Foundation
import LoomTensor

/// The collective operations data-parallel training needs, among `size` processes (ranks) that
/// run the same program. `Trainer` depends on this protocol only: `LoomDistributed` implements
/// it over MPI, and a run without one is a single process that needs no MPI at all.
///
/// Every rank must make the same calls in the same order with buffers of the same length;
/// a failed call throws `CommunicatorError`.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Sums `values` element by element over every rank, in place, on every rank.
    func allReduceSum(_ values: inout [Float]) throws
    func allReduceSum(_ values: inout [Double]) throws
    /// The element-wise minimum and maximum over every rank, in place.
    func allReduceMinimum(_ values: inout [Double]) throws
    func allReduceMaximum(_ values: inout [Double]) throws
    /// Ends every rank of the job at once (one rank's error must not leave the others waiting
    /// in a collective forever).
    func abort(code: Int32) -> Never
}

/// A collective operation that failed (a rank died, the transport broke).
public struct CommunicatorError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension Communicator {
    /// Whether this rank writes the run's files (checkpoints, logs, plots, models): rank 0.
    public var isPrimary: Bool { rank == 0 }

    /// Compares named facts across ranks (each as a 64-bit hash of its text); returns the names
    /// of those that differ on some rank. Every rank must pass the same names.
    public func differingFacts(_ facts: [(name: String, value: String)]) throws -> [String] {
        // A 64-bit hash as two 32-bit halves: exact in Double.
        var low = facts.map { Double(FNV1a.hash($0.value) & 0xFFFF_FFFF) }
        var high = facts.map { Double(FNV1a.hash($0.value) >> 32) }
        var (lowMax, highMax) = (low, high)
        try allReduceMinimum(&low)
        try allReduceMinimum(&high)
        try allReduceMaximum(&lowMax)
        try allReduceMaximum(&highMax)
        return facts.indices.filter { low[$0] != lowMax[$0] || high[$0] != highMax[$0] }.map { facts[$0].name }
    }
}

/// The buffer of one distributed step's gradient sum: every parameter's gradient times this
/// rank's weight, laid end to end (zeros for a rank with nothing to contribute), and back.
enum GradientBuffer {
    static func pack(_ gradients: [[Float]?], counts: [Int], weight: Float) -> [Float] {
        var flat = [Float](repeating: 0, count: counts.reduce(0, +))
        flat.withUnsafeMutableBufferPointer { out in
            var offset = 0
            for (gradient, count) in zip(gradients, counts) {
                if let gradient {
                    gradient.withUnsafeBufferPointer { g in for i in 0..<count { out[offset + i] = g[i] * weight } }
                }
                offset += count
            }
        }
        return flat
    }

    /// The summed buffer cut back into gradients, each divided by the ranks' total weight.
    static func unpack(_ flat: [Float], counts: [Int], total: Float) -> [[Float]] {
        var offset = 0
        return flat.withUnsafeBufferPointer { sum in
            counts.map { count in
                defer { offset += count }
                return [Float](unsafeUninitializedCapacity: count) { out, initialized in
                    for i in 0..<count { out[i] = sum[offset + i] / total }
                    initialized = count
                }
            }
        }
    }
}
