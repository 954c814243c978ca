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
        let hashes = facts.map { FNV1a.hash($0.value) }
        var low = hashes.map { Double($0 & 0xFFFF_FFFF) }
        var high = hashes.map { Double($0 >> 32) }
        var (lowMax, highMax) = (low, high)
        try allReduceMinimum(&low)
        try allReduceMinimum(&high)
        try allReduceMaximum(&lowMax)
        try allReduceMaximum(&highMax)
        return facts.indices.filter { low[$0] != lowMax[$0] || high[$0] != highMax[$0] }.map { facts[$0].name }
    }
}
