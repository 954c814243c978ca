import Foundation

/// Model files: one `.safetensors` file with the weights under their names and, in
/// `__metadata__`, `loom.format`, `loom.architecture` (the configuration as JSON, encoders and
/// vocabularies included) and `loom.training` (free-form facts such as accuracy and epochs).
/// What every Loom model file does alike, whatever the model: written with its format,
/// architecture and training facts; checked against the architecture's table of names and
/// shapes before anything is allocated; weights set all or nothing, non-finite ones refused.
enum ModelFiles {
    /// Writes `named` parameters with the metadata keys `loom.format`, `loom.architecture` and
    /// `loom.training`, atomically.
    static func write(_ named: [(name: String, parameter: Parameter<Float>)], format: String, architecture: String,
                      training: [String: String], extra: [String: String] = [:], to url: URL) throws {
        let facts = String(decoding: try JSONEncoder().encode(training), as: UTF8.self)
        var metadata = extra.merging(["loom.format": format, "loom.architecture": architecture, "loom.training": facts]) { $1 }
        // A weight with an int8 form is stored as that: I8 codes [O, I] and F32 scales [O].
        var stored: [SafeTensors.Stored] = []
        for (name, p) in named {
            guard let q = p.quantized else {
                stored.append(SafeTensors.Stored(name: name, tensor: p.data))
                continue
            }
            stored.append(SafeTensors.Stored(name: name, dtype: "I8", shape: [q.rows, q.columns], bytes: q.values.withUnsafeBytes { Data($0) }))
            stored.append(SafeTensors.Stored(name: name + scaleSuffix, tensor: Tensor<Float>(unchecked: [q.rows], scalars: q.scales)))
            metadata[quantizationKey] = quantizationScheme
        }
        try SafeTensors.write(stored: stored, metadata: metadata, to: url)
    }

    /// The metadata key an int8 file carries, its one value, and the name suffix of a weight's scales.
    static let quantizationKey = "loom.quantization"
    static let quantizationScheme = "int8: weights symmetric per output row (I8 codes, F32 scales in NAME.scale); activations per row at run time"
    static let scaleSuffix = ".scale"

    /// The line `loom info` prints for an int8 model.
    static func quantizationSummary(_ count: Int) -> String {
        "weights: \(count) matrices in int8 (per output row; activations quantized per row at run time), the rest Float"
    }

    /// Whether `loom quantize` stores a parameter in int8: the weight matrices of products (linear
    /// layers, recurrent input and recurrent weights), not embedding tables (looked up, not
    /// multiplied) nor vectors.
    static func isQuantizable(name: String, parameter: Parameter<Float>) -> Bool {
        parameter.shape.count == 2 && !name.contains("embedding") && parameter.shape[1] <= QuantizedMatrix.maximumColumns
    }

    /// Gives every quantizable parameter its int8 form (`data` becomes the dequantized weights, so
    /// that every path computes with what the file holds); returns how many.
    @discardableResult
    static func quantize(_ named: [(name: String, parameter: Parameter<Float>)]) -> Int {
        var count = 0
        for (name, p) in named where isQuantizable(name: name, parameter: p) && p.quantized == nil {
            let q = QuantizedMatrix(quantizing: p.data.scalars, rows: p.shape[0], columns: p.shape[1])
            p.quantized = q
            p.data = Tensor(unchecked: p.shape, scalars: q.dequantized())
            count += 1
        }
        return count
    }

    /// The file's `loom.training` facts (empty when absent or unreadable).
    static func trainingFacts(_ file: SafeTensors) -> [String: String] {
        file.metadata["loom.training"].flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:]
    }

    /// Every tensor of `table` is in `file` with its shape, and nothing else is: a hostile
    /// architecture cannot ask for weights the file does not hold.
    /// An int8 weight (dtype I8, a matrix) brings its scales, `NAME.scale` F32 [rows].
    static func check(_ file: SafeTensors, against table: [(name: String, shape: [Int])]) throws {
        var scales: [String] = []
        for (name, shape) in table {
            guard let entry = file.entries[name] else { throw SafeTensorsError.missingTensor(name) }
            guard entry.shape == shape else { throw SafeTensorsError.shapeMismatch(tensor: name, expected: shape, actual: entry.shape) }
            guard entry.dtype == "I8" else { continue }
            guard shape.count == 2 else { throw SafeTensorsError.invalidHeader("tensor \"\(name)\" is I8 but not a weight matrix") }
            let scale = name + scaleSuffix
            guard let s = file.entries[scale] else { throw SafeTensorsError.missingTensor(scale) }
            guard s.shape == [shape[0]] else { throw SafeTensorsError.shapeMismatch(tensor: scale, expected: [shape[0]], actual: s.shape) }
            scales.append(scale)
        }
        if let extra = Set(file.entries.keys).subtracting(table.map(\.name) + scales).sorted().first {
            throw SafeTensorsError.invalidHeader("unexpected tensor \"\(extra)\" for this architecture")
        }
    }

    /// Sets every parameter from `file`, all or nothing; a NaN or infinite weight (which makes
    /// every output empty or meaningless) refuses the file, naming the tensor.
    static func setWeights(_ named: [(name: String, parameter: Parameter<Float>)], from file: SafeTensors) throws {
        try check(file, against: named.map { ($0.name, $0.parameter.shape) })
        let values = try named.map { name, p -> (Tensor<Float>, QuantizedMatrix?) in
            if file.entries[name]?.dtype == "I8" {
                let scales = try file.tensor(name + scaleSuffix, as: Float.self).scalars
                do {
                    let q = try QuantizedMatrix(values: file.int8(name), scales: scales, rows: p.shape[0], columns: p.shape[1])
                    return (Tensor(unchecked: p.shape, scalars: q.dequantized()), q)
                } catch let error as QuantizationError {
                    throw SafeTensorsError.invalidHeader("tensor \"\(name)\": \(error)")
                }
            }
            let value = try file.tensor(name, as: Float.self)
            if let bad = value.scalars.firstIndex(where: { !$0.isFinite }) {
                let count = value.scalars.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                throw SafeTensorsError.invalidHeader("tensor \"\(name)\" holds \(count) non-finite value\(count == 1 ? "" : "s") (the first, \(value.scalars[bad]), at index \(bad))")
            }
            return (value, nil)
        }
        for ((_, p), (v, q)) in zip(named, values) { (p.data, p.quantized) = (v, q) }
    }

    /// The weights of a recurrent stack in PyTorch's state_dict names and order (layer by layer,
    /// the reverse direction after the forward one), under `prefix`.
    static func recurrentTable(_ cell: RecurrentCell, prefix: String, inputSize: Int, hiddenSize h: Int, layers: Int = 1,
                               bidirectional: Bool = false) -> [(name: String, shape: [Int])] {
        let g = cell.gates * h, directions = bidirectional ? 2 : 1
        var table: [(String, [Int])] = []
        for layer in 0..<layers {
            for reverse in bidirectional ? [false, true] : [false] {
                let suffix = "_l\(layer)" + (reverse ? "_reverse" : "")
                table += [("\(prefix)weight_ih\(suffix)", [g, layer == 0 ? inputSize : h * directions]), ("\(prefix)weight_hh\(suffix)", [g, h]),
                          ("\(prefix)bias_ih\(suffix)", [g]), ("\(prefix)bias_hh\(suffix)", [g])]
            }
        }
        return table
    }
}

extension SequenceTransformer {
    /// The format written now: every architecture key is present (an absent setting is `null`).
    public static let fileFormat = "loom-sequence-transformer/2"
    /// Files written before the format said so: the writer left out settings that were absent
    /// (`attention`, `reverseSource`, `featureNormalization`), so there a missing one of these
    /// means absent; every other key is required, as in /2.
    public static let previousFileFormat = "loom-sequence-transformer/1"
    /// Architecture keys that may be `null`.
    static let optionalArchitectureKeys: Set<String> = ["attention", "reverseSource", "featureNormalization", "recurrentDropout", "cell", "ctcWeight", "featureStatistics"]
    /// Keys added since the current format began: files written before them leave them out.
    static let laterArchitectureKeys: Set<String> = ["ctcWeight", "featureStatistics"]

    /// Writes the model atomically.
    public func save(to url: URL, training: [String: String] = [:]) throws {
        guard hasConfiguredParts else {
            throw SafeTensorsError.invalidHeader("a model file holds the parts its configuration describes; this model was built with another encoder or decoder")
        }
        var extra: [String: String] = [:]
        if let bound = outputLengthBound { extra[Self.decodingKey] = String(decoding: try JSONEncoder().encode(DecodingFacts(length_bound: bound)), as: UTF8.self) }
        try ModelFiles.write(namedParameters, format: Self.fileFormat, architecture: try Self.architectureJSON(configuration), training: training,
                             extra: extra, to: url)
    }

    /// The metadata key of the decoding settings a model file carries: `{"length_bound": {"ratio": r, "constant": c}}`.
    public static let decodingKey = "loom.decoding"

    struct DecodingFacts: Codable {
        var length_bound: OutputLengthBound?
    }

    /// The configuration as JSON with every key present: absent optional settings as `null`, so
    /// that a reader can tell "absent" from "left out".
    static func architectureJSON(_ configuration: SequenceTransformerConfiguration) throws -> String {
        let encoded = try JSONEncoder().encode(configuration)
        guard var object = try JSONSerialization.jsonObject(with: encoded) as? [String: Any] else {
            throw SafeTensorsError.invalidHeader("the architecture did not encode as a JSON object")
        }
        for key in optionalArchitectureKeys where object[key] == nil { object[key] = NSNull() }
        return String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self)
    }

    /// Reads a model file: the architecture from the metadata, then every weight, each checked
    /// against the shape the architecture implies. Missing, extra or misshapen tensors, unknown or
    /// missing architecture keys, and weights that are NaN or infinite are errors.
    public static func load(from url: URL) throws -> (model: SequenceTransformer, training: [String: String]) {
        try load(from: SafeTensors.read(url), name: url.lastPathComponent)
    }

    /// The same, from a file already read (`name` appears in errors).
    public static func load(from file: SafeTensors, name: String) throws -> (model: SequenceTransformer, training: [String: String]) {
        let format = file.metadata["loom.format"]
        guard format == fileFormat || format == previousFileFormat else {
            throw SafeTensorsError.invalidHeader("\(name) is not a Loom SequenceTransformer file (loom.format is \(format.map { "\"\($0)\"" } ?? "missing"))")
        }
        let configuration = try decodeArchitecture(file.metadata["loom.architecture"] ?? "", strict: format == fileFormat)
        // A hostile architecture could ask for any size: every weight it implies must be in the
        // file with that shape, checked from the parameter table before anything is allocated.
        try ModelFiles.check(file, against: configuration.parameterTable)
        let model = try SequenceTransformer(configuration, using: RandomSource(seed: 0))
        try model.loadWeights(file)
        if let text = file.metadata[decodingKey] {
            do {
                model.outputLengthBound = try JSONDecoder().decode(DecodingFacts.self, from: Data(text.utf8)).length_bound
                try model.outputLengthBound?.validate()
            } catch {
                throw SafeTensorsError.invalidHeader("\(decodingKey) is not valid: \(SafeTensors.describe(error))")
            }
        }
        return (model, ModelFiles.trainingFacts(file))
    }

    /// The architecture from its JSON text. Every key must be one the configuration knows, at any
    /// depth (a misspelt or foreign key would otherwise be ignored and the model built wrongly);
    /// with `strict`, every top-level key must be present (null for an absent setting).
    static func decodeArchitecture(_ text: String, strict: Bool) throws -> SequenceTransformerConfiguration {
        func fail(_ m: String) -> SafeTensorsError { .invalidHeader("loom.architecture: \(m)") }
        guard var given = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else { throw fail("not a JSON object") }
        // The previous format wrote Swift's enum payload keys ("_0"): read them in today's names.
        if !strict { given = modernized(given) }
        let data = try JSONSerialization.data(withJSONObject: given)
        let configuration: SequenceTransformerConfiguration
        do { configuration = try JSONDecoder().decode(SequenceTransformerConfiguration.self, from: data) } catch {
            throw fail("not a valid architecture: \(SafeTensors.describe(error))")
        }
        guard let known = try JSONSerialization.jsonObject(with: Data(architectureJSON(configuration).utf8)) as? [String: Any] else {
            throw fail("cannot be re-encoded")
        }
        if let unknown = unknownKey(given, known, path: "") { throw fail("unknown key \"\(unknown)\"") }
        let missing = Set(known.keys).subtracting(given.keys).subtracting(strict ? laterArchitectureKeys : optionalArchitectureKeys)
        if let key = missing.sorted().first { throw fail("missing key \"\(key)\" (write null for an absent setting)") }
        return configuration
    }

    /// A previous-format architecture with Swift's synthesized enum keys renamed: a codec's
    /// `{"characters": {"_0": E}}` becomes `{"characters": E}`; a source's `_0` becomes `codec` or
    /// `features`.
    static func modernized(_ architecture: [String: Any]) -> [String: Any] {
        func codec(_ value: Any?) -> Any? {
            guard let object = value as? [String: Any] else { return value }
            return object.mapValues { ($0 as? [String: Any]).flatMap { $0.count == 1 ? $0["_0"] : nil } ?? $0 }
        }
        var out = architecture
        out["target"] = codec(architecture["target"])
        if var source = architecture["source"] as? [String: Any] {
            for (kind, name) in [("text", "codec"), ("audio", "features")] {
                guard var payload = source[kind] as? [String: Any], let value = payload.removeValue(forKey: "_0") else { continue }
                payload[name] = kind == "text" ? codec(value) : value
                source[kind] = payload
            }
            out["source"] = source
        }
        return out
    }

    /// The first key path in `given` that `known` (the same value re-encoded) does not have.
    static func unknownKey(_ given: Any, _ known: Any, path: String) -> String? {
        if let g = given as? [String: Any] {
            let k = known as? [String: Any] ?? [:]
            for key in g.keys.sorted() {
                let here = path.isEmpty ? key : "\(path).\(key)"
                guard let next = k[key] else {
                    if g[key] is NSNull { continue }
                    return here
                }
                if let found = unknownKey(g[key] as Any, next, path: here) { return found }
            }
        } else if let g = given as? [Any], let k = known as? [Any] {
            for (i, (a, b)) in zip(g, k).enumerated() {
                if let found = unknownKey(a, b, path: "\(path)[\(i)]") { return found }
            }
        }
        return nil
    }

    /// Sets every parameter from `file`, all or nothing.
    public func loadWeights(_ file: SafeTensors) throws {
        try ModelFiles.setWeights(namedParameters, from: file)
    }

    /// Stores every weight matrix of a product in int8 (`QuantizedMatrix`: per output row, with
    /// activations quantized per row at run time): `save` then writes an int8 file, and decoding
    /// runs the int8 products. Embedding tables and biases stay Float. Returns how many matrices
    /// were quantized. The model is then for inference: training refuses it.
    @discardableResult
    public func quantizeWeights() -> Int { ModelFiles.quantize(namedParameters) }

    /// How many weight matrices are int8.
    public var quantizedWeightCount: Int { parameters.filter { $0.quantized != nil }.count }

    /// A summary for `loom info`.
    public var summary: String {
        let c = configuration
        var lines: [String] = []
        switch c.source {
        case let .text(codec, e):
            lines.append("source: text, \(Self.describe(codec)), embedding \(e)")
        case let .audio(f, k):
            let deltas = [1: " with deltas", 2: " with deltas and delta-deltas"][f.deltas ?? 0] ?? ""
            lines.append("source: audio, \(f.kind.rawValue) \(f.featureCount) features\(deltas) at \(f.sampleRate) Hz (n_fft \(f.fftLength), hop \(f.hop)), frame stacking \(k)"
                         + (c.featureNormalization.map { ", \($0.rawValue) normalization" } ?? ""))
        }
        for (i, (h, bi)) in zip(c.encoderLayers, c.encoderBidirectional).enumerated() {
            lines.append("encoder layer \(i): \(c.cellKind.rawValue.uppercased()) \(h)\(bi ? " bidirectional" : "")")
        }
        lines.append("decoder: embedding \(c.targetEmbeddingSize), \(c.cellKind.rawValue.uppercased()) \(c.decoderHidden) x \(c.decoderLayers) layers"
                     + (c.attention.map { ", attention \($0.rawValue)\(c.inputFeeding ? " with input feeding" : "")" } ?? ", no attention"))
        lines.append("target: \(Self.describe(c.target))")
        if let w = c.ctcWeight, w > 0 { lines.append("CTC layer on the encoder outputs, trained with weight \(w) beside attention") }
        if let b = outputLengthBound { lines.append("output length bound: \(b.constant) + \(b.ratio) x source length") }
        lines.append("parameters: \(parameterCount)")
        if quantizedWeightCount > 0 { lines.append(ModelFiles.quantizationSummary(quantizedWeightCount)) }
        for (name, p) in namedParameters { lines.append("  \(name) \(p.shape)\(p.quantized == nil ? "" : " int8")") }
        return lines.joined(separator: "\n")
    }

    static func describe(_ codec: TextCodec) -> String {
        switch codec {
        case let .characters(c): return "characters, \(c.alphabet.count) symbols (vocabulary \(c.size))"
        case let .words(w): return "words, \(w.vocabulary.count) words (vocabulary \(w.size))"
        case let .pieces(p): return "SentencePiece \(p.type.rawValue) subwords (vocabulary \(p.size))"
        }
    }
}

extension SequenceTransformerConfiguration {
    /// Every weight's name and shape in model files, from the configuration alone (nothing is
    /// allocated): the one table that loading checks a file against, that `loom info` counts, and
    /// that the tests hold the built model's `namedParameters` to.
    public var parameterTable: [(name: String, shape: [Int])] {
        var table: [(name: String, shape: [Int])] = []
        var input = encoderInputSize
        if case let .text(codec, e) = source { table.append(("encoder.embedding.weight", [codec.size, e])) }
        for (l, (h, bidirectional)) in zip(encoderLayers, encoderBidirectional).enumerated() {
            table += ModelFiles.recurrentTable(cellKind, prefix: "encoder.layers.\(l).", inputSize: input, hiddenSize: h, bidirectional: bidirectional)
            input = h * (bidirectional ? 2 : 1)
        }
        let (k, h, v) = (encoderOutputSize, decoderHidden, target.size)
        table += [("bridge.hidden.weight", [h * decoderLayers, k]), ("bridge.hidden.bias", [h * decoderLayers])]
        if cellKind.hasCellState { table += [("bridge.cell.weight", [h * decoderLayers, k]), ("bridge.cell.bias", [h * decoderLayers])] }
        table.append(("decoder.embedding.weight", [v, targetEmbeddingSize]))
        table += ModelFiles.recurrentTable(cellKind, prefix: "decoder.rnn.", inputSize: targetEmbeddingSize + (inputFeeding ? h : 0), hiddenSize: h,
                                           layers: decoderLayers)
        switch attention {
        case .none, .dot?: break
        case .general?: table.append(("attention.query.weight", [k, h]))
        case .additive?: table += [("attention.query.weight", [h, h]), ("attention.key.weight", [h, k]), ("attention.key.bias", [h]), ("attention.v", [h, 1])]
        }
        if attention != nil { table.append(("decoder.combine.weight", [h, k + h])) }
        table += [("decoder.output.weight", [v, h]), ("decoder.output.bias", [v])]
        if hasCTC { table += [("ctc.output.weight", [v, k]), ("ctc.output.bias", [v])] }
        return table
    }

    /// The number of weights, in Double so that absurd sizes cannot overflow.
    public var parameterCount: Double { parameterTable.reduce(0) { $0 + $1.shape.reduce(1.0) { $0 * Double($1) } } }
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
