/// A cell the recurrent layers run: the fused kernel's rows (`RecurrentCellRows`) and the same
/// step written with tensor ops, the unfused oracle (`Recurrent`'s `.reference` implementation,
/// `CellStep`, `FoldOperator`) that the fused kernel is tested against.
///
/// A new cell kind is one type conforming to this protocol: `LSTM<Float>` is
/// `Recurrent<Float, LSTMCell>`, and `Recurrent<Float, MyCell>` runs the same loops, threads,
/// dropout methods, packing and bidirectional merging with `MyCell`'s rows.
public protocol RecurrentCellKind: RecurrentCellRows {
    /// One step from the pre-activations of both sides, each [B, G H] with its bias:
    /// `inputSide` = x W_ih^T + b_ih and `recurrentSide` = h W_hh^T + b_hh (h already multiplied
    /// by the state dropout mask). `updateMask` [B, H] multiplies the candidate update.
    static func step<S: TensorScalar>(inputSide: Tensor<S>, recurrentSide: Tensor<S>, state: RecurrentState<S>,
                                      updateMask: Tensor<S>?) throws -> RecurrentState<S>
}

extension RecurrentCellKind {
    /// Block k of G in a [B, G H] tensor.
    static func block<S>(_ t: Tensor<S>, _ k: Int) throws -> Tensor<S> {
        let h = t.shape[1] / gates
        return try t.slice(axis: 1, (k * h)..<((k + 1) * h))
    }

    static func masked<S>(_ t: Tensor<S>, _ mask: Tensor<S>?) throws -> Tensor<S> { try mask.map { try t * $0 } ?? t }
}

extension RecurrentCell {
    /// The built-in cell's type, with its tensor-op step.
    public var kind: any RecurrentCellKind.Type {
        switch self {
        case .rnn: RNNCell.self
        case .gru: GRUCell.self
        case .lstm: LSTMCell.self
        }
    }
}
