extension RNNCell: RecurrentCellKind {
    /// h' = tanh(x side + h side).
    public static func step<S: TensorScalar>(inputSide: Tensor<S>, recurrentSide: Tensor<S>, state: RecurrentState<S>,
                                             updateMask: Tensor<S>?) throws -> RecurrentState<S> {
        RecurrentState(hidden: try masked((inputSide + recurrentSide).tanh(), updateMask))
    }
}
