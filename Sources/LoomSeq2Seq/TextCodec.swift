import Foundation
@_exported import LoomText

/// A text encoder/decoder of either kind, with the indices of its special symbols.
///
/// In JSON (model files): `{"characters": {...}}` or `{"words": {...}}`, the encoder's own fields inside.
public enum TextCodec: Codable, Equatable, Sendable {
    case characters(CharacterEncoder)
    case words(WordTokenizer)
    /// SentencePiece subwords (0 padding, 1 start, 2 end, 3 unknown).
    case pieces(SentencePieceCodec)

    private enum CodingKeys: String, CodingKey { case characters, words, pieces }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard c.allKeys.count == 1, let key = c.allKeys.first else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "a text codec is one of \"characters\" or \"words\""))
        }
        switch key {
        case .characters: self = .characters(try c.decode(CharacterEncoder.self, forKey: .characters))
        case .words: self = .words(try c.decode(WordTokenizer.self, forKey: .words))
        case .pieces: self = .pieces(try c.decode(SentencePieceCodec.self, forKey: .pieces))
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        switch self {
        case let .characters(e): try c.encode(e, forKey: .characters)
        case let .words(w): try c.encode(w, forKey: .words)
        case let .pieces(p): try c.encode(p, forKey: .pieces)
        }
    }

    public var size: Int {
        switch self {
        case let .characters(c): return c.size
        case let .words(w): return w.size
        case let .pieces(p): return p.size
        }
    }
    public var paddingIndex: Int { 0 }
    public var startIndex: Int {
        if case .words = self { return WordTokenizer.start }
        return CharacterEncoder.start
    }
    public var endIndex: Int {
        if case .words = self { return WordTokenizer.end }
        return CharacterEncoder.end
    }

    public func encode(_ text: String) throws -> [Int] {
        switch self {
        case let .characters(c): return try c.encode(text)
        case let .words(w): return w.encode(text)
        case let .pieces(p): return try p.encode(text)
        }
    }

    public func decode(_ indices: [Int]) throws -> String {
        switch self {
        case let .characters(c): return try c.decode(indices)
        case let .words(w): return try w.decode(indices)
        case let .pieces(p): return try p.decode(indices)
        }
    }
}
