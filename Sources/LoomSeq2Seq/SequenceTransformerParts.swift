/// The encoder of a `SequenceTransformer` (the first part of Wolfram's
/// `SequenceTransformerLayer[encoder, decoder]`): the source's vectors [T, B, F] to outputs
/// [T, B, E], which attention and the CTC layer read, and a final state [B, K] per sequence,
/// which the decoder's bridge reads.
///
/// `RecurrentEncoder` is the default (the configuration's stack of recurrent layers);
/// `LayerEncoder` takes any sequence layer, for example a `SequenceChain`.
public protocol SequenceEncoder {
    /// E: features of each output step.
    var outputSize: Int { get }
    /// Outputs [T, B, E] and the final state: hidden [B, K] and, for a recurrent encoder whose
    /// cell has one, its cell half [B, K].
    func encode(_ x: SequenceBatch<Float>) throws -> (outputs: SequenceBatch<Float>, final: RecurrentState<Float>)
    /// The encoder's parameters under their names in model files.
    var namedParameters: [(name: String, parameter: Parameter<Float>)] { get }
}

/// The decoder of a `SequenceTransformer`: from the encoder's final state and outputs, one step
/// of target tokens at a time (what greedy, beam and sampling searches call), or a whole target
/// under teacher forcing (training).
///
/// `AttentionDecoder` is the default: bridge -> target embedding -> recurrent stack -> optional
/// attention with input feeding -> linear output.
public protocol SequenceDecoder {
    /// V: the target vocabulary the logits range over.
    var vocabularySize: Int { get }
    /// The memory the decoder attends over, prepared once per batch (nil: no attention).
    func memory(for outputs: SequenceBatch<Float>) throws -> Attention<Float>.Memory?
    /// The decoder's state before the first step, from the encoder's final state [B, K].
    func initialState(final: RecurrentState<Float>, memory: Attention<Float>.Memory?) throws -> SequenceTransformer.DecoderState
    /// Logits [N, V] of the next token for each row, the next state, and the attention weights
    /// [N, S] over the encoder steps (nil without attention).
    func step(tokens: [Int], state: SequenceTransformer.DecoderState, memory: Attention<Float>.Memory?) throws
        -> (logits: Tensor<Float>, state: SequenceTransformer.DecoderState, weights: Tensor<Float>?)
    /// Logits [T, B, V] for decoder inputs [T, B] (start + target), from `state`.
    func teacherForced(inputs: PaddedIndices, state: SequenceTransformer.DecoderState, memory: Attention<Float>.Memory?) throws -> Tensor<Float>
    /// The decoder's parameters under their names in model files.
    var namedParameters: [(name: String, parameter: Parameter<Float>)] { get }
}

/// A stack of recurrent layers, each optionally bidirectional, with dropout before each layer
/// (the configuration's encoder). Final state: the last layer's, its directions side by side.
public struct RecurrentEncoder: SequenceEncoder {
    let layers: [RecurrentStack]
    let drop: Dropout<Float>

    public init(cell: any RecurrentCellKind.Type, inputSize: Int, layers sizes: [Int], bidirectional: [Bool],
                recurrentDropout: RecurrentDropout = .none, dropout: Dropout<Float>, using source: RandomSource) throws {
        guard sizes.count == bidirectional.count, !sizes.isEmpty else {
            throw TensorError.invalidArgument(op: "RecurrentEncoder", message: "\(sizes.count) layer sizes for \(bidirectional.count) directions")
        }
        var input = inputSize
        var layers: [RecurrentStack] = []
        for (h, bi) in zip(sizes, bidirectional) {
            layers.append(try RecurrentStack(cell, inputSize: input, hiddenSize: h, bidirectional: bi, dropout: recurrentDropout, using: source))
            input = h * (bi ? 2 : 1)
        }
        self.layers = layers
        drop = dropout
    }

    public var outputSize: Int { layers.last?.outputSize ?? 0 }

    public func encode(_ input: SequenceBatch<Float>) throws -> (outputs: SequenceBatch<Float>, final: RecurrentState<Float>) {
        var x = input
        var final: RecurrentState<Float>?
        for layer in layers {
            if drop.isActive { x = try SequenceBatch(values: drop(x.values), lengths: x.lengths) }
            (x, final) = try layer(x)
        }
        guard let final else { throw TensorError.invalidArgument(op: "RecurrentEncoder", message: "no layers") }
        // [D, B, H] -> [B, D H]: forward and reverse final states side by side.
        func merged(_ t: Tensor<Float>) throws -> Tensor<Float> {
            let d = t.shape[0], b = t.shape[1], h = t.shape[2]
            return try t.permuted([1, 0, 2]).reshaped([b, d * h])
        }
        return (x, RecurrentState(hidden: try merged(final.hidden), cell: try final.cell.map(merged)))
    }

    public var namedParameters: [(name: String, parameter: Parameter<Float>)] {
        layers.enumerated().flatMap { l, layer in layer.parameters.map { ("encoder.layers.\(l).\($0.name)", $0) } }
    }
}

/// Any sequence layer as an encoder (a `SequenceChain`, an operator, a recurrent layer): its
/// outputs, and as final state each sequence's output at its last step.
///
/// ```swift
/// let chain = SequenceChain<Float>(try GRU(inputSize: 16, hiddenSize: 32), try Linear(inputSize: 32, outputSize: 32))
/// let model = try SequenceTransformer(configuration, encoder: LayerEncoder(chain, outputSize: 32, name: "chain"))
/// ```
public struct LayerEncoder: SequenceEncoder {
    public let layer: any SequenceLayer<Float>
    public let outputSize: Int
    /// The prefix of the parameters' names ("encoder.<name>.<index>").
    public let name: String
    let parameters: [Parameter<Float>]

    public init(_ layer: any SequenceLayer<Float>, outputSize: Int, name: String = "layer") {
        self.layer = layer
        self.outputSize = outputSize
        self.name = name
        parameters = layer.parameters
    }

    public func encode(_ x: SequenceBatch<Float>) throws -> (outputs: SequenceBatch<Float>, final: RecurrentState<Float>) {
        let outputs = try layer.forward(x)
        return (outputs, RecurrentState(hidden: try SequenceLast<Float>()(outputs)))
    }

    public var namedParameters: [(name: String, parameter: Parameter<Float>)] {
        parameters.enumerated().map { i, p in ("encoder.\(name).\(i)", p) }
    }
}

/// The configuration's decoder: a bridge from the encoder's final state to each decoder
/// layer's initial state (h0 = tanh(W [h_fwd; h_bwd] + b); an LSTM's c0 = W' [c_fwd; c_bwd] + b'
/// when the encoder has a cell state), the target embedding, a recurrent stack, optional
/// attention over the encoder outputs with Luong's combination tanh(W_c [context; h]) and input
/// feeding, and a linear output layer.
public struct AttentionDecoder: SequenceDecoder {
    let bridgeHidden: Linear<Float>
    /// Decoders with a cell state only: the cell state's bridge.
    let bridgeCell: Linear<Float>?
    let embedding: Embedding<Float>
    /// Run fused over a whole target in training without input feeding, or one cell step at a
    /// time (`inferenceStep`, or `step` on the tape) when decoding.
    let stack: RecurrentStack
    let attention: Attention<Float>?
    let combine: Linear<Float>?
    let output: Linear<Float>
    let drop: Dropout<Float>
    public let hiddenSize: Int, layers: Int
    public let inputFeeding: Bool

    /// Parameters are drawn in the order of the model file's table (bridge, embedding, stack,
    /// attention, combination, output).
    public init(cell: any RecurrentCellKind.Type, encoderFinalSize: Int, encoderOutputSize: Int, vocabularySize: Int, embeddingSize: Int,
                hiddenSize: Int, layers: Int, attention score: Attention<Float>.Score?, inputFeeding: Bool, dropout: Dropout<Float>,
                using source: RandomSource) throws {
        bridgeHidden = try Linear(inputSize: encoderFinalSize, outputSize: hiddenSize * layers, using: source)
        bridgeCell = cell.hasCellState ? try Linear(inputSize: encoderFinalSize, outputSize: hiddenSize * layers, using: source) : nil
        embedding = try Embedding(vocabularySize: vocabularySize, embeddingSize: embeddingSize, using: source)
        stack = try RecurrentStack(cell, inputSize: embeddingSize + (inputFeeding ? hiddenSize : 0), hiddenSize: hiddenSize,
                                   numLayers: layers, interLayerDropout: dropout.probability, using: source)
        if let score {
            attention = try Attention(score: score, querySize: hiddenSize, keySize: encoderOutputSize, attentionSize: hiddenSize, using: source)
            combine = try Linear(inputSize: encoderOutputSize + hiddenSize, outputSize: hiddenSize, useBias: false, using: source)
        } else {
            attention = nil
            combine = nil
        }
        output = try Linear(inputSize: hiddenSize, outputSize: vocabularySize, using: source)
        drop = dropout
        (self.hiddenSize, self.layers, self.inputFeeding) = (hiddenSize, layers, inputFeeding)
    }

    public var vocabularySize: Int { output.outputSize }

    public func memory(for outputs: SequenceBatch<Float>) throws -> Attention<Float>.Memory? { try attention.map { try $0.prepare(outputs) } }

    public func initialState(final: RecurrentState<Float>, memory: Attention<Float>.Memory?) throws -> SequenceTransformer.DecoderState {
        let b = final.hidden.shape[0]
        let h0 = try bridgeHidden(final.hidden).tanh()
        // An encoder without a cell state (a GRU, a `LayerEncoder`) leaves an LSTM decoder's
        // cell state at zero, as PyTorch's default initial state.
        let c0 = try bridgeCell.map { bridge in try final.cell.map { try bridge($0) } ?? Tensor.zeros(unchecked: [b, hiddenSize * layers]) }
        let states = try (0..<layers).map { l in
            let columns = (l * hiddenSize)..<((l + 1) * hiddenSize)
            return RecurrentState(hidden: try h0.slice(axis: 1, columns), cell: try c0?.slice(axis: 1, columns))
        }
        return SequenceTransformer.DecoderState(layers: states, feed: inputFeeding ? Tensor.zeros(unchecked: [b, hiddenSize]) : nil,
                                                sources: Array(0..<b), memory: memory)
    }

    public func step(tokens: [Int], state: SequenceTransformer.DecoderState, memory: Attention<Float>.Memory?) throws
        -> (logits: Tensor<Float>, state: SequenceTransformer.DecoderState, weights: Tensor<Float>?)
    {
        var x = try drop(embedding(indices: tokens, shape: [tokens.count]))
        if let feed = state.feed { x = try Tensor.concatenate([x, feed], axis: 1) }
        var next: [RecurrentState<Float>] = []
        for (l, s) in state.layers.enumerated() {
            let weights = stack.weights[l][0]
            let cell = stack.cell
            let after = try weights.inferenceStep(cell, input: x, state: s) ?? weights.step(cell, input: x, state: s)
            next.append(after)
            x = after.hidden
        }
        var top = x
        var feed: Tensor<Float>?
        var rowsMemory = state.memory
        var weights: Tensor<Float>?
        if let attention, let memory, let combine {
            let rows = try rowsMemory ?? Self.memory(memory, rows: state.sources, attention: attention)
            rowsMemory = rows
            let (context, w) = try attention(query: top, memory: rows)
            weights = w
            top = try drop(combine(Tensor.concatenate([context, top], axis: 1)).tanh())
            if inputFeeding { feed = top }
        }
        return (try output(top), SequenceTransformer.DecoderState(layers: next, feed: feed, sources: state.sources, memory: rowsMemory), weights)
    }

    /// The attention memory with its batch columns picked by `rows` (identity when unchanged).
    static func memory(_ m: Attention<Float>.Memory, rows: [Int], attention: Attention<Float>) throws -> Attention<Float>.Memory {
        if rows == Array(0..<m.keys.batch) { return m }
        let k = m.keys
        let picked = try k.values.permuted([1, 0, 2]).reshaped([k.batch, k.steps * k.features]).gathering(rows: rows)
            .reshaped([rows.count, k.steps, k.features]).permuted([1, 0, 2])
        return try attention.prepare(SequenceBatch(values: picked, lengths: rows.map { k.lengths[$0] }))
    }

    public func teacherForced(inputs: PaddedIndices, state: SequenceTransformer.DecoderState, memory: Attention<Float>.Memory?) throws -> Tensor<Float> {
        let (t, b) = (inputs.steps, inputs.batch)
        if inputFeeding {
            var state = state
            var steps: [Tensor<Float>] = []
            for s in 0..<t {
                let (logits, next, _) = try step(tokens: Array(inputs.indices[(s * b)..<((s + 1) * b)]), state: state, memory: memory)
                steps.append(logits)
                state = next
            }
            return try Tensor.stack(steps, axis: 0)
        }
        // The whole target through the fused stack at once.
        let embedded = try drop(embedding(indices: inputs.indices, shape: [t, b]))
        let h0 = try Tensor.stack(state.layers.map(\.hidden), axis: 0)
        let cells = state.layers.compactMap(\.cell)
        let c0 = cells.isEmpty ? nil : try Tensor.stack(cells, axis: 0)
        let (out, _) = try stack(SequenceBatch(values: embedded, lengths: inputs.lengths), initialState: RecurrentState(hidden: h0, cell: c0))
        var top = out.values
        if let attention, let memory, let combine {
            let (context, _) = try attention(queries: top, memory: memory)
            top = try drop(combine(Tensor.concatenate([context, top], axis: 2)).tanh())
        }
        return try output(top)
    }

    public var namedParameters: [(name: String, parameter: Parameter<Float>)] {
        // A linear layer's weight, and its bias when it has one, under `prefix`.
        func linear(_ prefix: String, _ layer: Linear<Float>) -> [(name: String, parameter: Parameter<Float>)] {
            [("\(prefix).weight", layer.weight)] + (layer.bias.map { [("\(prefix).bias", $0)] } ?? [])
        }
        var out = linear("bridge.hidden", bridgeHidden) + (bridgeCell.map { linear("bridge.cell", $0) } ?? [])
        out.append(("decoder.embedding.weight", embedding.table))
        out += stack.parameters.map { ("decoder.rnn.\($0.name)", $0) }
        if let attention {
            if let q = attention.queryProjection { out.append(("attention.query.weight", q.weight)) }
            if let k = attention.keyProjection { out += linear("attention.key", k) }
            if let v = attention.vector { out.append(("attention.v", v)) }
        }
        if let combine { out.append(("decoder.combine.weight", combine.weight)) }
        out += linear("decoder.output", output)
        return out
    }
}

/// A recurrent layer stack of whichever cell the configuration names (the cells share one
/// layout of weights per layer and direction; only the gates and the cell state differ).
struct RecurrentStack {
    let cell: any RecurrentCellKind.Type
    let parameters: [Parameter<Float>]
    let weights: [[RecurrentCellWeights<Float>]]
    let outputSize: Int
    private let run: (SequenceBatch<Float>, RecurrentState<Float>?) throws -> (output: SequenceBatch<Float>, state: RecurrentState<Float>)

    init(_ cell: any RecurrentCellKind.Type, inputSize: Int, hiddenSize: Int, numLayers: Int = 1, bidirectional: Bool = false,
         dropout: RecurrentDropout = .none, interLayerDropout: Double = 0, using source: RandomSource) throws {
        typealias Run = (SequenceBatch<Float>, RecurrentState<Float>?) throws -> (output: SequenceBatch<Float>, state: RecurrentState<Float>)
        func make<K: RecurrentCellKind>(_ kind: K.Type) throws -> (Run, [Parameter<Float>], [[RecurrentCellWeights<Float>]], Int) {
            let layer = try Recurrent<Float, K>(inputSize: inputSize, hiddenSize: hiddenSize, numLayers: numLayers, bidirectional: bidirectional,
                                                dropout: dropout, interLayerDropout: interLayerDropout, using: source)
            return ({ x, state in try layer(x, initialState: state) }, layer.parameters, layer.weights, layer.outputSize)
        }
        self.cell = cell
        // The built-in cells by their concrete types, so that the layer's calls are specialized
        // at compile time (an opened existential would run them unspecialized).
        switch cell {
        case is LSTMCell.Type: (run, parameters, weights, outputSize) = try make(LSTMCell.self)
        case is GRUCell.Type: (run, parameters, weights, outputSize) = try make(GRUCell.self)
        default: (run, parameters, weights, outputSize) = try make(cell)
        }
    }

    func callAsFunction(_ x: SequenceBatch<Float>, initialState: RecurrentState<Float>? = nil) throws -> (output: SequenceBatch<Float>, state: RecurrentState<Float>) {
        try run(x, initialState)
    }
}
