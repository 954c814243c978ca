import Foundation

/// Model files: one `.safetensors` file with the weights under their names and, in
/// `__metadata__`, `loom.format`, `loom.architecture` (the configuration as JSON, encoders and
/// vocabularies included) and `loom.training` (free-form facts such as accuracy and epochs).
extension SequenceTransformer {
    public static let fileFormat = "loom-sequence-transformer/1"

    /// Writes the model atomically.
    public func save(to url: URL, training: [String: String] = [:]) throws {
        let architecture = String(decoding: try JSONEncoder().encode(configuration), as: UTF8.self)
        let facts = String(decoding: try JSONEncoder().encode(training), as: UTF8.self)
        try SafeTensors.write(namedParameters.map { ($0.name, $0.parameter.data) },
                              metadata: ["loom.format": Self.fileFormat, "loom.architecture": architecture, "loom.training": facts], to: url)
    }

    /// Reads a model file: the architecture from the metadata, then every weight, each checked
    /// against the shape the architecture implies. Missing, extra or misshapen tensors are errors.
    public static func load(from url: URL) throws -> (model: SequenceTransformer, training: [String: String]) {
        let file = try SafeTensors.read(url)
        guard file.metadata["loom.format"] == fileFormat else {
            throw SafeTensorsError.invalidHeader("\(url.lastPathComponent) is not a Loom SequenceTransformer file (loom.format is \(file.metadata["loom.format"].map { "\"\($0)\"" } ?? "missing"))")
        }
        let configuration: SequenceTransformerConfiguration
        do {
            configuration = try JSONDecoder().decode(SequenceTransformerConfiguration.self, from: Data((file.metadata["loom.architecture"] ?? "").utf8))
        } catch {
            throw SafeTensorsError.invalidHeader("loom.architecture is not a valid architecture: \(SafeTensors.describe(error))")
        }
        // A hostile architecture could ask for any size: the weights it implies must all be in
        // the file, so they cannot much outnumber its tensors; refuse before allocating anything
        // (the exact check, tensor by tensor, comes after, with the tensor's name).
        let expected = configuration.expectedParameterCount
        let stored = file.entries.values.reduce(0.0) { $0 + Double($1.shape.reduce(1, *)) }
        guard expected.isFinite, expected <= 2 * stored + 1_000_000 else {
            throw SafeTensorsError.invalidHeader("the architecture needs \(expected) weights but the file holds \(Int(stored))")
        }
        let model = try SequenceTransformer(configuration, using: RandomSource(seed: 0))
        try model.loadWeights(file)
        let training = file.metadata["loom.training"].flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:]
        return (model, training)
    }

    /// Sets every parameter from `file`, all or nothing.
    public func loadWeights(_ file: SafeTensors) throws {
        let named = namedParameters
        let names = Set(named.map(\.name))
        if let extra = file.entries.keys.sorted().first(where: { !names.contains($0) }) {
            throw SafeTensorsError.invalidHeader("unexpected tensor \"\(extra)\" for this architecture")
        }
        let values = try named.map { name, p -> Tensor<Float> in
            guard let entry = file.entries[name] else { throw SafeTensorsError.missingTensor(name) }
            guard entry.shape == p.shape else { throw SafeTensorsError.shapeMismatch(tensor: name, expected: p.shape, actual: entry.shape) }
            return try file.tensor(name, as: Float.self)
        }
        for ((_, p), v) in zip(named, values) { p.data = v }
    }

    /// A summary for `loom info`.
    public var summary: String {
        let c = configuration
        var lines: [String] = []
        switch c.source {
        case let .text(codec, e):
            lines.append("source: text, \(Self.describe(codec)), embedding \(e)")
        case let .audio(f, k):
            lines.append("source: audio, \(f.kind.rawValue) \(f.featureCount) features at \(f.sampleRate) Hz (n_fft \(f.fftLength), hop \(f.hop)), frame stacking \(k)"
                         + (c.featureNormalization.map { ", \($0.rawValue) normalization" } ?? ""))
        }
        for (i, (h, bi)) in zip(c.encoderLayers, c.encoderBidirectional).enumerated() {
            lines.append("encoder layer \(i): LSTM \(h)\(bi ? " bidirectional" : "")")
        }
        lines.append("decoder: embedding \(c.targetEmbeddingSize), LSTM \(c.decoderHidden) x \(c.decoderLayers) layers"
                     + (c.attention.map { ", attention \($0.rawValue)\(c.inputFeeding ? " with input feeding" : "")" } ?? ", no attention"))
        lines.append("target: \(Self.describe(c.target))")
        lines.append("parameters: \(parameterCount)")
        for (name, p) in namedParameters { lines.append("  \(name) \(p.shape)") }
        return lines.joined(separator: "\n")
    }

    static func describe(_ codec: TextCodec) -> String {
        switch codec {
        case let .characters(c): return "characters, \(c.alphabet.count) symbols (vocabulary \(c.size))"
        case let .words(w): return "words, \(w.vocabulary.count) words (vocabulary \(w.size))"
        }
    }
}

extension SequenceTransformerConfiguration {
    /// The number of weights this architecture has, computed without building it (in Double,
    /// so that absurd sizes cannot overflow).
    public var expectedParameterCount: Double {
        func lstm(_ input: Double, _ h: Double, _ directions: Double) -> Double { directions * (4 * h * input + 4 * h * h + 8 * h) }
        var total = 0.0
        var input: Double
        switch source {
        case let .text(codec, e):
            total += Double(codec.size) * Double(e)
            input = Double(e)
        case let .audio(c, k):
            input = Double(c.featureCount) * Double(k)
        }
        for (h, bi) in zip(encoderLayers, encoderBidirectional) {
            total += lstm(input, Double(h), bi ? 2 : 1)
            input = Double(h) * (bi ? 2 : 1)
        }
        let encoderOut = input, hd = Double(decoderHidden), layers = Double(decoderLayers), v = Double(target.size)
        total += 2 * (encoderOut * hd * layers + hd * layers)
        total += v * Double(targetEmbeddingSize)
        total += lstm(Double(targetEmbeddingSize) + (inputFeeding ? hd : 0), hd, 1) + (layers - 1) * lstm(hd, hd, 1)
        switch attention {
        case .none: break
        case .dot?: total += hd * (encoderOut + hd)
        case .general?: total += hd * encoderOut + hd * (encoderOut + hd)
        case .additive?: total += hd * hd + hd * encoderOut + hd + hd + hd * (encoderOut + hd)
        }
        total += v * hd + v
        return total
    }
}

extension Recurrent {
    /// Loads weights saved from a PyTorch `nn.RNN`/`nn.GRU`/`nn.LSTM` state_dict (names
    /// `weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`, `..._reverse`, under `prefix`).
    /// All or nothing: a missing tensor or a shape mismatch changes no weight.
    public func loadPyTorchStateDict(_ file: SafeTensors, prefix: String = "") throws {
        let values = try parameters.map { p -> Tensor<Scalar> in
            let name = prefix + p.name
            guard let entry = file.entries[name] else { throw SafeTensorsError.missingTensor(name) }
            guard entry.shape == p.shape else { throw SafeTensorsError.shapeMismatch(tensor: name, expected: p.shape, actual: entry.shape) }
            return try file.tensor(name, as: Scalar.self)
        }
        for (p, v) in zip(parameters, values) { p.data = v }
    }
}
