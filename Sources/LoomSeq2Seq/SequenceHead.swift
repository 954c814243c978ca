import Foundation

/// A text sequence to one output: embedding -> recurrent layers (RNN, GRU or LSTM) ->
/// SequenceLast -> Linear, read as a class (softmax over labels) or a number (the output times
/// a scale). The model of the compare-xy and addition-regression recipes, saved in one
/// safetensors file that `loom info` describes and `loom decode` applies.
///
/// Tensors: `embedding.weight` [V, E], `encoder.weight_ih_l0` ... (PyTorch's names), `head.weight`
/// [C, H] and `head.bias` [C] (C = number of labels, or 1 for a number).
public final class SequenceHead {
    /// What the model file's `loom.architecture` holds.
    public struct Configuration: Codable, Equatable, Sendable {
        public var codec: TextCodec
        public var embeddingSize: Int
        /// "rnn", "gru" or "lstm".
        public var cell: String
        public var hidden: Int
        public var layers: Int
        /// Class labels (a classifier), or nil for a number.
        public var labels: [String]?
        /// A number is the output times this.
        public var scale: Double?

        public init(codec: TextCodec, embeddingSize: Int, cell: String, hidden: Int, layers: Int, labels: [String]? = nil, scale: Double? = nil) {
            (self.codec, self.embeddingSize, self.cell, self.hidden, self.layers, self.labels, self.scale) = (codec, embeddingSize, cell, hidden, layers, labels, scale)
        }

        /// Every weight's name and shape, from the configuration alone.
        func parameterTable(_ kind: RecurrentCell) -> [(name: String, shape: [Int])] {
            [("embedding.weight", [codec.size, embeddingSize])]
                + ModelFiles.recurrentTable(kind, prefix: "encoder.", inputSize: embeddingSize, hiddenSize: hidden, layers: layers)
                + [("head.weight", [labels?.count ?? 1, hidden]), ("head.bias", [labels?.count ?? 1])]
        }
    }

    public static let fileFormat = "loom-sequence-head/1"

    public let configuration: Configuration
    public let embedding: Embedding<Float>
    public let head: Linear<Float>
    /// The recurrent stack, whichever its cell kind.
    let encoder: (SequenceBatch<Float>) throws -> SequenceBatch<Float>
    let encoderParameters: [Parameter<Float>]

    public init(_ c: Configuration, using source: RandomSource = .shared) throws {
        guard c.embeddingSize > 0, c.hidden > 0, c.layers > 0, c.labels.map({ !$0.isEmpty }) ?? true else {
            throw TensorError.invalidArgument(op: "SequenceHead", message: "sizes must be positive and labels non-empty")
        }
        configuration = c
        embedding = try Embedding(vocabularySize: c.codec.size, embeddingSize: c.embeddingSize, using: source)
        switch c.cell {
        case "rnn":
            let layer = try RNN<Float>(inputSize: c.embeddingSize, hiddenSize: c.hidden, numLayers: c.layers, using: source)
            (encoder, encoderParameters) = ({ try layer($0).output }, layer.parameters)
        case "gru":
            let layer = try GRU<Float>(inputSize: c.embeddingSize, hiddenSize: c.hidden, numLayers: c.layers, using: source)
            (encoder, encoderParameters) = ({ try layer($0).output }, layer.parameters)
        case "lstm":
            let layer = try LSTM<Float>(inputSize: c.embeddingSize, hiddenSize: c.hidden, numLayers: c.layers, using: source)
            (encoder, encoderParameters) = ({ try layer($0).output }, layer.parameters)
        default:
            throw TensorError.invalidArgument(op: "SequenceHead", message: "cell must be rnn, gru or lstm, got \(c.cell)")
        }
        head = try Linear(inputSize: c.hidden, outputSize: c.labels?.count ?? 1, using: source)
    }

    /// Every parameter with its name in model files.
    public var namedParameters: [(name: String, parameter: Parameter<Float>)] {
        [("embedding.weight", embedding.table)] + encoderParameters.map { ("encoder.\($0.name)", $0) }
            + [("head.weight", head.weight)] + (head.bias.map { [("head.bias", $0)] } ?? [])
    }

    public var parameters: [Parameter<Float>] { namedParameters.map(\.parameter) }
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.data.count } }

    /// Outputs [B, C] (logits, or the unscaled number) of a batch of texts.
    public func callAsFunction(_ texts: [String]) throws -> Tensor<Float> {
        let p = PaddedIndices(try texts.map { try configuration.codec.encode($0) }, padding: configuration.codec.paddingIndex)
        if let empty = p.lengths.firstIndex(of: 0) { throw TensorError.invalidArgument(op: "SequenceHead", message: "input \(empty + 1) is empty") }
        let x = try SequenceBatch(values: embedding(indices: p.indices, shape: [p.steps, p.batch]), lengths: p.lengths)
        return try head(SequenceLast<Float>()(encoder(x)))
    }

    /// Per text: the label and its probability (a classifier), or the number.
    public func predict(_ texts: [String]) throws -> [(output: String, probability: Double?)] {
        try withoutGradients {
            let out = try self(texts)
            guard let labels = configuration.labels else {
                let scale = configuration.scale ?? 1
                return out.scalars.map { (String(format: "%g", Double($0) * scale), nil) }
            }
            let probabilities = try out.softmax(alongAxis: 1)
            let c = labels.count
            return (0..<texts.count).map { r in
                let row = Array(probabilities.scalars[(r * c)..<((r + 1) * c)])
                let best = row.indices.max { row[$0] < row[$1] } ?? 0
                return (labels[best], Double(row[best]))
            }
        }
    }

    /// Stores the weight matrices of products in int8 (see `SequenceTransformer.quantizeWeights`).
    @discardableResult
    public func quantizeWeights() -> Int { ModelFiles.quantize(namedParameters) }

    /// How many weight matrices are int8.
    public var quantizedWeightCount: Int { parameters.filter { $0.quantized != nil }.count }

    /// Writes the model atomically.
    public func save(to url: URL, training: [String: String] = [:]) throws {
        let architecture = String(decoding: try JSONEncoder().encode(configuration), as: UTF8.self)
        try ModelFiles.write(namedParameters, format: Self.fileFormat, architecture: architecture, training: training, to: url)
    }

    /// Reads a model file; every tensor is checked against the shape the architecture implies,
    /// before anything is allocated.
    public static func load(from url: URL) throws -> (model: SequenceHead, training: [String: String]) {
        try load(from: SafeTensors.read(url), name: url.lastPathComponent)
    }

    /// The same, from a file already read (`name` appears in errors).
    public static func load(from file: SafeTensors, name: String) throws -> (model: SequenceHead, training: [String: String]) {
        guard file.metadata["loom.format"] == fileFormat else {
            throw SafeTensorsError.invalidHeader("\(name) is not a Loom sequence-head file")
        }
        let configuration: Configuration
        do { configuration = try JSONDecoder().decode(Configuration.self, from: Data((file.metadata["loom.architecture"] ?? "").utf8)) } catch {
            throw SafeTensorsError.invalidHeader("loom.architecture is not a valid architecture: \(SafeTensors.describe(error))")
        }
        guard let cell = RecurrentCell(rawValue: configuration.cell) else {
            throw SafeTensorsError.invalidHeader("loom.architecture: cell must be rnn, gru or lstm, got \(configuration.cell)")
        }
        try ModelFiles.check(file, against: configuration.parameterTable(cell))
        let model = try SequenceHead(configuration, using: RandomSource(seed: 0))
        try ModelFiles.setWeights(model.namedParameters, from: file)
        return (model, ModelFiles.trainingFacts(file))
    }

    /// A summary for `loom info`.
    public var summary: String {
        let c = configuration
        var lines = ["input: \(SequenceTransformer.describe(c.codec)), embedding \(c.embeddingSize)",
                     "encoder: \(c.cell.uppercased()) \(c.hidden) x \(c.layers) layers, last step",
                     c.labels.map { "output: classes \($0.joined(separator: ", "))" } ?? "output: a number (times \(c.scale ?? 1))",
                     "parameters: \(parameterCount)"]
        if quantizedWeightCount > 0 { lines.append(ModelFiles.quantizationSummary(quantizedWeightCount)) }
        for (name, p) in namedParameters { lines.append("  \(name) \(p.shape)\(p.quantized == nil ? "" : " int8")") }
        return lines.joined(separator: "\n")
    }
}
