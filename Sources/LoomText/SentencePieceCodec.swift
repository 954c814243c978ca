import CSentencePiece
import Foundation

/// Subword units with SentencePiece (Kudo & Richardson 2018): a unigram language model or BPE
/// trained on a corpus, with Loom's special ids (0 padding, 1 start, 2 end, 3 unknown, then the
/// pieces). The serialized model travels inside Loom's model files, so decoding needs nothing else.
///
/// ```swift
/// let pieces = try SentencePieceCodec(learningFrom: lines, size: 1000, type: .unigram)
/// let ids = try pieces.encode("hello world")      // e.g. [412, 9, 87]
/// let text = try pieces.decode(ids)                // "hello world"
/// ```
public struct SentencePieceCodec: Codable, Equatable, @unchecked Sendable {
    /// SentencePiece's two segmentations: a unigram language model, or byte-pair merges.
    public enum ModelType: String, Codable, Sendable { case unigram, bpe }
    public static let padding = 0, start = 1, end = 2, unknown = 3

    /// The serialized model (SentencePiece's ModelProto).
    public let model: Data
    public let type: ModelType
    let processor: Processor

    /// The loaded model; freed with the last codec that holds it.
    final class Processor: @unchecked Sendable {
        let handle: UnsafeMutableRawPointer
        init(_ model: Data) throws {
            var error: UnsafeMutablePointer<CChar>?
            let handle = model.withUnsafeBytes { raw in
                loom_spm_load(raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count, &error)
            }
            guard let handle else { throw TextEncodingError.invalidAlphabet("not a SentencePiece model: \(SentencePieceCodec.take(error))") }
            self.handle = handle
        }
        deinit { loom_spm_free(handle) }
    }

    static func take(_ text: UnsafeMutablePointer<CChar>?) -> String {
        guard let text else { return "unknown error" }
        defer { loom_spm_free_string(text) }
        return String(cString: text)
    }

    public init(model: Data, type: ModelType) throws {
        self.model = model
        self.type = type
        processor = try Processor(model)
    }

    /// Trains a model on `corpus` (one text per element) with at most `size` pieces (a small
    /// corpus may give fewer).
    public init(learningFrom corpus: [String], size: Int, type: ModelType = .unigram) throws {
        guard size >= 5 else { throw TextEncodingError.invalidAlphabet("a SentencePiece vocabulary needs at least 5 entries, got \(size)") }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("loom-spm-\(getpid())-\(UUID().uuidString).txt")
        defer { try? FileManager.default.removeItem(at: file) }
        // One text per line, as SentencePiece reads its input.
        try Data(corpus.map { $0.replacingOccurrences(of: "\n", with: " ") }.joined(separator: "\n").utf8).write(to: file)
        var model: UnsafeMutablePointer<CChar>?, count = 0, error: UnsafeMutablePointer<CChar>?
        guard loom_spm_train(file.path, Int32(size), type.rawValue, &model, &count, &error) == 0, let model else {
            throw TextEncodingError.invalidAlphabet("SentencePiece training failed: \(Self.take(error))")
        }
        defer { free(model) }
        try self.init(model: Data(bytes: model, count: count), type: type)
    }

    /// Ids including the special ones: the vocabulary size.
    public var size: Int { Int(loom_spm_size(processor.handle)) }

    /// The ids of `text` (unknown pieces as 3).
    public func encode(_ text: String) throws -> [Int] {
        var ids = [Int32](repeating: 0, count: Swift.max(text.utf8.count + 8, 16))
        var n = ids.withUnsafeMutableBufferPointer { loom_spm_encode(processor.handle, text, $0.baseAddress, $0.count) }
        if n > ids.count {
            ids = [Int32](repeating: 0, count: n)
            n = ids.withUnsafeMutableBufferPointer { loom_spm_encode(processor.handle, text, $0.baseAddress, $0.count) }
        }
        guard n >= 0 else { throw TextEncodingError.invalidAlphabet("SentencePiece could not encode \(String(reflecting: text))") }
        return ids.prefix(n).map(Int.init)
    }

    /// The text of `ids`: padding and start skipped, stopping at end.
    public func decode(_ ids: [Int]) throws -> String {
        var kept: [Int32] = []
        for id in ids {
            if id == Self.end { break }
            if id == Self.padding || id == Self.start { continue }
            guard id >= 0, id < size else { throw TextEncodingError.indexOutOfRange(id, size: size) }
            kept.append(Int32(id))
        }
        guard let text = kept.withUnsafeBufferPointer({ loom_spm_decode(processor.handle, $0.baseAddress, $0.count) }) else {
            throw TextEncodingError.invalidAlphabet("SentencePiece could not decode \(ids)")
        }
        return Self.take(text)
    }

    /// The piece of an id, for display ("▁the").
    public func piece(_ id: Int) -> String { Self.take(loom_spm_piece(processor.handle, Int32(id))) }

    private enum CodingKeys: String, CodingKey { case model, type }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard let model = Data(base64Encoded: try c.decode(String.self, forKey: .model)) else {
            throw DecodingError.dataCorruptedError(forKey: .model, in: c, debugDescription: "not base64")
        }
        try self.init(model: model, type: try c.decode(ModelType.self, forKey: .type))
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model.base64EncodedString(), forKey: .model)
        try c.encode(type, forKey: .type)
    }

    public static func == (a: SentencePieceCodec, b: SentencePieceCodec) -> Bool { a.model == b.model && a.type == b.type }
}
