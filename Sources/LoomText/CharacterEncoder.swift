import Foundation
@_exported import LoomTensor

/// Errors turning text into indices and back, each naming what went wrong and where.
public enum TextEncodingError: Error, CustomStringConvertible, Equatable {
    case unknownCharacter(Character, position: Int, text: String)
    case indexOutOfRange(Int, size: Int)
    case invalidAlphabet(String)

    public var description: String {
        switch self {
        case let .unknownCharacter(c, position, text):
            return "unknown character \(String(reflecting: String(c))) (U+\(c.unicodeScalars.map { String($0.value, radix: 16, uppercase: true) }.joined(separator: " U+"))) at position \(position) of \(String(reflecting: text)); add it to the alphabet or use unknown: .symbol"
        case let .indexOutOfRange(i, size): return "index \(i) is outside the vocabulary of \(size) symbols"
        case let .invalidAlphabet(message): return "invalid alphabet: \(message)"
        }
    }
}

/// Characters to indices and back (Wolfram's `NetEncoder["Characters"]`, Keras's character
/// `TextVectorization`).
///
/// Index layout: 0 padding, 1 start-of-sequence, 2 end-of-sequence, 3 unknown (only with
/// `unknown: .symbol`), then the alphabet in order. Characters are Swift `Character`s (extended
/// grapheme clusters), so "é" written with a combining accent is one character.
///
/// ```swift
/// let chars = try CharacterEncoder(learningFrom: ["535+61", "12+7"])
/// let ids = try chars.encode("53+1", addEnd: true)   // [.., end]
/// chars.decode(ids)                                  // "53+1"
/// ```
public struct CharacterEncoder: Codable, Equatable, Sendable {
    /// What happens to a character outside the alphabet.
    public enum Unknown: String, Codable, Sendable { case symbol, error }

    public static let padding = 0, start = 1, end = 2

    /// The alphabet, one character per entry (strings, for Codable).
    public let alphabet: [String]
    public let ignoreCase: Bool
    public let unknown: Unknown
    private var lookup: [Character: Int] = [:]

    private enum CodingKeys: String, CodingKey { case alphabet, ignoreCase, unknown }

    /// The index of the unknown symbol, when there is one.
    public var unknownIndex: Int? { unknown == .symbol ? 3 : nil }
    var firstCharacterIndex: Int { unknown == .symbol ? 4 : 3 }
    /// Number of indices, special symbols included (the size of a one-hot vector).
    public var size: Int { firstCharacterIndex + alphabet.count }

    /// - Throws: when the alphabet repeats a character (after case folding with `ignoreCase`).
    public init<S: Sequence>(alphabet: S, ignoreCase: Bool = false, unknown: Unknown = .error) throws where S.Element == Character {
        var seen = Set<Character>(), ordered: [String] = []
        for c in alphabet {
            let key = ignoreCase ? Character(String(c).lowercased()) : c
            guard seen.insert(key).inserted else {
                throw TextEncodingError.invalidAlphabet("\(String(reflecting: String(c))) appears twice\(ignoreCase ? " (ignoring case)" : "")")
            }
            ordered.append(String(key))
        }
        self.alphabet = ordered
        self.ignoreCase = ignoreCase
        self.unknown = unknown
        buildLookup()
    }

    /// The alphabet of every character in `corpus`, sorted by Unicode scalar values.
    public init(learningFrom corpus: [String], ignoreCase: Bool = false, unknown: Unknown = .error) throws {
        var set = Set<Character>()
        for text in corpus { for c in ignoreCase ? text.lowercased() : text { set.insert(c) } }
        try self.init(alphabet: set.sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }, ignoreCase: ignoreCase, unknown: unknown)
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let alphabet = try c.decode([String].self, forKey: .alphabet)
        guard alphabet.allSatisfy({ $0.count == 1 }) else {
            throw TextEncodingError.invalidAlphabet("every entry must be one character")
        }
        try self.init(alphabet: alphabet.map { Character($0) }, ignoreCase: try c.decode(Bool.self, forKey: .ignoreCase),
                      unknown: try c.decode(Unknown.self, forKey: .unknown))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(alphabet, forKey: .alphabet)
        try c.encode(ignoreCase, forKey: .ignoreCase)
        try c.encode(unknown, forKey: .unknown)
    }

    private mutating func buildLookup() {
        for (i, s) in alphabet.enumerated() { lookup[Character(s)] = firstCharacterIndex + i }
    }

    public static func == (a: CharacterEncoder, b: CharacterEncoder) -> Bool {
        a.alphabet == b.alphabet && a.ignoreCase == b.ignoreCase && a.unknown == b.unknown
    }

    /// The index of one character. Throws (with `unknown: .error`) for one outside the alphabet.
    public func index(of c: Character, position: Int = 0, in text: String = "") throws -> Int {
        let key = ignoreCase ? Character(String(c).lowercased()) : c
        if let i = lookup[key] { return i }
        if let u = unknownIndex { return u }
        throw TextEncodingError.unknownCharacter(c, position: position, text: text)
    }

    /// Indices of `text`, optionally framed by start and end symbols.
    public func encode(_ text: String, addStart: Bool = false, addEnd: Bool = false) throws -> [Int] {
        var out: [Int] = addStart ? [Self.start] : []
        out.reserveCapacity(text.count + 2)
        for (position, c) in text.enumerated() { out.append(try index(of: c, position: position, in: text)) }
        if addEnd { out.append(Self.end) }
        return out
    }

    /// One-hot rows [length, size] of `text`.
    public func oneHot<Scalar: TensorScalar>(_ text: String, addStart: Bool = false, addEnd: Bool = false) throws -> Tensor<Scalar> {
        try Tensor.oneHot(encode(text, addStart: addStart, addEnd: addEnd), depth: size)
    }

    /// Text of `indices`: padding and start are skipped, decoding stops at the first end symbol,
    /// the unknown symbol becomes `unknownText`. Throws on an index outside the vocabulary.
    public func decode(_ indices: [Int], unknownText: String = "\u{FFFD}") throws -> String {
        var out = ""
        for i in indices {
            switch i {
            case Self.padding, Self.start: continue
            case Self.end: return out
            case _ where i == unknownIndex: out += unknownText
            case firstCharacterIndex..<size: out += alphabet[i - firstCharacterIndex]
            default: throw TextEncodingError.indexOutOfRange(i, size: size)
            }
        }
        return out
    }

    /// The symbol an index stands for, for display: the character, or <pad>, <s>, </s>, <unk>.
    public func symbol(_ i: Int) -> String {
        switch i {
        case Self.padding: return "<pad>"
        case Self.start: return "<s>"
        case Self.end: return "</s>"
        case _ where i == unknownIndex: return "<unk>"
        case firstCharacterIndex..<size: return alphabet[i - firstCharacterIndex]
        default: return "<\(i)?>"
        }
    }
}

/// Sequences of indices padded into one time-major batch.
public struct PaddedIndices: Equatable, Sendable {
    /// [T, B] row-major: position t of sequence b at t * B + b; `padding` beyond each length.
    public var indices: [Int]
    public var lengths: [Int]
    public var steps: Int { lengths.max() ?? 0 }
    public var batch: Int { lengths.count }

    public init(_ sequences: [[Int]], padding: Int = CharacterEncoder.padding) {
        lengths = sequences.map(\.count)
        let steps = lengths.max() ?? 0, batch = sequences.count
        var indices = [Int](repeating: padding, count: steps * batch)
        for (b, s) in sequences.enumerated() { for (t, i) in s.enumerated() { indices[t * batch + b] = i } }
        self.indices = indices
    }
}
