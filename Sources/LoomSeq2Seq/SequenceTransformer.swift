import Foundation
@_exported import LoomAudio
@_exported import LoomLayers
@_exported import LoomTraining

/// The architecture of a `SequenceTransformer`, stored as JSON in model files.
public struct SequenceTransformerConfiguration: Codable, Equatable, Sendable {
    /// What the encoder reads.
    public enum Source: Codable, Equatable, Sendable {
        /// Text through an encoder, then an embedding of `embeddingSize`.
        case text(TextCodec, embeddingSize: Int)
        /// Audio features (frames x features) of this front end, with `frameStacking` consecutive
        /// frames concatenated (time reduced that many times).
        case audio(FeatureConfiguration, frameStacking: Int)

        // In JSON: {"text": {"codec": ..., "embeddingSize": E}} or {"audio": {"features": ..., "frameStacking": K}}.
        private enum Keys: String, CodingKey { case text, audio }
        private enum TextKeys: String, CodingKey { case codec, embeddingSize }
        private enum AudioKeys: String, CodingKey { case features, frameStacking }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            if c.contains(.text) && !c.contains(.audio) {
                let t = try c.nestedContainer(keyedBy: TextKeys.self, forKey: .text)
                self = .text(try t.decode(TextCodec.self, forKey: .codec), embeddingSize: try t.decode(Int.self, forKey: .embeddingSize))
            } else if c.contains(.audio) && !c.contains(.text) {
                let a = try c.nestedContainer(keyedBy: AudioKeys.self, forKey: .audio)
                self = .audio(try a.decode(FeatureConfiguration.self, forKey: .features), frameStacking: try a.decode(Int.self, forKey: .frameStacking))
            } else {
                throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "a source is one of \"text\" or \"audio\""))
            }
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            switch self {
            case let .text(codec, e):
                var t = c.nestedContainer(keyedBy: TextKeys.self, forKey: .text)
                try t.encode(codec, forKey: .codec)
                try t.encode(e, forKey: .embeddingSize)
            case let .audio(features, k):
                var a = c.nestedContainer(keyedBy: AudioKeys.self, forKey: .audio)
                try a.encode(features, forKey: .features)
                try a.encode(k, forKey: .frameStacking)
            }
        }
    }

    public var source: Source
    /// Hidden size of each encoder LSTM layer, and whether it is bidirectional.
    public var encoderLayers: [Int]
    public var encoderBidirectional: [Bool]
    public var target: TextCodec
    public var targetEmbeddingSize: Int
    public var decoderHidden: Int
    public var decoderLayers: Int
    /// Attention of the decoder over the encoder outputs (nil: none).
    public var attention: Attention<Float>.Score?
    /// Feed the previous attentional vector into the next decoder step (Luong's input feeding).
    public var inputFeeding: Bool
    /// Dropout probability in training (OpenNMT's single `dropout`): on the source embeddings (or
    /// audio features), between encoder layers, on the target embeddings, between decoder layers
    /// and on the attentional vector before the output layer. Evaluation never drops.
    public var dropout: Double
    /// The recurrent cell of the encoder and decoder layers: LSTM (nil, the default) or GRU (a GRU
    /// decoder has no cell state, so the bridge has no cell half).
    public var cell: RecurrentCell?
    /// Recurrent dropout of the encoder's layers (nil: none), as Wolfram's methods and
    /// AWD-LSTM's weight drop: weights, input, state, state update.
    public var recurrentDropout: RecurrentDropout?
    /// Reverse each text source before encoding (the classic trick for LSTM encoders; the model
    /// file records it, so decoding applies it too). nil means no.
    public var reverseSource: Bool?
    /// How audio features are normalized before the encoder (nil: as the front end makes them).
    public var featureNormalization: FeatureNormalization?
    /// Joint CTC/attention training (Kim, Hori & Watanabe 2017): the weight lambda of a CTC loss
    /// on the encoder outputs, through a linear layer to the target symbols with the padding
    /// symbol as the blank, beside the attention decoder's loss; training minimizes
    /// (1 - lambda) attention + lambda CTC. nil or 0: no CTC layer.
    public var ctcWeight: Double?

    /// Normalization of an audio source's features.
    public enum FeatureNormalization: String, Codable, Equatable, Sendable {
        /// Per utterance and feature: subtract the mean over the frames, divide by the standard
        /// deviation (cepstral mean and variance normalization; needs no corpus statistics and
        /// removes a recording's constant channel and level).
        case utterance
        /// By the training set's mean and standard deviation of each feature
        /// (`featureStatistics`, stored in the model file), as Kaldi's and ESPnet's global CMVN.
        case global
    }

    /// The training set's statistics of each feature, for `.global` normalization.
    public struct FeatureStatistics: Codable, Equatable, Sendable {
        public var mean: [Float]
        public var standardDeviation: [Float]

        public init(mean: [Float], standardDeviation: [Float]) {
            (self.mean, self.standardDeviation) = (mean, standardDeviation)
        }

        /// Over every frame of `utterances` ([frames, features] each), in Double; a constant
        /// feature gets a deviation of 1e-5, so that it maps to 0.
        public static func of(_ utterances: [(values: [Float], frames: Int)], features f: Int) -> FeatureStatistics {
            var sum = [Double](repeating: 0, count: f), squares = [Double](repeating: 0, count: f), n = 0.0
            for u in utterances {
                for t in 0..<u.frames {
                    for k in 0..<f { let v = Double(u.values[t * f + k]); sum[k] += v; squares[k] += v * v }
                }
                n += Double(u.frames)
            }
            let mean = sum.map { $0 / Swift.max(n, 1) }
            let deviation = (0..<f).map { k in (Swift.max(squares[k] / Swift.max(n, 1) - mean[k] * mean[k], 0) + 1e-10).squareRoot() }
            return FeatureStatistics(mean: mean.map { Float($0) }, standardDeviation: deviation.map { Float($0) })
        }
    }

    /// With `.global` normalization: the statistics it applies.
    public var featureStatistics: FeatureStatistics?

    public init(source: Source, encoderLayers: [Int], encoderBidirectional: [Bool]? = nil, target: TextCodec, targetEmbeddingSize: Int,
                decoderHidden: Int, decoderLayers: Int = 1, attention: Attention<Float>.Score? = nil, inputFeeding: Bool = false, dropout: Double = 0) {
        self.source = source
        self.encoderLayers = encoderLayers
        self.encoderBidirectional = encoderBidirectional ?? encoderLayers.map { _ in false }
        self.target = target
        self.targetEmbeddingSize = targetEmbeddingSize
        self.decoderHidden = decoderHidden
        self.decoderLayers = decoderLayers
        self.attention = attention
        self.inputFeeding = inputFeeding
        self.dropout = dropout
    }

    public func validate() throws {
        func fail(_ m: String) -> TensorError { .invalidArgument(op: "SequenceTransformer", message: m) }
        guard !encoderLayers.isEmpty, encoderLayers.allSatisfy({ $0 > 0 }), encoderBidirectional.count == encoderLayers.count else {
            throw fail("encoder layers \(encoderLayers) with bidirectional flags \(encoderBidirectional)")
        }
        guard targetEmbeddingSize > 0, decoderHidden > 0, decoderLayers > 0 else { throw fail("decoder sizes must be positive") }
        guard dropout >= 0, dropout < 1 else { throw fail("dropout \(dropout)") }
        guard cell == nil || cell == .lstm || cell == .gru else { throw fail("the cell must be lstm or gru, got \(cell?.rawValue ?? "")") }
        if let r = recurrentDropout {
            for (name, p) in [("weights", r.weights), ("input", r.input), ("state", r.state), ("stateUpdate", r.stateUpdate)] where !(p >= 0 && p < 1) {
                throw fail("recurrent dropout \(name) \(p)")
            }
        }
        if inputFeeding && attention == nil { throw fail("input feeding needs attention") }
        if let w = ctcWeight, !(w >= 0 && w < 1) { throw fail("CTC weight \(w) is not in [0, 1)") }
        switch source {
        case let .text(_, e): guard e > 0 else { throw fail("source embedding \(e)") }
        case let .audio(c, k): try c.validate(); guard k >= 1 else { throw fail("frame stacking \(k)") }
        }
        if featureNormalization == .global {
            guard case let .audio(c, _) = source, let s = featureStatistics else { throw fail("global normalization needs audio features and their statistics") }
            guard s.mean.count == c.featureCount, s.standardDeviation.count == c.featureCount,
                  s.mean.allSatisfy(\.isFinite), s.standardDeviation.allSatisfy({ $0.isFinite && $0 > 0 }) else {
                throw fail("feature statistics: \(s.mean.count) means and \(s.standardDeviation.count) deviations for \(c.featureCount) features, "
                           + "all finite, deviations positive")
            }
        }
    }

    /// Features per step entering the encoder.
    var encoderInputSize: Int {
        switch source {
        case let .text(_, e): return e
        case let .audio(c, k): return c.featureCount * k
        }
    }

    /// The cell kind in use (LSTM when unset).
    var cellKind: RecurrentCell { cell ?? .lstm }

    var encoderOutputSize: Int { (encoderLayers.last ?? 0) * ((encoderBidirectional.last ?? false) ? 2 : 1) }

    /// Whether the model has a CTC layer (a CTC weight above 0).
    public var hasCTC: Bool { (ctcWeight ?? 0) > 0 }
}

/// An encoder-decoder over sequences (the seeds' SequenceTransformer): a text or audio source
/// into a stack of LSTM layers (each optionally bidirectional), a bridge from the encoder's
/// final states to the decoder's initial states, and a decoder (target embedding -> stacked
/// LSTM -> optional Luong or Bahdanau attention over the encoder outputs, with optional input
/// feeding -> linear -> softmax). Trained with teacher forcing; decoded greedily or by beam
/// search until end-of-sequence.
public final class SequenceTransformer {
    public let configuration: SequenceTransformerConfiguration
    /// Bounds each decoded output by its source's length (stored in the model file under
    /// `loom.decoding`; set by training from its data, `OutputLengthBound.fitted`). nil: only
    /// the decoding options' maximum length bounds an output.
    public var outputLengthBound: OutputLengthBound?
    let sourceEmbedding: Embedding<Float>?
    let encoder: [RecurrentStack]
    let bridgeHidden: Linear<Float>
    /// LSTM decoders only: the cell state's bridge.
    let bridgeCell: Linear<Float>?
    let targetEmbedding: Embedding<Float>
    /// The decoder stack; run fused over a whole target in training without input feeding, or
    /// one cell step at a time (its weights' `step`) when decoding.
    let decoder: RecurrentStack
    let attention: Attention<Float>?
    /// Luong's combination tanh(W_c [context; h]).
    let combine: Linear<Float>?
    let output: Linear<Float>
    /// Joint CTC/attention only: encoder outputs to CTC scores over the target symbols.
    let ctcOutput: Linear<Float>?
    /// `configuration.dropout`, active in training only.
    let drop: Dropout<Float>
    /// The source the model's dropout masks are drawn from (the one it was built with): give it
    /// to the `Trainer`, whose checkpoints then restore the masks' sequence on resume.
    public let randomSource: RandomSource

    public init(_ configuration: SequenceTransformerConfiguration, using source: RandomSource = .shared) throws {
        try configuration.validate()
        self.configuration = configuration
        randomSource = source
        let c = configuration
        if case let .text(codec, e) = c.source {
            sourceEmbedding = try Embedding(vocabularySize: codec.size, embeddingSize: e, using: source)
        } else {
            sourceEmbedding = nil
        }
        var input = c.encoderInputSize
        var layers: [RecurrentStack] = []
        for (h, bi) in zip(c.encoderLayers, c.encoderBidirectional) {
            layers.append(try RecurrentStack(c.cellKind, inputSize: input, hiddenSize: h, bidirectional: bi, dropout: c.recurrentDropout ?? .none, using: source))
            input = h * (bi ? 2 : 1)
        }
        encoder = layers
        let encoderOut = c.encoderOutputSize
        bridgeHidden = try Linear(inputSize: encoderOut, outputSize: c.decoderHidden * c.decoderLayers, using: source)
        bridgeCell = c.cellKind == .lstm ? try Linear(inputSize: encoderOut, outputSize: c.decoderHidden * c.decoderLayers, using: source) : nil
        targetEmbedding = try Embedding(vocabularySize: c.target.size, embeddingSize: c.targetEmbeddingSize, using: source)
        decoder = try RecurrentStack(c.cellKind, inputSize: c.targetEmbeddingSize + (c.inputFeeding ? c.decoderHidden : 0), hiddenSize: c.decoderHidden,
                                     numLayers: c.decoderLayers, interLayerDropout: c.dropout, using: source)
        if let score = c.attention {
            attention = try Attention(score: score, querySize: c.decoderHidden, keySize: encoderOut, attentionSize: c.decoderHidden, using: source)
            combine = try Linear(inputSize: encoderOut + c.decoderHidden, outputSize: c.decoderHidden, useBias: false, using: source)
        } else {
            attention = nil
            combine = nil
        }
        output = try Linear(inputSize: c.decoderHidden, outputSize: c.target.size, using: source)
        drop = try Dropout(probability: c.dropout, using: source)
        // Last, so that a model without it draws every other weight the same.
        ctcOutput = c.hasCTC ? try Linear(inputSize: encoderOut, outputSize: c.target.size, using: source) : nil
    }

    /// `x` with dropout applied in training (unchanged in inference or with probability 0).
    func dropped(_ x: SequenceBatch<Float>) throws -> SequenceBatch<Float> {
        guard drop.isActive else { return x }
        return try SequenceBatch(values: drop(x.values), lengths: x.lengths)
    }

    /// Every parameter with its name in model files.
    public var namedParameters: [(name: String, parameter: Parameter<Float>)] {
        // A linear layer's weight, and its bias when it has one, under `prefix`.
        func linear(_ prefix: String, _ layer: Linear<Float>) -> [(String, Parameter<Float>)] {
            [("\(prefix).weight", layer.weight)] + (layer.bias.map { [("\(prefix).bias", $0)] } ?? [])
        }
        var out: [(String, Parameter<Float>)] = []
        if let e = sourceEmbedding { out.append(("encoder.embedding.weight", e.table)) }
        for (l, layer) in encoder.enumerated() { out += layer.parameters.map { ("encoder.layers.\(l).\($0.name)", $0) } }
        out += linear("bridge.hidden", bridgeHidden) + (bridgeCell.map { linear("bridge.cell", $0) } ?? [])
        out.append(("decoder.embedding.weight", targetEmbedding.table))
        out += decoder.parameters.map { ("decoder.rnn.\($0.name)", $0) }
        if let attention {
            if let q = attention.queryProjection { out.append(("attention.query.weight", q.weight)) }
            if let k = attention.keyProjection { out += linear("attention.key", k) }
            if let v = attention.vector { out.append(("attention.v", v)) }
        }
        if let combine { out.append(("decoder.combine.weight", combine.weight)) }
        out += linear("decoder.output", output)
        if let ctcOutput { out += linear("ctc.output", ctcOutput) }
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
    public struct Encoded {
        public let outputs: SequenceBatch<Float>
        public let memory: Attention<Float>.Memory?
        public let initialState: [RecurrentState<Float>]
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
        var final: RecurrentState<Float>?
        x = try dropped(x)
        for (l, layer) in encoder.enumerated() {
            if l > 0 { x = try dropped(x) }
            let (out, state) = try layer(x)
            x = out
            final = state
        }
        guard let final else { throw TensorError.invalidArgument(op: "SequenceTransformer", message: "no encoder") }
        // [D, B, H] -> [B, D H]: forward and reverse final states side by side.
        func merged(_ t: Tensor<Float>) throws -> Tensor<Float> {
            let d = t.shape[0], b = t.shape[1], h = t.shape[2]
            return try t.permuted([1, 0, 2]).reshaped([b, d * h])
        }
        let c = configuration
        let h0 = try bridgeHidden(merged(final.hidden)).tanh()
        let c0 = try bridgeCell.flatMap { bridge in try final.cell.map { try bridge(merged($0)) } }
        let states = try (0..<c.decoderLayers).map { l in
            let columns = (l * c.decoderHidden)..<((l + 1) * c.decoderHidden)
            return RecurrentState(hidden: try h0.slice(axis: 1, columns), cell: try c0?.slice(axis: 1, columns))
        }
        return Encoded(outputs: x, memory: try attention.map { try $0.prepare(x) }, initialState: states)
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
        let c = configuration
        var x = try drop(targetEmbedding(indices: tokens, shape: [tokens.count]))
        if let feed = state.feed { x = try Tensor.concatenate([x, feed], axis: 1) }
        var layers: [RecurrentState<Float>] = []
        for (l, s) in state.layers.enumerated() {
            let weights = decoder.weights[l][0]
            let next = try weights.inferenceStep(c.cellKind.kind, input: x, state: s) ?? weights.step(c.cellKind.kind, input: x, state: s)
            layers.append(next)
            x = next.hidden
        }
        var top = x
        var feed: Tensor<Float>?
        var rowsMemory = state.memory
        var weights: Tensor<Float>?
        if let attention, let memory = encoded.memory, let combine {
            let rows = try rowsMemory ?? Self.memory(memory, rows: state.sources, attention: attention)
            rowsMemory = rows
            let (context, w) = try attention(query: top, memory: rows)
            weights = w
            top = try drop(combine(Tensor.concatenate([context, top], axis: 1)).tanh())
            if c.inputFeeding { feed = top }
        }
        return (try output(top), DecoderState(layers: layers, feed: feed, sources: state.sources, memory: rowsMemory), weights)
    }

    /// The attention memory with its batch columns picked by `rows` (identity when unchanged).
    static func memory(_ m: Attention<Float>.Memory, rows: [Int], attention: Attention<Float>) throws -> Attention<Float>.Memory {
        if rows == Array(0..<m.keys.batch) { return m }
        let k = m.keys
        let picked = try k.values.permuted([1, 0, 2]).reshaped([k.batch, k.steps * k.features]).gathering(rows: rows)
            .reshaped([rows.count, k.steps, k.features]).permuted([1, 0, 2])
        return try attention.prepare(SequenceBatch(values: picked, lengths: rows.map { k.lengths[$0] }))
    }

    /// The decoder's initial state for the encoded batch.
    func initialState(_ encoded: Encoded) -> DecoderState {
        let b = encoded.outputs.batch
        return DecoderState(layers: encoded.initialState,
                            feed: configuration.inputFeeding ? Tensor.zeros(unchecked: [b, configuration.decoderHidden]) : nil,
                            sources: Array(0..<b), memory: encoded.memory)
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
        let (t, b) = (inputs.steps, inputs.batch)
        if configuration.inputFeeding {
            var state = initialState(encoded)
            var steps: [Tensor<Float>] = []
            for s in 0..<t {
                let (logits, next, _) = try step(tokens: Array(inputs.indices[(s * b)..<((s + 1) * b)]), state: state, encoded: encoded)
                steps.append(logits)
                state = next
            }
            return try Tensor.stack(steps, axis: 0)
        }
        // The whole target through the fused decoder stack at once.
        let embedded = try drop(targetEmbedding(indices: inputs.indices, shape: [t, b]))
        let h0 = try Tensor.stack(encoded.initialState.map(\.hidden), axis: 0)
        let cells = encoded.initialState.compactMap(\.cell)
        let c0 = cells.isEmpty ? nil : try Tensor.stack(cells, axis: 0)
        let (out, _) = try decoder(SequenceBatch(values: embedded, lengths: inputs.lengths), initialState: RecurrentState(hidden: h0, cell: c0))
        var top = out.values
        if let attention, let memory = encoded.memory, let combine {
            let (context, _) = try attention(queries: top, memory: memory)
            top = try drop(combine(Tensor.concatenate([context, top], axis: 2)).tanh())
        }
        return try output(top)
    }
}

extension RecurrentState: BeamState {
    /// The rows of a [N, H] state (one cell) picked by index.
    public func selecting(rows: [Int]) throws -> RecurrentState {
        RecurrentState(hidden: try hidden.gathering(rows: rows), cell: try cell?.gathering(rows: rows))
    }
}

/// An LSTM or GRU layer stack, whichever the configuration names (the two share one layout of
/// weights per layer and direction; only the gates and the cell state differ).
enum RecurrentStack {
    case lstm(LSTM<Float>)
    case gru(GRU<Float>)

    init(_ cell: RecurrentCell, inputSize: Int, hiddenSize: Int, numLayers: Int = 1, bidirectional: Bool = false,
         dropout: RecurrentDropout = .none, interLayerDropout: Double = 0, using source: RandomSource) throws {
        switch cell {
        case .gru:
            self = .gru(try GRU<Float>(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers, bidirectional: bidirectional,
                                       dropout: dropout, interLayerDropout: interLayerDropout, using: source))
        default:
            self = .lstm(try LSTM<Float>(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers, bidirectional: bidirectional,
                                         dropout: dropout, interLayerDropout: interLayerDropout, using: source))
        }
    }

    var parameters: [Parameter<Float>] {
        switch self {
        case let .lstm(l): return l.parameters
        case let .gru(g): return g.parameters
        }
    }

    var weights: [[RecurrentCellWeights<Float>]] {
        switch self {
        case let .lstm(l): return l.weights
        case let .gru(g): return g.weights
        }
    }

    func callAsFunction(_ x: SequenceBatch<Float>, initialState: RecurrentState<Float>? = nil) throws -> (output: SequenceBatch<Float>, state: RecurrentState<Float>) {
        switch self {
        case let .lstm(l): return try l(x, initialState: initialState)
        case let .gru(g): return try g(x, initialState: initialState)
        }
    }
}
