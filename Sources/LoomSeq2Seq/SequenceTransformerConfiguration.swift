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
