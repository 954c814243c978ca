extension GRUCell: RecurrentCellKind {
    /// r, z = s of the summed sides; n = tanh(x side + r h side) of the n block; h' = (1 - z) n + z h.
    public static func step<S: TensorScalar>(inputSide: Tensor<S>, recurrentSide: Tensor<S>, state: RecurrentState<S>,
                                             updateMask: Tensor<S>?) throws -> RecurrentState<S> {
        let r = try (block(inputSide, 0) + block(recurrentSide, 0)).sigmoid()
        let z = try (block(inputSide, 1) + block(recurrentSide, 1)).sigmoid()
        let n = try masked((block(inputSide, 2) + r * block(recurrentSide, 2)).tanh(), updateMask)
        return RecurrentState(hidden: try (1 - z) * n + z * state.hidden)
    }
}
