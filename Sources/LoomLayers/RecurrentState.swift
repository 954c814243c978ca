/// The state a recurrent layer carries from step to step: the hidden state and, for an LSTM,
/// the cell state. Shapes: [L D, B, H] for a layer stack (row = layer * D + direction, as
/// PyTorch's h_n and c_n; D = 2 when bidirectional), [B, H] for one cell step.
public struct RecurrentState<Scalar: TensorScalar> {
    public var hidden: Tensor<Scalar>
    /// The LSTM cell state; nil for RNN and GRU.
    public var cell: Tensor<Scalar>?

    public init(hidden: Tensor<Scalar>, cell: Tensor<Scalar>? = nil) {
        self.hidden = hidden
        self.cell = cell
    }

    /// The same state cut from the tape (truncated backpropagation through time).
    public func detached() -> RecurrentState { RecurrentState(hidden: hidden.detached(), cell: cell?.detached()) }
}

/// The LSTM's state under its usual name.
public typealias LSTMState<Scalar: TensorScalar> = RecurrentState<Scalar>

/// A batch of variable-length sequences, time-major: `values` [T, B, F], `lengths` [B] with
/// every length at most T. Inputs at t >= lengths[b] are ignored; outputs there are zero.
public struct SequenceBatch<Scalar: TensorScalar> {
    public var values: Tensor<Scalar>
    public var lengths: [Int]

    /// - Throws: when `values` is not [T, B, F] or a length is outside 0...T.
    public init(values: Tensor<Scalar>, lengths: [Int]? = nil) throws {
        guard values.rank == 3 else { throw TensorError.rank(op: "SequenceBatch", expected: "values [T, B, F]", shape: values.shape) }
        let lengths = lengths ?? Array(repeating: values.shape[0], count: values.shape[1])
        guard lengths.count == values.shape[1] else {
            throw TensorError.invalidArgument(op: "SequenceBatch", message: "\(lengths.count) lengths for a batch of \(values.shape[1]) (values \(values.shape))")
        }
        if let bad = lengths.first(where: { $0 < 0 || $0 > values.shape[0] }) {
            throw TensorError.invalidArgument(op: "SequenceBatch", message: "length \(bad) is outside 0...\(values.shape[0]) (values \(values.shape))")
        }
        self.values = values
        self.lengths = lengths
    }

    public var steps: Int { values.shape[0] }
    public var batch: Int { values.shape[1] }
    public var features: Int { values.shape[2] }
}
