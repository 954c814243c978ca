import LoomTensor

/// How examples are grouped into batches each epoch.
public enum BatchOrder: Sendable, Equatable {
    /// Wolfram's bucketing: sort by length into `buckets` groups of equal size, shuffle within
    /// each group, cut into batches, shuffle the order of the batches. Little padding, still random.
    case bucketed(buckets: Int)
    /// Shuffle everything, then cut into batches.
    case shuffled
    /// In order, never shuffled (stateful training: batch k continues batch k - 1).
    case sequential
}

/// Batches of example indices for one epoch, and the padding they waste.
public enum BatchPlan {
    /// Batches of at most `batchSize` examples (or, with `tokenBudget`, of at most that many
    /// padded positions: count times the longest length), in the given order.
    public static func batches(lengths: [Int], batchSize: Int, order: BatchOrder, tokenBudget: Int? = nil,
                               using generator: inout SeededGenerator) -> [[Int]] {
        let size = Swift.max(batchSize, 1)
        func cut(_ indices: [Int]) -> [[Int]] {
            var out: [[Int]] = [], current: [Int] = [], longest = 0
            for i in indices {
                let l = Swift.max(longest, lengths[i])
                let full = current.count >= size || (tokenBudget.map { !current.isEmpty && (current.count + 1) * l > $0 } ?? false)
                if full {
                    out.append(current)
                    current = []
                    longest = 0
                }
                current.append(i)
                longest = Swift.max(longest, lengths[i])
            }
            if !current.isEmpty { out.append(current) }
            return out
        }
        switch order {
        case .sequential:
            return cut(Array(lengths.indices))
        case .shuffled:
            return cut(Array(lengths.indices).shuffled(using: &generator))
        case let .bucketed(buckets):
            // Shuffle first so that equal lengths land in random order, then a stable sort by length.
            let sorted = Array(lengths.indices).shuffled(using: &generator).enumerated()
                .sorted { (lengths[$0.element], $0.offset) < (lengths[$1.element], $1.offset) }.map(\.element)
            let groups = Swift.max(1, Swift.min(buckets, sorted.count))
            var batches: [[Int]] = []
            for g in 0..<groups {
                let range = (g * sorted.count / groups)..<((g + 1) * sorted.count / groups)
                batches += cut(Array(sorted[range]).shuffled(using: &generator))
            }
            return batches.shuffled(using: &generator)
        }
    }

    /// The fraction of padded positions: sum over batches of (count x longest - sum of lengths),
    /// over the sum of count x longest.
    public static func paddedFraction(_ batches: [[Int]], lengths: [Int]) -> Double {
        var padded = 0, total = 0
        for batch in batches {
            let longest = batch.map { lengths[$0] }.max() ?? 0
            total += longest * batch.count
            padded += batch.reduce(0) { $0 + longest - lengths[$1] }
        }
        return total == 0 ? 0 : Double(padded) / Double(total)
    }
}
