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

/// Folds a step subnetwork over each sequence, s_t = f(x_t, s_{t-1}), returning the sequence of
/// states and each sequence's final state (Wolfram's NetFoldOperator; FoldList semantics: every
/// intermediate state is output). Length-aware: a sequence past its length keeps its state, its
/// outputs there are zero, and its final state is the one at its own last step.
public struct FoldOperator<Scalar: TensorScalar>: SequenceLayer {
    public var body: any StepLayer<Scalar>
    public let stateSize: Int

    public init(_ body: any StepLayer<Scalar>, stateSize: Int) throws {
        guard stateSize > 0 else { throw TensorError.invalidArgument(op: "FoldOperator", message: "stateSize must be positive, got \(stateSize)") }
        self.body = body
        self.stateSize = stateSize
    }

    /// States [T, B, S] and final states [B, S], from `initialState` (zeros by default).
    public func callAsFunction(_ input: SequenceBatch<Scalar>, initialState: Tensor<Scalar>? = nil) throws
        -> (output: SequenceBatch<Scalar>, state: Tensor<Scalar>)
    {
        let batch = input.batch
        var state = initialState ?? Tensor.zeros(unchecked: [batch, stateSize])
        guard state.shape == [batch, stateSize] else {
            throw TensorError.rank(op: "FoldOperator initial state", expected: "[\(batch), \(stateSize)]", shape: state.shape)
        }
        var outputs: [Tensor<Scalar>] = []
        outputs.reserveCapacity(input.steps)
        for t in 0..<input.steps {
            let live = input.lengths.map { t < $0 }
            let next = try body.step(input: input.values.select(axis: 0, index: t), state: state)
            guard next.shape == state.shape else {
                throw TensorError.rank(op: "FoldOperator step \(t)", expected: "the step to return the state shape \(state.shape)", shape: next.shape)
            }
            if live.allSatisfy({ $0 }) {
                state = next
                outputs.append(next)
            } else {
                let m = Tensor<Scalar>(unchecked: [batch, 1], scalars: live.map { $0 ? 1 : 0 })
                state = try m * next + (1 - m) * state
                outputs.append(try m * next)
            }
        }
        let values = outputs.isEmpty ? Tensor.zeros(unchecked: [0, batch, stateSize]) : try Tensor.stack(outputs, axis: 0)
        return (try SequenceBatch(values: values, lengths: input.lengths), state)
    }

    public func forward(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> { try self(input).output }

    public var parameters: [Parameter<Scalar>] { body.parameters }
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
