extension LSTMCell: RecurrentCellKind {
    /// c' = f c + i g, h' = o tanh(c'), with i, f, g, o = s, s, tanh, s of the summed sides.
    public static func step<S: TensorScalar>(inputSide: Tensor<S>, recurrentSide: Tensor<S>, state: RecurrentState<S>,
                                             updateMask: Tensor<S>?) throws -> RecurrentState<S> {
        guard let c = state.cell else { throw TensorError.invalidArgument(op: "LSTM step", message: "the state has no cell tensor") }
        let pre = try inputSide + recurrentSide
        let i = try block(pre, 0).sigmoid(), f = try block(pre, 1).sigmoid()
        let g = try masked(block(pre, 2).tanh(), updateMask), o = try block(pre, 3).sigmoid()
        let newCell = try f * c + i * g
        return RecurrentState(hidden: try o * newCell.tanh(), cell: newCell)
    }
}
