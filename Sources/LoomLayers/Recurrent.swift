/// tanh recurrence, s_t = tanh(W_i x_t + W_s s_{t-1} + b) (Wolfram's BasicRecurrentLayer).
public typealias RNN<Scalar: TensorScalar> = Recurrent<Scalar, RNNCell>
/// Gated recurrent unit (PyTorch's equations; Wolfram's GatedRecurrentLayer).
public typealias GRU<Scalar: TensorScalar> = Recurrent<Scalar, GRUCell>
/// Long short-term memory (PyTorch's equations; Wolfram's LongShortTermMemoryLayer).
public typealias LSTM<Scalar: TensorScalar> = Recurrent<Scalar, LSTMCell>
public typealias BasicRecurrentLayer<Scalar: TensorScalar> = RNN<Scalar>
public typealias GatedRecurrentLayer<Scalar: TensorScalar> = GRU<Scalar>
public typealias LongShortTermMemoryLayer<Scalar: TensorScalar> = LSTM<Scalar>

/// A stack of recurrent layers over variable-length sequences, optionally bidirectional, as
/// PyTorch's `nn.RNN`/`nn.GRU`/`nn.LSTM` (the same parameter names, layouts and state shapes, so
/// a state_dict imports directly).
///
/// Shapes: input `SequenceBatch` values [T, B, I]; output values [T, B, H] (or [T, B, 2H] when
/// bidirectional with `.concatenate`), zero at padded steps; state [L D, B, H].
/// Each direction of each layer runs the fused kernel over the packed batch: only live
/// sequences take part at each step, the reverse direction reads each sequence backward within
/// its own length, and each sequence's final state is the one at its own last step.
///
/// ```swift
/// let lstm = try LSTM<Float>(inputSize: 80, hiddenSize: 256, numLayers: 2, bidirectional: true)
/// let (output, state) = try lstm(SequenceBatch(values: features, lengths: lengths))
/// ```
public struct Recurrent<Scalar: TensorScalar, Kind: RecurrentCellKind> {
    public typealias Merge = DirectionMerge

    public let inputSize: Int, hiddenSize: Int, numLayers: Int
    public let bidirectional: Bool
    public let merge: Merge
    public var dropout: RecurrentDropout
    /// Dropout on the outputs of every layer but the last (PyTorch's `dropout` argument).
    public var interLayerDropout: Double
    /// Where dropout masks come from.
    public let source: RandomSource
    /// Gradient checkpointing (Wolfram's "mirroring"): when set to k, training keeps only the
    /// state at every k-th step and recomputes each k-step segment in the backward pass, so
    /// memory grows with T / k + k instead of T, for about one more forward pass of time.
    /// Unidirectional stacks only (a reverse direction's state flows the other way).
    public var checkpointEvery: Int?
    /// Weights per layer and direction (0 forward, 1 reverse).
    public let weights: [[RecurrentCellWeights<Scalar>]]

    /// The cell's name ("lstm"), for messages.
    public var cell: String { Kind.name }
    public var directions: Int { bidirectional ? 2 : 1 }
    public var outputSize: Int { bidirectional && merge == .concatenate ? 2 * hiddenSize : hiddenSize }

    public init(inputSize: Int, hiddenSize: Int, numLayers: Int = 1, bidirectional: Bool = false, merge: Merge = .concatenate,
                dropout: RecurrentDropout = .none, interLayerDropout: Double = 0, using source: RandomSource = .shared) throws {
        guard inputSize > 0, hiddenSize > 0, numLayers > 0 else {
            throw TensorError.invalidArgument(op: Kind.name, message: "sizes must be positive: input \(inputSize), hidden \(hiddenSize), layers \(numLayers)")
        }
        try dropout.validate()
        guard interLayerDropout >= 0, interLayerDropout < 1 else {
            throw TensorError.invalidArgument(op: Kind.name, message: "interLayerDropout must be in [0, 1), got \(interLayerDropout)")
        }
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.numLayers = numLayers
        self.bidirectional = bidirectional
        self.merge = merge
        self.dropout = dropout
        self.interLayerDropout = interLayerDropout
        self.source = source
        let layerOutput = bidirectional && merge == .concatenate ? 2 * hiddenSize : hiddenSize
        weights = try (0..<numLayers).map { layer in
            try (0..<(bidirectional ? 2 : 1)).map { direction in
                try RecurrentCellWeights(cell: Kind.self, inputSize: layer == 0 ? inputSize : layerOutput, hiddenSize: hiddenSize,
                                         suffix: "_l\(layer)" + (direction == 1 ? "_reverse" : ""), using: source)
            }
        }
    }

    /// Every parameter in PyTorch's state_dict order (weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._reverse, l1 ...).
    public var parameters: [Parameter<Scalar>] { weights.flatMap { $0.flatMap { $0.parameters } } }

    /// Zeros of the state shape [L D, B, H].
    public func zeroState(batch: Int) -> RecurrentState<Scalar> {
        let zeros = Tensor<Scalar>.zeros(unchecked: [numLayers * directions, batch, hiddenSize])
        return RecurrentState(hidden: zeros, cell: Kind.hasCellState ? zeros : nil)
    }

    /// Runs the stack over `input` from `initialState` (zeros by default), drawing dropout masks
    /// when in training (or `dropout.alwaysActive`).
    public func callAsFunction(_ input: SequenceBatch<Scalar>, initialState: RecurrentState<Scalar>? = nil) throws
        -> (output: SequenceBatch<Scalar>, state: RecurrentState<Scalar>)
    {
        let masks = try drawMasks(for: input)
        if let every = checkpointEvery, GradientRecording.isEnabled {
            return try runCheckpointed(input, initialState: initialState, masks: masks, every: every)
        }
        return try run(input, initialState: initialState, masks: masks)
    }

    /// The fused kernels (the default) or the unfused composition of `RecurrentCellWeights.step`
    /// over a masked, unpacked loop: the oracle the fused path is tested against.
    public enum Implementation: Sendable { case fused, reference }

    /// Runs the stack with given dropout masks (from `drawMasks`).
    ///
    /// Pre-specialized for Float, like the tape's sweep and the optimizers' step (each marked
    /// "see Recurrent.run"): a generic function called from another module runs unspecialized, and
    /// this one's work (the fused kernels' set-up, the tape, the optimizer) would look up generic
    /// metadata at run time on every training step.
    @_specialize(where Scalar == Float, Kind == LSTMCell)
    @_specialize(where Scalar == Float, Kind == GRUCell)
    @_specialize(where Scalar == Float, Kind == RNNCell)
    public func run(_ input: SequenceBatch<Scalar>, initialState: RecurrentState<Scalar>? = nil,
                    masks: [RecurrentLayerMasks<Scalar>], implementation: Implementation = .fused) throws
        -> (output: SequenceBatch<Scalar>, state: RecurrentState<Scalar>)
    {
        guard input.features == inputSize else {
            throw TensorError.rank(op: "\(cell)(input \(inputSize))", expected: "input [T, B, \(inputSize)]", shape: input.values.shape)
        }
        let batch = input.batch, stateShape = [numLayers * directions, batch, hiddenSize]
        let state = initialState ?? zeroState(batch: batch)
        guard state.hidden.shape == stateShape, !Kind.hasCellState || state.cell?.shape == stateShape else {
            throw TensorError.rank(op: "\(cell) initial state", expected: "\(stateShape)", shape: state.hidden.shape)
        }
        guard masks.isEmpty || masks.count == numLayers else {
            throw TensorError.invalidArgument(op: "\(cell)", message: "\(masks.count) layer masks for \(numLayers) layers")
        }
        let packing = Packing(lengths: input.lengths, steps: input.steps)
        var values = input.values
        var finalHidden: [Tensor<Scalar>] = [], finalCell: [Tensor<Scalar>] = []
        for layer in 0..<numLayers {
            let layerMasks = masks.isEmpty ? nil : masks[layer]
            if let mask = layerMasks?.interLayer { values = try values * mask }
            if let mask = layerMasks?.input { values = try values * mask }
            var results: [(outputs: Tensor<Scalar>, hidden: Tensor<Scalar>, cell: Tensor<Scalar>?)] = []
            var fusedDirections: [FusedRecurrence.Direction<Scalar>] = []
            for direction in 0..<directions {
                let row = layer * directions + direction
                let w = weights[layer][direction]
                let m = layerMasks?.directions[direction]
                let inputWeight = try m?.inputWeight.map { try w.inputWeight.value * $0 } ?? w.inputWeight.value
                let recurrentWeight = try m?.recurrentWeight.map { try w.recurrentWeight.value * $0 } ?? w.recurrentWeight.value
                let h0 = try state.hidden.select(axis: 0, index: row)
                let c0 = try state.cell.map { try $0.select(axis: 0, index: row) }
                let reverse = direction == 1
                switch implementation {
                case .fused:
                    // When every sequence is full length the packing is the identity: no
                    // gathers, just reshapes (the reverse direction stores its steps in reverse).
                    let identity = packing.isFull
                    func pack(_ t: Tensor<Scalar>, width: Int) throws -> Tensor<Scalar> {
                        let flat = try t.reshaped([input.steps * batch, width])
                        return identity ? flat : try flat.gathering(rows: packing.packIndices(reverse: reverse))
                    }
                    fusedDirections.append(FusedRecurrence.Direction(
                        cell: Kind.self, layout: identity && reverse ? packing.reversedLayout : packing.layout,
                        input: try pack(values, width: values.shape[2]),
                        weights: [inputWeight, recurrentWeight, w.inputBias.value, w.recurrentBias.value],
                        initialHidden: try packing.sorted(h0), initialCell: try c0.map(packing.sorted),
                        stateMask: try m?.state.map(packing.sorted), updateMask: try m?.update.map { try pack($0, width: hiddenSize) },
                        quantized: GradientRecording.isEnabled ? [nil, nil]
                            : [m?.inputWeight == nil ? w.inputWeight.quantized : nil, m?.recurrentWeight == nil ? w.recurrentWeight.quantized : nil]))
                case .reference:
                    results.append(try referenceDirection(w, values: values, lengths: input.lengths, reverse: reverse,
                                                          initial: RecurrentState(hidden: h0, cell: c0), inputWeight: inputWeight,
                                                          recurrentWeight: recurrentWeight, masks: m))
                }
            }
            if fusedDirections.count == 2, merge == .concatenate, packing.isFull {
                // Full-length sequences: the two directions write their halves of the merged
                // outputs in place and read their halves of its gradient (no copies out of the
                // kernels, no concatenation, no split of the gradient).
                let (merged, finals) = FusedRecurrence.runMerged(fusedDirections)
                for final in finals {
                    finalHidden.append(final.hidden)
                    if let c = final.cell { finalCell.append(c) }
                }
                values = try merged.reshaped([input.steps, batch, 2 * hiddenSize])
                continue
            }
            if !fusedDirections.isEmpty {
                // Both directions of a layer in one call: they run concurrently.
                for (direction, fused) in try FusedRecurrence.runAll(fusedDirections).enumerated() {
                    let reverse = direction == 1
                    let outputs = packing.isFull ? try fused.outputs.reshaped([input.steps, batch, hiddenSize])
                        : try packing.unpack(fused.outputs, reverse: reverse)
                    results.append((outputs, try packing.unsorted(fused.hidden), try fused.cell.map(packing.unsorted)))
                }
            }
            var outputs: [Tensor<Scalar>] = []
            for result in results {
                outputs.append(result.outputs)
                finalHidden.append(result.hidden)
                if let c = result.cell { finalCell.append(c) }
            }
            values = try mergeDirections(outputs)
        }
        let output = try SequenceBatch(values: values, lengths: input.lengths)
        let hidden = try Tensor.stack(finalHidden, axis: 0)
        let cellState = finalCell.isEmpty ? nil : try Tensor.stack(finalCell, axis: 0)
        return (output, RecurrentState(hidden: hidden, cell: cellState))
    }

    /// One direction as a plain loop of cell steps over the full batch: at step t every sequence
    /// runs, and those past their length keep their state (a blend with a 0/1 mask). Reverse
    /// reads each sequence backward within its length, through an explicit index gather.
    func referenceDirection(
        _ w: RecurrentCellWeights<Scalar>, values: Tensor<Scalar>, lengths: [Int], reverse: Bool, initial: RecurrentState<Scalar>,
        inputWeight: Tensor<Scalar>, recurrentWeight: Tensor<Scalar>, masks: RecurrentDirectionMasks<Scalar>?
    ) throws -> (outputs: Tensor<Scalar>, hidden: Tensor<Scalar>, cell: Tensor<Scalar>?) {
        let steps = values.shape[0], batch = values.shape[1], features = values.shape[2]
        let flat = try values.reshaped([steps * batch, features])
        var state = initial
        var outputs = [Tensor<Scalar>](repeating: Tensor.zeros(unchecked: [batch, hiddenSize]), count: steps)
        for t in 0..<steps {
            // The time position each sequence reads at step t (clamped for finished ones).
            let positions = (0..<batch).map { b in reverse ? Swift.max(lengths[b] - 1 - t, 0) : t }
            let x = try flat.gathering(rows: positions.enumerated().map { b, time in time * batch + b })
            let update = try masks?.update.map { m in
                try m.reshaped([steps * batch, hiddenSize]).gathering(rows: positions.enumerated().map { b, time in time * batch + b })
            }
            let next = try w.step(Kind.self, input: x, state: state, inputWeight: inputWeight, recurrentWeight: recurrentWeight,
                                  stateMask: masks?.state, updateMask: update)
            let live = try Tensor<Scalar>(shape: [batch, 1], scalars: (0..<batch).map { t < lengths[$0] ? 1 : 0 })
            let blend: (Tensor<Scalar>, Tensor<Scalar>) throws -> Tensor<Scalar> = { new, old in try live * new + (1 - live) * old }
            state = RecurrentState(hidden: try blend(next.hidden, state.hidden),
                                   cell: try next.cell.flatMap { c in try state.cell.map { try blend(c, $0) } })
            // Output at the time position read, zero for finished sequences.
            for b in 0..<batch where t < lengths[b] {
                let time = positions[b]
                let oneHot = try Tensor<Scalar>(shape: [batch, 1], scalars: (0..<batch).map { $0 == b ? 1 : 0 })
                outputs[time] = try outputs[time] + oneHot * state.hidden
            }
        }
        return (try Tensor.stack(outputs, axis: 0), state.hidden, state.cell)
    }

    /// Draws this call's dropout masks: empty when dropout is off or not in training.
    public func drawMasks(for input: SequenceBatch<Scalar>) throws -> [RecurrentLayerMasks<Scalar>] {
        let d = dropout
        guard d.isActive, d.weights > 0 || d.input > 0 || d.state > 0 || d.stateUpdate > 0 || interLayerDropout > 0 else { return [] }
        func mask(_ shape: [Int], _ p: Double) throws -> Tensor<Scalar>? {
            p > 0 ? try Dropout<Scalar>.mask(shape: shape, probability: p, using: source) : nil
        }
        let (steps, batch) = (input.steps, input.batch)
        return try (0..<numLayers).map { layer in
            let features = layer == 0 ? inputSize : outputSize
            return RecurrentLayerMasks(
                interLayer: layer > 0 ? try mask([steps, batch, features], interLayerDropout) : nil,
                input: try mask([1, batch, features], d.input),
                directions: try weights[layer].map { w in
                    RecurrentDirectionMasks(
                        inputWeight: try mask(w.inputWeight.shape, d.weights), recurrentWeight: try mask(w.recurrentWeight.shape, d.weights),
                        state: try mask([batch, hiddenSize], d.state), update: try mask([steps, batch, hiddenSize], d.stateUpdate))
                })
        }
    }

    func mergeDirections(_ outputs: [Tensor<Scalar>]) throws -> Tensor<Scalar> {
        guard outputs.count == 2 else { return outputs[0] }
        return try merge(outputs[0], outputs[1])
    }
}

/// One layer's dropout masks (inverted: kept entries are 1/(1-p)); nil where a method is off.
public struct RecurrentLayerMasks<Scalar: TensorScalar> {
    /// [T, B, F] on the layer's input, between layers.
    public var interLayer: Tensor<Scalar>?
    /// [1, B, F]: VariationalInput.
    public var input: Tensor<Scalar>?
    /// Per direction.
    public var directions: [RecurrentDirectionMasks<Scalar>]
}

/// One direction's masks.
public struct RecurrentDirectionMasks<Scalar: TensorScalar> {
    /// Weight-shaped: VariationalWeights (DropConnect).
    public var inputWeight: Tensor<Scalar>?
    public var recurrentWeight: Tensor<Scalar>?
    /// [B, H]: VariationalState.
    public var state: Tensor<Scalar>?
    /// [T, B, H] by time position: StateUpdate.
    public var update: Tensor<Scalar>?
}

/// How a batch of lengths maps to the kernel's packed rows and back.
struct Packing {
    let lengths: [Int]
    let steps: Int
    /// Batch indices sorted by length, longest first (stable): packed position k is sequence order[k].
    let order: [Int]
    /// The inverse: sequence b sits at packed position rank[b].
    let rank: [Int]
    let layout: PackedLayout

    init(lengths: [Int], steps: Int) {
        self.lengths = lengths
        self.steps = steps
        order = lengths.indices.sorted { lengths[$0] > lengths[$1] || (lengths[$0] == lengths[$1] && $0 < $1) }
        var rank = [Int](repeating: 0, count: lengths.count)
        for (k, b) in order.enumerated() { rank[b] = k }
        self.rank = rank
        layout = PackedLayout(sortedLengths: order.map { lengths[$0] })
    }

    /// Whether every sequence has the full length (then `order` and `rank` are the identity).
    var isFull: Bool { lengths.allSatisfy { $0 == steps } }

    /// The layout of a reverse direction over full-length sequences: steps stored in reverse, so
    /// its packed rows are the batch's rows in their own order (see `isFull`).
    var reversedLayout: PackedLayout { PackedLayout(sortedLengths: layout.lengths, stepsStoredInReverse: true) }

    /// Per-sequence rows [B, ...] in the kernel's order (longest first).
    func sorted<Scalar: TensorScalar>(_ t: Tensor<Scalar>) throws -> Tensor<Scalar> { isFull ? t : try t.gathering(rows: order) }

    /// Per-sequence rows [B, ...] from the kernel's order back to the batch's.
    func unsorted<Scalar: TensorScalar>(_ t: Tensor<Scalar>) throws -> Tensor<Scalar> { isFull ? t : try t.gathering(rows: rank) }

    /// Row of the [T B, F] input that feeds packed row (t, k); reversed within each length.
    func packIndices(reverse: Bool) -> [Int] {
        var indices: [Int] = []
        indices.reserveCapacity(layout.rows)
        for t in 0..<layout.steps {
            for k in 0..<layout.batchSizes[t] {
                let b = order[k]
                let time = reverse ? lengths[b] - 1 - t : t
                indices.append(time * lengths.count + b)
            }
        }
        return indices
    }

    /// Packed outputs [N, H] back to [T, B, H], zero at padded steps.
    func unpack<Scalar: TensorScalar>(_ packed: Tensor<Scalar>, reverse: Bool) throws -> Tensor<Scalar> {
        let n = layout.rows, h = packed.shape[1], batch = lengths.count
        let withZero = try Tensor.concatenate([packed, Tensor.zeros(unchecked: [1, h])], axis: 0)
        var indices = [Int](repeating: n, count: steps * batch)
        for b in 0..<batch {
            for t in 0..<lengths[b] {
                let step = reverse ? lengths[b] - 1 - t : t
                indices[t * batch + b] = layout.offsets[step] + rank[b]
            }
        }
        return try withZero.gathering(rows: indices, indexShape: [steps, batch])
    }
}
