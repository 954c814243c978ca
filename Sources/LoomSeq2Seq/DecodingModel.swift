import Foundation
import LoomAudio
import LoomTensor

/// A model file ready to decode: an encoder-decoder (`SequenceTransformer`) or a sequence-to-one
/// model (`SequenceHead`: a class or a number). `loom decode` and `loom-serve` both check and
/// decode through it, so the same inputs and options give the same outputs in either.
///
///     let model = try DecodingModel(contentsOf: URL(fileURLWithPath: "runs/addition/model.safetensors"))
///     let sources = try ["12+30", "7+5"].map { try model.prepare(text: $0) }
///     let outputs = try model.decode(sources, options: DecodingOptions(beamWidth: 5, nBest: 2))
///     // outputs[i]: up to nBest (text, hypothesis) pairs for input i, best first
///
/// Not safe to decode from two threads at once (the model's layers keep scratch space): one
/// thread decodes, as the server's batcher does.
public final class DecodingModel: @unchecked Sendable {
    /// What the file holds.
    public enum Kind {
        case transformer(SequenceTransformer)
        case head(SequenceHead)
    }

    /// A source checked and ready for the model.
    public enum Source: Sendable {
        case text(String)
        case features(values: [Float], frames: Int)
    }

    /// An input refused before decoding; the description is the message a user sees.
    public enum InputError: Error, CustomStringConvertible, Equatable {
        case empty
        case tooLong(characters: Int, limit: Int)
        case noAudio(String)
        case wrongKind(String)

        public var description: String {
            switch self {
            case .empty: return "empty input"
            case let .tooLong(n, limit): return "\(n) characters, more than the limit of \(limit)"
            case let .noAudio(name): return "\(name): no frames of audio"
            case let .wrongKind(message): return message
            }
        }
    }

    public let kind: Kind
    /// The file's name (for messages and `GET /v1/model`).
    public let name: String
    /// The file's `loom.format`.
    public let format: String
    /// The training facts stored with the model.
    public let training: [String: String]

    /// Reads a model file; every tensor is checked against its architecture first.
    public init(contentsOf url: URL) throws {
        let file = try SafeTensors.read(url)
        name = url.lastPathComponent
        format = file.metadata["loom.format"] ?? ""
        if format == SequenceHead.fileFormat {
            let (model, training) = try SequenceHead.load(from: file, name: name)
            (kind, self.training) = (.head(model), training)
        } else {
            let (model, training) = try SequenceTransformer.load(from: file, name: name)
            (kind, self.training) = (.transformer(model), training)
        }
    }

    /// The audio front end, for a model that reads audio; nil for text.
    public var audioFeatures: FeatureConfiguration? {
        guard case let .transformer(t) = kind, case let .audio(features, _) = t.configuration.source else { return nil }
        return features
    }

    /// The architecture as `loom info` prints it.
    public var summary: String {
        switch kind {
        case let .transformer(t): return t.summary
        case let .head(h): return h.summary
        }
    }

    /// How many weight matrices are int8 (an int8 file, `loom quantize`).
    public var quantizedWeightCount: Int {
        switch kind {
        case let .transformer(t): return t.quantizedWeightCount
        case let .head(h): return h.quantizedWeightCount
        }
    }

    public var parameterCount: Int {
        switch kind {
        case let .transformer(t): return t.parameterCount
        case let .head(h): return h.parameterCount
        }
    }

    /// Checks a text input: not empty, at most `maximumCharacters`, every character known to
    /// the model's vocabulary (the codec's own error names the character and its position).
    public func prepare(text: String, maximumCharacters: Int = 10_000) throws -> Source {
        guard !text.isEmpty else { throw InputError.empty }
        let count = text.count
        guard count <= maximumCharacters else { throw InputError.tooLong(characters: count, limit: maximumCharacters) }
        switch kind {
        case let .head(head): _ = try head.configuration.codec.encode(text)
        case let .transformer(t):
            guard audioFeatures == nil else { throw InputError.wrongKind("this model reads audio, not text") }
            _ = try t.sourceBatch(texts: [text])
        }
        return .text(text)
    }

    /// Reads an audio file (any format libsndfile reads) through the model's front end.
    public func prepare(audioPath path: String) throws -> Source {
        guard let features = audioFeatures else { throw InputError.wrongKind("this model reads text, not audio") }
        let f = try AudioEncoder(configuration: features).features(path: path)
        guard f.frames > 0 else { throw InputError.noAudio(path) }
        return .features(values: f.values, frames: f.frames)
    }

    /// Decodes prepared sources together; per source up to `options.nBest` hypotheses, best
    /// first. A sequence-to-one model gives one output per source: the class with its
    /// probability (score = its log), or the number (score 0).
    public func decode(_ sources: [Source], options: DecodingOptions) throws -> [[(text: String, hypothesis: Hypothesis)]] {
        guard !sources.isEmpty else { return [] }
        var texts: [String] = [], features: [(values: [Float], frames: Int)] = []
        for source in sources {
            switch source {
            case let .text(t): texts.append(t)
            case let .features(values, frames): features.append((values, frames))
            }
        }
        guard texts.isEmpty || features.isEmpty else { throw InputError.wrongKind("text and audio sources in one batch") }
        switch kind {
        case let .head(head):
            guard features.isEmpty else { throw InputError.wrongKind("this model reads text, not audio") }
            return try head.predict(texts).map { output, probability in
                let logp = probability.map { Foundation.log($0) } ?? 0
                return [(output, Hypothesis(tokens: [], logProbability: logp, score: logp, finished: true))]
            }
        case let .transformer(t):
            let batch = texts.isEmpty ? try t.sourceBatch(features: features) : try t.sourceBatch(texts: texts)
            return try t.decode(batch, options: options)
        }
    }
}
