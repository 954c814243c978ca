import Foundation
@_exported import LoomAudio
@_exported import LoomLayers
@_exported import LoomTraining

/// An encoder-decoder over sequences, composed as Wolfram's `SequenceTransformerLayer[encoder,
/// decoder]`: a text or audio source front end (an embedding, or stacked feature frames), an
/// encoder (`SequenceEncoder`), and a step decoder (`SequenceDecoder`). The configuration builds
/// its default parts: a stack of recurrent layers (each optionally bidirectional;
/// `RecurrentEncoder`) and a decoder with a bridge from the encoder's final states, a target
/// embedding, stacked recurrent layers, optional Luong or Bahdanau attention over the encoder
/// outputs with optional input feeding, and a linear output (`AttentionDecoder`). Trained with
/// teacher forcing; decoded greedily, by beam search or by sampling until end-of-sequence.
///
/// ```swift
/// let model = try SequenceTransformer(configuration)                       // the configured parts
/// let custom = try SequenceTransformer(configuration, encoder: LayerEncoder(chain, outputSize: 32))
/// ```
public final class SequenceTransformer {
    public let configuration: SequenceTransformerConfiguration
    /// Bounds each decoded output by its source's length (stored in the model file under
    /// `loom.decoding`; set by training from its data, `OutputLengthBound.fitted`). nil: only
    /// the decoding options' maximum length bounds an output.
    public var outputLengthBound: OutputLengthBound?
    let sourceEmbedding: Embedding<Float>?
    public let encoder: any SequenceEncoder
    public let decoder: any SequenceDecoder
    /// Joint CTC/attention only: encoder outputs to CTC scores over the target symbols.
    let ctcOutput: Linear<Float>?
    /// `configuration.dropout`, active in training only.
    let drop: Dropout<Float>
    /// Whether the encoder and decoder are the ones the configuration describes (what a model
    /// file can hold: it stores the configuration and the weights).
    public let hasConfiguredParts: Bool
    /// The source the model's dropout masks are drawn from (the one it was built with): give it
    /// to the `Trainer`, whose checkpoints then restore the masks' sequence on resume.
    public let randomSource: RandomSource

    /// The model the configuration describes, or with another encoder or decoder in place of the
    /// configured one (whose sizes must fit the rest: the encoder's input is the source front
    /// end's size, the decoder's vocabulary the target's).
    public init(_ configuration: SequenceTransformerConfiguration, encoder customEncoder: (any SequenceEncoder)? = nil,
                decoder customDecoder: (any SequenceDecoder)? = nil, using source: RandomSource = .shared) throws {
        try configuration.validate()
        self.configuration = configuration
        randomSource = source
        let c = configuration
        if case let .text(codec, e) = c.source {
            sourceEmbedding = try Embedding(vocabularySize: codec.size, embeddingSize: e, using: source)
        } else {
            sourceEmbedding = nil
        }
        // Drawn before the parts but used by them: draws nothing itself.
        let drop = try Dropout<Float>(probability: c.dropout, using: source)
        self.drop = drop
        let cell = c.cellKind.kind
        encoder = try customEncoder ?? RecurrentEncoder(cell: cell, inputSize: c.encoderInputSize, layers: c.encoderLayers,
                                                          bidirectional: c.encoderBidirectional, recurrentDropout: c.recurrentDropout ?? .none,
                                                          dropout: drop, using: source)
        let encoderOut = encoder.outputSize
        let finalSize = customEncoder == nil ? c.encoderOutputSize : encoderOut
        decoder = try customDecoder ?? AttentionDecoder(
            cell: cell, encoderFinalSize: finalSize, encoderOutputSize: encoderOut, vocabularySize: c.target.size,
            embeddingSize: c.targetEmbeddingSize, hiddenSize: c.decoderHidden, layers: c.decoderLayers, attention: c.attention,
            inputFeeding: c.inputFeeding, dropout: drop, using: source)
        guard decoder.vocabularySize == c.target.size else {
            throw TensorError.invalidArgument(op: "SequenceTransformer", message: "the decoder's vocabulary is \(decoder.vocabularySize), the target's \(c.target.size)")
        }
        hasConfiguredParts = customEncoder == nil && customDecoder == nil
        // Last, so that a model without it draws every other weight the same.
        ctcOutput = c.hasCTC ? try Linear(inputSize: encoderOut, outputSize: c.target.size, using: source) : nil
    }

    /// Every parameter with its name in model files.
    public var namedParameters: [(name: String, parameter: Parameter<Float>)] {
        var out: [(name: String, parameter: Parameter<Float>)] = []
        if let e = sourceEmbedding { out.append(("encoder.embedding.weight", e.table)) }
        out += encoder.namedParameters + decoder.namedParameters
        if let ctcOutput { out += [("ctc.output.weight", ctcOutput.weight)] + (ctcOutput.bias.map { [("ctc.output.bias", $0)] } ?? []) }
        return out
    }

    public var parameters: [Parameter<Float>] { namedParameters.map(\.parameter) }
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.data.count } }

    // MARK: - Inputs

    /// A batch of sources: text index sequences or feature matrices, padded time-major.
    public enum SourceBatch {
        case indices(PaddedIndices)
        case features(SequenceBatch<Float>)
    }

    /// Text sources to a batch (throws on an unknown character with the strict encoder).
    public func sourceBatch(texts: [String]) throws -> SourceBatch {
        guard case let .text(codec, _) = configuration.source else {
            throw TensorError.invalidArgument(op: "SequenceTransformer", message: "this model reads audio, not text")
        }
        let reverse = configuration.reverseSource ?? false
        return .indices(PaddedIndices(try texts.map { text in
            // Encoded as written, then reversed: an error names the text and position the user wrote.
            let indices = try codec.encode(text)
            return reverse ? Array(indices.reversed()) : indices
        }, padding: codec.paddingIndex))
    }

    /// Feature matrices [frames, features] (row-major) to a batch.
    public func sourceBatch(features: [(values: [Float], frames: Int)]) throws -> SourceBatch {
        guard case let .audio(c, _) = configuration.source else {
            throw TensorError.invalidArgument(op: "SequenceTransformer", message: "this model reads text, not audio")
        }
        let f = c.featureCount, steps = features.map(\.frames).max() ?? 0, b = features.count
        let global = configuration.featureStatistics ?? SequenceTransformerConfiguration.FeatureStatistics(mean: [], standardDeviation: [])
        var values = [Float](repeating: 0, count: steps * b * f)
        for (i, item) in features.enumerated() {
            guard item.values.count == item.frames * f else {
                throw TensorError.invalidArgument(op: "SequenceTransformer", message: "features of item \(i): \(item.values.count) values for \(item.frames) frames of \(f)")
            }
            let (shift, scale): ([Float], [Float])
            switch configuration.featureNormalization {
            case .utterance?: (shift, scale) = Self.utteranceStatistics(item.values, frames: item.frames, features: f)
            case .global?: (shift, scale) = (global.mean, global.standardDeviation.map { 1 / $0 })
            case nil: (shift, scale) = ([Float](repeating: 0, count: f), [Float](repeating: 1, count: f))
            }
            for t in 0..<item.frames { for k in 0..<f { values[(t * b + i) * f + k] = (item.values[t * f + k] - shift[k]) * scale[k] } }
        }
        return .features(try SequenceBatch(values: Tensor(shape: [steps, b, f], scalars: values), lengths: features.map(\.frames)))
    }

    /// Per feature of a [frames, features] matrix: the mean and the reciprocal standard deviation
    /// (computed in Double; a constant feature gets scale 1/sqrt(1e-10), so it maps to 0).
    static func utteranceStatistics(_ values: [Float], frames: Int, features f: Int) -> (mean: [Float], scale: [Float]) {
        var sum = [Double](repeating: 0, count: f), squares = [Double](repeating: 0, count: f)
        for t in 0..<frames {
            for k in 0..<f { let v = Double(values[t * f + k]); sum[k] += v; squares[k] += v * v }
        }
        let n = Double(Swift.max(frames, 1))
        let mean = sum.map { $0 / n }
        let scale = (0..<f).map { k in 1 / (Swift.max(squares[k] / n - mean[k] * mean[k], 0) + 1e-10).squareRoot() }
        return (mean.map { Float($0) }, scale.map { Float($0) })
    }

    /// Targets to (decoder inputs [start] + t, outputs t + [end]), padded.
    /// How many rows a target adds to `loss`'s mean (its symbols and the end symbol): the weight
    /// of an example in a batch (`Trainer.exampleWeight`, for distributed training).
    public func lossWeight(target: String) -> Double {
        Double(((try? configuration.target.encode(target))?.count ?? 0) + 1)
    }

    public func targetBatch(_ texts: [String]) throws -> (inputs: PaddedIndices, outputs: PaddedIndices) {
        let t = configuration.target
        let encoded = try texts.map { try t.encode($0) }
        return (PaddedIndices(encoded.map { [t.startIndex] + $0 }, padding: t.paddingIndex),
                PaddedIndices(encoded.map { $0 + [t.endIndex] }, padding: t.paddingIndex))
    }

    // MARK: - Encoder

    /// Encoder outputs (the attention memory) and the decoder's initial states.
    /// The encoder's outputs [T, B, E] and final state, and the decoder's memory over them.
    public struct Encoded {
        public let outputs: SequenceBatch<Float>
        public let memory: Attention<Float>.Memory?
        public let final: RecurrentState<Float>
    }

    public func encode(_ source: SourceBatch) throws -> Encoded {
        var x: SequenceBatch<Float>
        switch source {
        case let .indices(p):
            guard let embedding = sourceEmbedding else { throw TensorError.invalidArgument(op: "SequenceTransformer", message: "this model reads audio") }
            if let bad = p.indices.first(where: { $0 < 0 || $0 >= embedding.table.shape[0] }) {
                throw TensorError.index(op: "source embedding", index: bad, bound: embedding.table.shape[0])
            }
            x = try SequenceBatch(values: embedding(indices: p.indices, shape: [p.steps, p.batch]), lengths: p.lengths)
        case let .features(f):
            guard case let .audio(c, k) = configuration.source else { throw TensorError.invalidArgument(op: "SequenceTransformer", message: "this model reads text") }
            guard f.features == c.featureCount else {
                throw TensorError.rank(op: "SequenceTransformer audio input", expected: "[T, B, \(c.featureCount)]", shape: f.values.shape)
            }
            x = try Self.stackFrames(f, k)
        }
        if let bad = x.lengths.firstIndex(of: 0) {
            throw TensorError.invalidArgument(op: "SequenceTransformer", message: "source \(bad) of the batch is empty")
        }
        let (outputs, final) = try encoder.encode(x)
        let memory = try decoder.memory(for: outputs)
        return Encoded(outputs: outputs, memory: memory, final: final)
    }

    /// Concatenates `k` consecutive frames (zero-padded at the end): [T, B, F] -> [ceil(T/k), B, k F].
    static func stackFrames(_ x: SequenceBatch<Float>, _ k: Int) throws -> SequenceBatch<Float> {
        guard k > 1 else { return x }
        let (t, b, f) = (x.steps, x.batch, x.features)
        let steps = (t + k - 1) / k
        var padded = x.values
        if steps * k > t { padded = try Tensor.concatenate([padded, Tensor.zeros(unchecked: [steps * k - t, b, f])], axis: 0) }
        let stacked = try padded.reshaped([steps, k, b, f]).permuted([0, 2, 1, 3]).reshaped([steps, b, k * f])
        return try SequenceBatch(values: stacked, lengths: x.lengths.map { ($0 + k - 1) / k })
    }

    // MARK: - Decoder

    /// The decoder's state between steps: per layer (hidden, cell) [N, H]; the previous
    /// attentional vector (input feeding); which source row each decoding row reads, and the
    /// attention memory laid out for those rows (built once, kept while the mapping holds:
    /// beam search reorders beams within their source every step).
    public struct DecoderState: BeamState {
        public var layers: [RecurrentState<Float>]
        public var feed: Tensor<Float>?
        public var sources: [Int]
        var memory: Attention<Float>.Memory?

        public func selecting(rows: [Int]) throws -> DecoderState {
            let picked = rows.map { sources[$0] }
            return DecoderState(layers: try layers.map { try $0.selecting(rows: rows) }, feed: try feed?.gathering(rows: rows),
                                sources: picked, memory: picked == sources ? memory : nil)
        }
    }

    /// Logits [N, V] of the next token for each row, the next state, and the attention weights
    /// [N, S] over the encoder steps (nil without attention).
    func step(tokens: [Int], state: DecoderState, encoded: Encoded) throws -> (logits: Tensor<Float>, state: DecoderState, weights: Tensor<Float>?) {
        try decoder.step(tokens: tokens, state: state, memory: encoded.memory)
    }

    /// The decoder's initial state for the encoded batch.
    func initialState(_ encoded: Encoded) throws -> DecoderState {
        try decoder.initialState(final: encoded.final, memory: encoded.memory)
    }

    // MARK: - Training

    /// Mean cross-entropy of the targets under teacher forcing, padding masked.
    public func loss(sources: SourceBatch, targets: [String], labelSmoothing: Double = 0) throws -> Tensor<Float> {
        let encoded = try encode(sources)
        let (inputs, outputs) = try targetBatch(targets)
        guard inputs.batch == encoded.outputs.batch else {
            throw TensorError.invalidArgument(op: "SequenceTransformer loss", message: "\(inputs.batch) targets for \(encoded.outputs.batch) sources")
        }
        let logits = try decodeTeacherForced(inputs: inputs, encoded: encoded)
        let attentionLoss = try Loss.crossEntropy(logits: logits, targets: outputs.indices, ignoredIndex: configuration.target.paddingIndex,
                                                  labelSmoothing: labelSmoothing)
        guard let weight = configuration.ctcWeight, weight > 0 else { return attentionLoss }
        // CTC's negative log-likelihood per target token (each target's symbols and its end),
        // the attention loss's normalization, so that distributed ranks weight both alike.
        let symbols = try targets.map { try configuration.target.encode($0) }
        let tokens = symbols.reduce(0) { $0 + $1.count + 1 }
        return try attentionLoss * Float(1 - weight) + ctcLoss(encoded, symbols: symbols) * Float(weight / Double(tokens))
    }

    /// The summed CTC negative log-likelihood of `symbols` under the CTC layer over `encoded`
    /// (a target its encoder steps cannot hold adds nothing).
    func ctcLoss(_ encoded: Encoded, symbols: [[Int]]) throws -> Tensor<Float> {
        guard let ctcOutput else { throw TensorError.invalidArgument(op: "SequenceTransformer", message: "the model has no CTC layer (ctcWeight)") }
        return try Loss.ctc(logits: ctcOutput(encoded.outputs.values), inputLengths: encoded.outputs.lengths, targets: symbols,
                            blank: configuration.target.paddingIndex, reduction: .sum, zeroInfinity: true)
    }

    /// Best-path decoding through the CTC layer alone (no decoder steps): each encoder step's
    /// most likely symbol, repeats merged, blanks (padding) and other special symbols dropped.
    public func decodeCTC(_ source: SourceBatch) throws -> [String] {
        guard let ctcOutput else { throw TensorError.invalidArgument(op: "SequenceTransformer", message: "the model has no CTC layer (ctcWeight)") }
        return try withoutGradients {
            let encoded = try encode(source)
            let paths = try CTC.greedy(logits: ctcOutput(encoded.outputs.values), lengths: encoded.outputs.lengths,
                                       blank: configuration.target.paddingIndex)
            let t = configuration.target
            return try paths.map { path in try t.decode(path.filter { $0 != t.startIndex && $0 != t.endIndex }) }
        }
    }

    /// Logits [T, B, V] for decoder inputs [T, B] (start + target).
    func decodeTeacherForced(inputs: PaddedIndices, encoded: Encoded) throws -> Tensor<Float> {
        try decoder.teacherForced(inputs: inputs, state: initialState(encoded), memory: encoded.memory)
    }
}

extension RecurrentState: BeamState {
    /// The rows of a [N, H] state (one cell) picked by index.
    public func selecting(rows: [Int]) throws -> RecurrentState {
        RecurrentState(hidden: try hidden.gathering(rows: rows), cell: try cell?.gathering(rows: rows))
    }
}
