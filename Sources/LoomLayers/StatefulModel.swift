/// A recurrent stack that remembers its state between calls (Wolfram's NetStateObject, Flux's
/// `Recur` with `reset!`, Keras's `stateful=True`): each call starts from the final state of the
/// previous one; `reset()` goes back to zeros (or to `initialState`).
///
/// Truncated backpropagation through time: with `truncatesGradient` (the default) the carried
/// state is cut from the tape, so training on consecutive chunks of one long sequence carries
/// the state forward while each chunk's gradient stops at its own first step.
///
/// ```swift
/// let model = StatefulModel(try LSTM<Float>(inputSize: 1, hiddenSize: 32))
/// for chunk in chunks { let y = try model(chunk); ... }   // state flows chunk to chunk
/// model.reset()
/// ```
public final class StatefulModel<Scalar: TensorScalar, Kind: RecurrentCellKind> {
    public let layer: Recurrent<Scalar, Kind>
    public var truncatesGradient: Bool
    /// The state the next call starts from; nil means zeros (or `initialState`).
    public private(set) var state: RecurrentState<Scalar>?
    /// What `reset()` returns to; nil means zeros.
    public var initialState: RecurrentState<Scalar>?

    public init(_ layer: Recurrent<Scalar, Kind>, truncatesGradient: Bool = true, initialState: RecurrentState<Scalar>? = nil) {
        self.layer = layer
        self.truncatesGradient = truncatesGradient
        self.initialState = initialState
        state = initialState
    }

    /// Runs the layer from the carried state and keeps its final state for the next call.
    /// Throws when the batch size differs from the carried state's (call `reset()` first).
    public func callAsFunction(_ input: SequenceBatch<Scalar>) throws -> SequenceBatch<Scalar> {
        if let state, state.hidden.shape[1] != input.batch {
            throw TensorError.invalidArgument(
                op: "StatefulModel", message: "batch of \(input.batch) sequences, but the carried state is for \(state.hidden.shape[1]); call reset() first")
        }
        let (output, final) = try layer(input, initialState: state)
        state = truncatesGradient ? final.detached() : final
        return output
    }

    /// Forgets the carried state.
    public func reset() { state = initialState }

    public var parameters: [Parameter<Scalar>] { layer.parameters }
}
