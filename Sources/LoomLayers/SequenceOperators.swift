/// Operators that build sequence networks out of arbitrary subnetworks (Wolfram's
/// NetMapOperator, NetFoldOperator, NetNestOperator, NetBidirectionalOperator).

/// Applies a layer to every element of a sequence with shared weights (Wolfram's
/// NetMapOperator, Keras's TimeDistributed). Time is folded into the batch, so the layer runs
/// once on [T B, F]; padded positions of the result are zero.
///
/// ```swift
/// let perFrame = MapOperator(Chain<Float>(try Linear(inputSize: 80, outputSize: 32), Activation(.relu)))
/// let projected = try perFrame.forward(frames)   // [T, B, 80] -> [T, B, 32]
/// ```
public struct MapOperator<Scalar: TensorScalar>: SequenceLayer {
    public var layer: any Layer<Scalar>

    public init(_ layer: any Layer<Scalar>) { self.layer = layer }

    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> {
        let (steps, batch) = (input.steps, input.batch)
        let flat = try layer(input.values.reshaped([steps * batch, input.features]))
        guard flat.rank == 2, flat.shape[0] == steps * batch else {
            throw TensorError.rank(op: "MapOperator", expected: "the layer to map [N, F] to [N, F']", shape: flat.shape)
        }
        return try SequenceBatch(values: flat.reshaped([steps, batch, flat.shape[1]]), lengths: input.lengths).zeroingPadding()
    }

    public var parameters: [Parameter<Scalar>] { layer.parameters }
}

/// A subnetwork taking an input element and the previous state to the next state:
/// `(x_t [B, F], s_{t-1} [B, S]) -> s_t [B, S]`, the body of a `FoldOperator`.
public protocol StepLayer<Scalar> {
    associatedtype Scalar: TensorScalar
    func step(input: Tensor<Scalar>, state: Tensor<Scalar>) throws -> Tensor<Scalar>
    var parameters: [Parameter<Scalar>] { get }
}

/// A step written as a closure over its parameters.
public struct StepFunction<Scalar: TensorScalar>: StepLayer {
    public let parameters: [Parameter<Scalar>]
    let body: (Tensor<Scalar>, Tensor<Scalar>) throws -> Tensor<Scalar>

    public init(parameters: [Parameter<Scalar>], _ body: @escaping (_ input: Tensor<Scalar>, _ state: Tensor<Scalar>) throws -> Tensor<Scalar>) {
        self.parameters = parameters
        self.body = body
    }

    public func step(input: Tensor<Scalar>, state: Tensor<Scalar>) throws -> Tensor<Scalar> { try body(input, state) }
}

/// A step over a recurrent cell's whole state, hidden and (for an LSTM) cell:
/// `(x_t [B, F], s_{t-1}) -> s_t`, its hidden state [B, H] being the step's output. What lets a
/// `FoldOperator` fold an LSTM, whose state is two tensors.
public protocol CellStepLayer<Scalar> {
    associatedtype Scalar: TensorScalar
    func step(input: Tensor<Scalar>, state: RecurrentState<Scalar>) throws -> RecurrentState<Scalar>
    var parameters: [Parameter<Scalar>] { get }
    /// Whether the state has a cell half (LSTM) besides the hidden one.
    var hasCellState: Bool { get }
}

/// One cell of a recurrent layer as a step: its weights and its kind (`LSTMCell`, `GRUCell`,
/// `RNNCell` or your own).
///
/// ```swift
/// let lstm = try LSTM<Double>(inputSize: 2, hiddenSize: 3)
/// let fold = try FoldOperator(CellStep(LSTMCell.self, lstm.weights[0][0]), stateSize: 3)
/// let (states, final) = try fold(batch, initialCellState: nil)   // final.hidden, final.cell
/// ```
public struct CellStep<Scalar: TensorScalar>: CellStepLayer {
    public let cell: any RecurrentCellKind.Type
    public let weights: RecurrentCellWeights<Scalar>

    public init(_ cell: any RecurrentCellKind.Type, _ weights: RecurrentCellWeights<Scalar>) {
        self.cell = cell
        self.weights = weights
    }

    /// A built-in cell by name.
    public init(_ cell: RecurrentCell, _ weights: RecurrentCellWeights<Scalar>) {
        self.init(cell.kind, weights)
    }

    public func step(input: Tensor<Scalar>, state: RecurrentState<Scalar>) throws -> RecurrentState<Scalar> {
        try weights.step(cell, input: input, state: state)
    }

    public var parameters: [Parameter<Scalar>] { weights.parameters }
    public var hasCellState: Bool { cell.hasCellState }
}

/// Folds a step subnetwork over each sequence, s_t = f(x_t, s_{t-1}), returning the sequence of
/// states and each sequence's final state (Wolfram's NetFoldOperator; FoldList semantics: every
/// intermediate state is output). Length-aware: a sequence past its length keeps its state, its
/// outputs there are zero, and its final state is the one at its own last step. The state is
/// one tensor (a `StepLayer`) or a cell's whole state (a `CellStepLayer`: an LSTM's hidden and
/// cell), whose hidden half is the output.
public struct FoldOperator<Scalar: TensorScalar>: SequenceLayer {
    enum Body {
        case tensor(any StepLayer<Scalar>)
        case cell(any CellStepLayer<Scalar>)
    }

    let body: Body
    public let stateSize: Int

    public init(_ body: any StepLayer<Scalar>, stateSize: Int) throws {
        try Self.check(stateSize)
        self.body = .tensor(body)
        self.stateSize = stateSize
    }

    /// Folds a cell's whole state; `stateSize` is its hidden size.
    public init(_ body: any CellStepLayer<Scalar>, stateSize: Int) throws {
        try Self.check(stateSize)
        self.body = .cell(body)
        self.stateSize = stateSize
    }

    static func check(_ stateSize: Int) throws {
        guard stateSize > 0 else { throw TensorError.invalidArgument(op: "FoldOperator", message: "stateSize must be positive, got \(stateSize)") }
    }

    /// States [T, B, S] and final states [B, S], from `initialState` (zeros by default). For a
    /// cell body, the hidden halves (the cell half starts at zero; see `initialCellState`).
    public func callAsFunction(_ input: SequenceBatch<Scalar>, initialState: Tensor<Scalar>? = nil) throws
        -> (output: SequenceBatch<Scalar>, state: Tensor<Scalar>)
    {
        let start = initialState.map { hidden -> RecurrentState<Scalar> in
            guard case .cell(let b) = body, b.hasCellState else { return RecurrentState(hidden: hidden) }
            return RecurrentState(hidden: hidden, cell: Tensor.zeros(unchecked: hidden.shape))
        }
        let (output, state) = try self(input, initialCellState: start)
        return (output, state.hidden)
    }

    /// The outputs (hidden states) [T, B, S] and the final whole state, from `initialCellState`
    /// (zeros by default; for an LSTM body both halves [B, S]).
    public func callAsFunction(_ input: SequenceBatch<Scalar>, initialCellState: RecurrentState<Scalar>?) throws
        -> (output: SequenceBatch<Scalar>, state: RecurrentState<Scalar>)
    {
        let batch = input.batch, shape = [batch, stateSize]
        let withCell: Bool = { if case .cell(let b) = body { return b.hasCellState } else { return false } }()
        var state = initialCellState ?? RecurrentState(hidden: Tensor.zeros(unchecked: shape), cell: withCell ? Tensor.zeros(unchecked: shape) : nil)
        guard state.hidden.shape == shape, (state.cell == nil) == !withCell, state.cell.map({ $0.shape == shape }) ?? true else {
            throw TensorError.rank(op: "FoldOperator initial state", expected: "[\(batch), \(stateSize)]" + (withCell ? " for the hidden and the cell state" : ""),
                                   shape: state.hidden.shape)
        }
        var outputs: [Tensor<Scalar>] = []
        outputs.reserveCapacity(input.steps)
        for t in 0..<input.steps {
            let live = input.lengths.map { t < $0 }
            let x = try input.values.select(axis: 0, index: t)
            let next: RecurrentState<Scalar>
            switch body {
            case let .tensor(b): next = RecurrentState(hidden: try b.step(input: x, state: state.hidden))
            case let .cell(b): next = try b.step(input: x, state: state)
            }
            guard next.hidden.shape == shape, next.cell.map({ $0.shape == shape }) ?? !withCell else {
                throw TensorError.rank(op: "FoldOperator step \(t)", expected: "the step to return the state shape \(shape)", shape: next.hidden.shape)
            }
            if live.allSatisfy({ $0 }) {
                state = next
                outputs.append(next.hidden)
            } else {
                let m = Tensor<Scalar>(unchecked: [batch, 1], scalars: live.map { $0 ? 1 : 0 })
                func kept(_ new: Tensor<Scalar>, _ old: Tensor<Scalar>) throws -> Tensor<Scalar> { try m * new + (1 - m) * old }
                state = RecurrentState(hidden: try kept(next.hidden, state.hidden), cell: try next.cell.map { try kept($0, state.cell ?? $0) })
                outputs.append(try m * next.hidden)
            }
        }
        let values = outputs.isEmpty ? Tensor.zeros(unchecked: [0, batch, stateSize]) : try Tensor.stack(outputs, axis: 0)
        return (try SequenceBatch(values: values, lengths: input.lengths), state)
    }

    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try self(input, initialCellState: nil).output }

    public var parameters: [Parameter<Scalar>] {
        switch body {
        case let .tensor(b): return b.parameters
        case let .cell(b): return b.parameters
        }
    }
}

/// Applies a layer `times` times, feeding each output back in: f(f(...f(x))) (Wolfram's
/// NetNestOperator). The layer must map a shape to itself.
public struct NestOperator<Scalar: TensorScalar>: Layer {
    public var layer: any Layer<Scalar>
    public let times: Int

    public init(_ layer: any Layer<Scalar>, times: Int) throws {
        guard times >= 0 else { throw TensorError.invalidArgument(op: "NestOperator", message: "times must be >= 0, got \(times)") }
        self.layer = layer
        self.times = times
    }

    public func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar> {
        try list(input).last ?? input
    }

    /// [x, f(x), f(f(x)), ...]: the `times + 1` iterates, as Mathematica's NestList.
    public func list(_ input: Tensor<Scalar>) throws -> [Tensor<Scalar>] {
        var iterates = [input]
        for k in 0..<times {
            let next = try layer(iterates[k])
            guard next.shape == input.shape else {
                throw TensorError.rank(op: "NestOperator iteration \(k + 1)", expected: "the layer to keep the shape \(input.shape)", shape: next.shape)
            }
            iterates.append(next)
        }
        return iterates
    }

    public var parameters: [Parameter<Scalar>] { layer.parameters }
}

/// NestOperator's iterates stacked on a new leading axis: [times + 1, ...] (NestList).
public struct NestListOperator<Scalar: TensorScalar>: Layer {
    public var nest: NestOperator<Scalar>

    public init(_ layer: any Layer<Scalar>, times: Int) throws { nest = try NestOperator(layer, times: times) }

    public func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar> { try Tensor.stack(nest.list(input), axis: 0) }

    public var parameters: [Parameter<Scalar>] { nest.parameters }
}

/// Runs one sequence layer forward and another on each sequence reversed within its length,
/// re-reverses the second's output and merges the two (Wolfram's NetBidirectionalOperator,
/// Keras's Bidirectional). The two may share weights (pass the same layer twice).
public struct BidirectionalOperator<Scalar: TensorScalar>: SequenceLayer {
    public typealias Merge = DirectionMerge
    public var forwardLayer: any SequenceLayer<Scalar>
    public var backwardLayer: any SequenceLayer<Scalar>
    public let merge: Merge

    public init(forward: any SequenceLayer<Scalar>, backward: any SequenceLayer<Scalar>, merge: Merge = .concatenate) {
        forwardLayer = forward
        backwardLayer = backward
        self.merge = merge
    }

    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> {
        let reverse = SequenceReverse<Scalar>()
        let a = try forwardLayer.forward(input)
        let b = try reverse.forward(backwardLayer.forward(reverse.forward(input)))
        guard a.steps == b.steps, a.lengths == b.lengths, merge == .concatenate || a.features == b.features else {
            throw TensorError.incompatibleShapes(op: "BidirectionalOperator \(merge)", a.values.shape, b.values.shape)
        }
        return try SequenceBatch(values: merge(a.values, b.values), lengths: a.lengths)
    }

    public var parameters: [Parameter<Scalar>] {
        let first = forwardLayer.parameters
        let seen = Set(first.map(ObjectIdentifier.init))
        return first + backwardLayer.parameters.filter { !seen.contains(ObjectIdentifier($0)) }
    }
}
