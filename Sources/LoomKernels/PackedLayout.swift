/// The packed layout of a batch of sequences sorted by length, longest first (PyTorch's
/// PackedSequence): step t holds the first `batchSizes[t]` sequences, stored as rows
/// `offsets[t] ..< offsets[t + 1]` of a [N, F] matrix, N = the sum of the lengths.
///
/// Because the batch is sorted, the sequences still running at step t are a prefix of the
/// batch, so each step's recurrent product is one GEMM over exactly the live rows.
public struct PackedLayout: Equatable, Sendable {
    /// Sequence lengths, non-increasing. Shape [B].
    public let lengths: [Int]
    /// Live sequences per step, non-increasing. Shape [T].
    public let batchSizes: [Int]
    /// Row offsets of each step. Shape [T + 1].
    public let offsets: [Int]

    /// Whether step t is stored in the rows of step `steps - 1 - t` (equal lengths only): a
    /// reverse direction then reads its input, and writes its outputs, in the batch's own time
    /// order, with no gather of either.
    public let stepsStoredInReverse: Bool

    /// - Precondition: `lengths` is non-increasing and non-negative (callers sort first); all
    ///   equal when `stepsStoredInReverse`.
    public init(sortedLengths lengths: [Int], stepsStoredInReverse: Bool = false) {
        precondition(zip(lengths, lengths.dropFirst()).allSatisfy { $0 >= $1 } && (lengths.last ?? 0) >= 0,
                     "PackedLayout needs non-negative lengths sorted longest first, got \(lengths)")
        precondition(!stepsStoredInReverse || Set(lengths).count <= 1, "steps stored in reverse need equal lengths, got \(lengths)")
        self.stepsStoredInReverse = stepsStoredInReverse
        self.lengths = lengths
        let steps = lengths.first ?? 0
        var sizes = [Int](repeating: 0, count: steps)
        for length in lengths { for t in 0..<length { sizes[t] += 1 } }
        batchSizes = sizes
        var running = 0
        offsets = [0] + sizes.map { running += $0; return running }
    }

    public var batch: Int { lengths.count }
    public var steps: Int { batchSizes.count }
    /// The number of packed rows (the sum of the lengths).
    public var rows: Int { offsets.last ?? 0 }

    /// The first row of step t (`batchSizes[t]` rows from there).
    @inline(__always)
    public func rowStart(_ t: Int) -> Int { stepsStoredInReverse ? offsets[steps - 1 - t] : offsets[t] }
}
