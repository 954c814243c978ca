import Foundation

/// Words and punctuation to indices and back (Wolfram's `NetEncoder["Tokens"]`, Keras's
/// `TextVectorization` with a word split).
///
/// Splitting is Unicode-aware by a regular expression (`pattern`): by default a token is a run of
/// letters (with marks, digits and inner apostrophes), a run of digits, or a single other
/// non-space character. Index layout: 0 padding, 1 unknown, 2 start, 3 end, then the vocabulary
/// (most frequent first, ties in code-point order).
///
/// ```swift
/// let words = try WordTokenizer(learningFrom: corpus, lowercase: true, maximumSize: 10_000, minimumCount: 2)
/// let ids = try words.encode("The cat sat.")
/// ```
public struct WordTokenizer: Codable, Equatable, Sendable {
    public static let defaultPattern = #"[\p{L}\p{M}][\p{L}\p{M}\p{Nd}'’]*|\p{N}+|[^\s\p{L}\p{M}\p{N}]"#
    public static let padding = 0, unknown = 1, start = 2, end = 3
    static let firstWordIndex = 4

    public let pattern: String
    public let lowercase: Bool
    public let vocabulary: [String]
    private var lookup: [String: Int] = [:]
    /// `pattern` compiled once (compiling it for every text took most of the time of encoding).
    private let compiled: CompiledPattern
    private enum CodingKeys: String, CodingKey { case pattern, lowercase, vocabulary }

    public var size: Int { Self.firstWordIndex + vocabulary.count }

    /// A tokenizer over a given vocabulary. Throws on a bad pattern or a repeated word.
    public init(vocabulary: [String], pattern: String = WordTokenizer.defaultPattern, lowercase: Bool = false) throws {
        compiled = CompiledPattern(try Self.regex(pattern))
        guard Set(vocabulary).count == vocabulary.count else {
            throw TextEncodingError.invalidAlphabet("the vocabulary repeats a word")
        }
        self.pattern = pattern
        self.lowercase = lowercase
        self.vocabulary = vocabulary
        for (i, w) in vocabulary.enumerated() { lookup[w] = Self.firstWordIndex + i }
    }

    /// The vocabulary of `corpus`: tokens seen at least `minimumCount` times, the `maximumSize`
    /// most frequent.
    public init(learningFrom corpus: [String], pattern: String = WordTokenizer.defaultPattern, lowercase: Bool = false,
                maximumSize: Int? = nil, minimumCount: Int = 1) throws {
        let regex = try Self.regex(pattern)
        var counts: [String: Int] = [:]
        for text in corpus { for token in Self.tokens(text, regex: regex, lowercase: lowercase) { counts[token, default: 0] += 1 } }
        var words = counts.filter { $0.value >= minimumCount }.sorted {
            $0.value != $1.value ? $0.value > $1.value : $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars)
        }.map(\.key)
        if let maximumSize { words = Array(words.prefix(Swift.max(maximumSize, 0))) }
        try self.init(vocabulary: words, pattern: pattern, lowercase: lowercase)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(vocabulary: try c.decode([String].self, forKey: .vocabulary), pattern: try c.decode(String.self, forKey: .pattern),
                      lowercase: try c.decode(Bool.self, forKey: .lowercase))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(pattern, forKey: .pattern)
        try c.encode(lowercase, forKey: .lowercase)
        try c.encode(vocabulary, forKey: .vocabulary)
    }

    public static func == (a: WordTokenizer, b: WordTokenizer) -> Bool {
        a.pattern == b.pattern && a.lowercase == b.lowercase && a.vocabulary == b.vocabulary
    }

    static func regex(_ pattern: String) throws -> NSRegularExpression {
        do { return try NSRegularExpression(pattern: pattern) } catch {
            throw TextEncodingError.invalidAlphabet("bad token pattern \(String(reflecting: pattern)): \(error)")
        }
    }

    static func tokens(_ text: String, regex: NSRegularExpression, lowercase: Bool) -> [String] {
        let source = lowercase ? text.lowercased() : text
        let ns = source as NSString
        return regex.matches(in: source, range: NSRange(location: 0, length: ns.length)).map { ns.substring(with: $0.range) }
    }

    /// The tokens of `text`.
    public func tokenize(_ text: String) -> [String] {
        Self.tokens(text, regex: compiled.regex, lowercase: lowercase)
    }

    /// Indices of the tokens of `text`; a token outside the vocabulary becomes `unknown`.
    public func encode(_ text: String, addStart: Bool = false, addEnd: Bool = false) -> [Int] {
        (addStart ? [Self.start] : []) + tokenize(text).map { lookup[$0] ?? Self.unknown } + (addEnd ? [Self.end] : [])
    }

    /// Text of `indices`: tokens joined by spaces, with no space before closing punctuation or
    /// after opening punctuation; padding and start skipped; stops at end. Throws on an index
    /// outside the vocabulary.
    public func decode(_ indices: [Int], unknownText: String = "<unk>") throws -> String {
        var out = ""
        var noSpaceNext = true
        for i in indices {
            let word: String
            switch i {
            case Self.padding, Self.start: continue
            case Self.end: return out
            case Self.unknown: word = unknownText
            case Self.firstWordIndex..<size: word = vocabulary[i - Self.firstWordIndex]
            default: throw TextEncodingError.indexOutOfRange(i, size: size)
            }
            let closing = [".", ",", "!", "?", ";", ":", ")", "]", "}", "%", "…"].contains(word)
            if !out.isEmpty && !noSpaceNext && !closing { out += " " }
            out += word
            noSpaceNext = ["(", "[", "{", "¿", "¡"].contains(word)
        }
        return out
    }
}

/// A compiled pattern shared by copies of a tokenizer (matching does not change it).
final class CompiledPattern: @unchecked Sendable {
    let regex: NSRegularExpression
    init(_ regex: NSRegularExpression) { self.regex = regex }
}
