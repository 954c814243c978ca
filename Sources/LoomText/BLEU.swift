import Foundation

/// Corpus BLEU (Papineni et al. 2002) as sacreBLEU computes it by default: the "13a"
/// tokenization of mteval-v13a, n-grams up to 4, one or more references per segment, "exp" smoothing
/// (an order with no match gets precision 1 / (2^k total), k counting such orders), the
/// brevity penalty exp(1 - r/c) when the output is shorter than the references.
///
/// ```swift
/// let score = BLEU.corpus(hypotheses: ["the cat sat"], references: ["the cat sat down"])
/// print(score.score)   // 0-100
/// ```
public enum BLEU {
    /// A score and the statistics it came from.
    public struct Score: Equatable, Sendable {
        /// 0-100.
        public var score: Double
        /// Matched and total n-grams of orders 1-4 over the corpus.
        public var correct: [Int], total: [Int]
        /// Per-order precisions (percent, after smoothing) and the brevity penalty.
        public var precisions: [Double], brevityPenalty: Double
        /// Tokens in the hypotheses and the references.
        public var hypothesisLength: Int, referenceLength: Int
    }

    public static let maximumOrder = 4

    /// Corpus BLEU of `hypotheses` against `references` (same count, same order).
    public static func corpus(hypotheses: [String], references: [String]) -> Score {
        corpus(hypotheses: hypotheses, referenceSets: references.map { [$0] })
    }

    /// Corpus BLEU with one or more references per hypothesis, as sacreBLEU takes several
    /// reference streams: an n-gram is credited up to its largest count in any one reference,
    /// and the reference length of a segment is the one closest to the hypothesis length (the
    /// shorter on a tie). A hypothesis with no reference counts its n-grams and nothing else.
    public static func corpus(hypotheses: [String], referenceSets: [[String]]) -> Score {
        var correct = [Int](repeating: 0, count: maximumOrder), total = correct
        var hypothesisLength = 0, referenceLength = 0
        for (hypothesis, references) in zip(hypotheses, referenceSets) {
            let h = tokenize13a(hypothesis).split(separator: " ").map(String.init)
            let rs = references.map { tokenize13a($0).split(separator: " ").map(String.init) }
            hypothesisLength += h.count
            referenceLength += rs.map(\.count).min { a, b in (abs(a - h.count), a) < (abs(b - h.count), b) } ?? 0
            for n in 1...maximumOrder {
                var referenceGrams: [[String]: Int] = [:]
                for r in rs { referenceGrams.merge(ngrams(r, n), uniquingKeysWith: Swift.max) }
                for (gram, count) in ngrams(h, n) {
                    total[n - 1] += count
                    correct[n - 1] += Swift.min(count, referenceGrams[gram] ?? 0)
                }
            }
        }
        var penalty = 1.0
        if hypothesisLength < referenceLength {
            penalty = hypothesisLength > 0 ? Foundation.exp(1 - Double(referenceLength) / Double(hypothesisLength)) : 0
        }
        var precisions = [Double](repeating: 0, count: maximumOrder)
        guard correct.contains(where: { $0 > 0 }) else {
            return Score(score: 0, correct: correct, total: total, precisions: precisions, brevityPenalty: penalty,
                         hypothesisLength: hypothesisLength, referenceLength: referenceLength)
        }
        var smoothing = 1.0
        for n in 1...maximumOrder {
            if total[n - 1] == 0 { break }
            if correct[n - 1] == 0 {
                smoothing *= 2
                precisions[n - 1] = 100 / (smoothing * Double(total[n - 1]))
            } else {
                precisions[n - 1] = 100 * Double(correct[n - 1]) / Double(total[n - 1])
            }
        }
        // sacreBLEU takes log(0) as -9999999999, which makes the score 0.
        let logs = precisions.map { $0 == 0 ? -9_999_999_999 : Foundation.log($0) }
        let score = penalty * Foundation.exp(logs.reduce(0, +) / Double(maximumOrder))
        return Score(score: score, correct: correct, total: total, precisions: precisions, brevityPenalty: penalty,
                     hypothesisLength: hypothesisLength, referenceLength: referenceLength)
    }

    static func ngrams(_ tokens: [String], _ n: Int) -> [[String]: Int] {
        var counts: [[String]: Int] = [:]
        guard tokens.count >= n else { return counts }
        for i in 0...(tokens.count - n) { counts[Array(tokens[i..<(i + n)]), default: 0] += 1 }
        return counts
    }

    /// mteval-v13a's tokenization as sacreBLEU's "13a": unescape four HTML entities, split off
    /// punctuation and symbols, periods and commas unless between digits, and a dash after a digit.
    public static func tokenize13a(_ line: String) -> String {
        var text = line.replacingOccurrences(of: "<skipped>", with: "").replacingOccurrences(of: "-\n", with: "")
            .replacingOccurrences(of: "\n", with: " ")
        if text.contains("&") {
            text = text.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
                .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
        }
        var scalars = Array(" \(text) ".unicodeScalars)
        // ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 "
        scalars = scalars.flatMap { c -> [Unicode.Scalar] in
            let v = c.value
            let split = (0x7B...0x7E).contains(v) || (0x5B...0x60).contains(v) || (0x20...0x26).contains(v)
                || (0x28...0x2B).contains(v) || (0x3A...0x40).contains(v) || v == 0x2F
            return split ? [" ", c, " "] : [c]
        }
        func isDigit(_ c: Unicode.Scalar) -> Bool { (0x30...0x39).contains(c.value) }
        func isPeriodOrComma(_ c: Unicode.Scalar) -> Bool { c == "." || c == "," }
        // Each rule is a two-character pattern replaced left to right without overlap, as re.sub does.
        func substitute(_ first: (Unicode.Scalar) -> Bool, _ second: (Unicode.Scalar) -> Bool,
                        _ replacement: (Unicode.Scalar, Unicode.Scalar) -> [Unicode.Scalar]) {
            var out: [Unicode.Scalar] = []
            out.reserveCapacity(scalars.count + 16)
            var i = 0
            while i < scalars.count {
                if i + 1 < scalars.count, first(scalars[i]), second(scalars[i + 1]) {
                    out += replacement(scalars[i], scalars[i + 1])
                    i += 2
                } else {
                    out.append(scalars[i])
                    i += 1
                }
            }
            scalars = out
        }
        substitute({ !isDigit($0) }, isPeriodOrComma) { [$0, " ", $1, " "] }   // ([^0-9])([\.,]) -> "\1 \2 "
        substitute(isPeriodOrComma, { !isDigit($0) }) { [" ", $0, " ", $1] }   // ([\.,])([^0-9]) -> " \1 \2"
        substitute(isDigit, { $0 == "-" }) { [$0, " ", $1, " "] }              // ([0-9])(-) -> "\1 \2 "
        var result = String.UnicodeScalarView()
        result.append(contentsOf: scalars)
        return String(result).split(whereSeparator: { $0.isWhitespace }).joined(separator: " ")
    }
}
