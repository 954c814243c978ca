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
}
