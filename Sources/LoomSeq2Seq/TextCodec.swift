import Foundation
@_exported import LoomText

/// A text encoder/decoder of either kind, with the indices of its special symbols.
public enum TextCodec: Codable, Equatable, Sendable {
    case characters(CharacterEncoder)
    case words(WordTokenizer)

    public var size: Int {
        switch self {
        case let .characters(c): return c.size
        case let .words(w): return w.size
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
        }
    }

    public func decode(_ indices: [Int]) throws -> String {
        switch self {
        case let .characters(c): return try c.decode(indices)
        case let .words(w): return try w.decode(indices)
        }
    }
}
