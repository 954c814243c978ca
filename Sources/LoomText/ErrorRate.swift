/// Edit distances and the error rates of speech recognition and transcription.
public enum ErrorRate {
    /// Levenshtein distance: the fewest substitutions, insertions and deletions turning `a`
    /// into `b` (one row of the dynamic programme at a time, O(|a| |b|) time, O(|b|) memory).
    public static func editDistance<T: Equatable>(_ a: [T], _ b: [T]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previous = Array(0...b.count), current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                current[j] = Swift.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            swap(&previous, &current)
        }
        return previous[b.count]
    }

    /// One alignment of fewest edits between a reference and a hypothesis, as pairs: equal
    /// elements and substitutions pair both, a deletion has no hypothesis element, an insertion
    /// no reference element (as sclite aligns words). Where several alignments have the fewest
    /// edits, a match or substitution is preferred to a deletion, and a deletion to an insertion,
    /// walking back from the ends.
    ///
    /// ```swift
    /// ErrorRate.alignment(reference: Array("kitten"), hypothesis: Array("sitting"))
    /// // k/s i/i t/t t/t e/i n/n -/g: two substitutions and an insertion
    /// ```
    public static func alignment<T: Equatable>(reference r: [T], hypothesis h: [T]) -> [(reference: T?, hypothesis: T?)] {
        let columns = h.count + 1
        var d = [Int](repeating: 0, count: (r.count + 1) * columns)
        for i in 0...r.count { d[i * columns] = i }
        for j in 0...h.count { d[j] = j }
        if !r.isEmpty && !h.isEmpty {
            for i in 1...r.count {
                for j in 1...h.count {
                    d[i * columns + j] = Swift.min(d[(i - 1) * columns + j - 1] + (r[i - 1] == h[j - 1] ? 0 : 1),
                                                   d[(i - 1) * columns + j] + 1, d[i * columns + j - 1] + 1)
                }
            }
        }
        var pairs: [(reference: T?, hypothesis: T?)] = []
        var (i, j) = (r.count, h.count)
        while i > 0 || j > 0 {
            if i > 0 && j > 0 && d[i * columns + j] == d[(i - 1) * columns + j - 1] + (r[i - 1] == h[j - 1] ? 0 : 1) {
                pairs.append((r[i - 1], h[j - 1]))
                (i, j) = (i - 1, j - 1)
            } else if i > 0 && d[i * columns + j] == d[(i - 1) * columns + j] + 1 {
                pairs.append((r[i - 1], nil))
                i -= 1
            } else {
                pairs.append((nil, h[j - 1]))
                j -= 1
            }
        }
        return pairs.reversed()
    }

    /// Character error rate: total edit distance of the hypotheses to the references over the
    /// references' total length (can exceed 1 when hypotheses are long).
    public static func characters(hypotheses: [String], references: [String]) -> Double {
        let errors = zip(hypotheses, references).reduce(0) { $0 + editDistance(Array($1.0), Array($1.1)) }
        let total = references.reduce(0) { $0 + $1.count }
        return Double(errors) / Double(Swift.max(total, 1))
    }

    /// Word error rate: as `characters`, over whitespace-separated words.
    public static func words(hypotheses: [String], references: [String]) -> Double {
        func split(_ s: String) -> [Substring] { s.split(whereSeparator: { $0.isWhitespace }) }
        let errors = zip(hypotheses, references).reduce(0) { $0 + editDistance(split($1.0), split($1.1)) }
        let total = references.reduce(0) { $0 + split($1).count }
        return Double(errors) / Double(Swift.max(total, 1))
    }

    /// Error rates against several accepted references per hypothesis (pronunciation variants,
    /// several translations): each hypothesis is scored against its closest reference (fewest
    /// edits; the first listed on a tie), and the errors over the lengths of those references.
    /// With one reference each this is `characters` or `words`.
    public static func closest<T: Equatable>(hypotheses: [[T]], referenceSets: [[[T]]]) -> Double {
        var errors = 0, total = 0
        for (hypothesis, references) in zip(hypotheses, referenceSets) {
            guard let first = references.first else { errors += hypothesis.count; continue }
            var best = (distance: editDistance(hypothesis, first), length: first.count)
            for r in references.dropFirst() where best.distance > 0 {
                let d = editDistance(hypothesis, r)
                if d < best.distance { best = (d, r.count) }
            }
            errors += best.distance
            total += best.length
        }
        return Double(errors) / Double(Swift.max(total, 1))
    }

    /// Character error rate against the closest of several references.
    public static func characters(hypotheses: [String], referenceSets: [[String]]) -> Double {
        closest(hypotheses: hypotheses.map { Array($0) }, referenceSets: referenceSets.map { $0.map { Array($0) } })
    }

    /// Word (or phone) error rate against the closest of several references.
    public static func words(hypotheses: [String], referenceSets: [[String]]) -> Double {
        func split(_ s: String) -> [Substring] { s.split(whereSeparator: { $0.isWhitespace }) }
        return closest(hypotheses: hypotheses.map(split), referenceSets: referenceSets.map { $0.map(split) })
    }
}
