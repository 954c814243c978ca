/// One time step of an RNN, GRU or LSTM cell, composed of tensor ops.
///
/// This is what step-by-step decoders and `FoldOperator` call, and the unfused oracle the fused
/// kernel is tested against. Shapes: x [B, I]; state hidden (and cell) [B, H]; weights in
/// PyTorch's layout (`inputWeight` [G H, I], `recurrentWeight` [G H, H], biases [G H]).
public struct RecurrentCellWeights<Scalar: TensorScalar> {
    public let inputWeight: Parameter<Scalar>      // [G H, I]
    public let recurrentWeight: Parameter<Scalar>  // [G H, H]
    public let inputBias: Parameter<Scalar>        // [G H]
    public let recurrentBias: Parameter<Scalar>    // [G H]

    public var parameters: [Parameter<Scalar>] { [inputWeight, recurrentWeight, inputBias, recurrentBias] }

    /// PyTorch's initialization: every weight and bias uniform in ±1/sqrt(H).
    public init(cell: RecurrentCell, inputSize: Int, hiddenSize: Int, suffix: String, using source: RandomSource) throws {
        let g = cell.gates * hiddenSize
        let bound = 1 / Scalar(hiddenSize).squareRoot()
        func uniform(_ shape: [Int], _ name: String) throws -> Parameter<Scalar> {
            Parameter(try .randomUniform(shape, lower: -bound, upper: bound, using: source), name: name + suffix)
        }
        inputWeight = try uniform([g, inputSize], "weight_ih")
        recurrentWeight = try uniform([g, hiddenSize], "weight_hh")
        inputBias = try uniform([g], "bias_ih")
        recurrentBias = try uniform([g], "bias_hh")
    }

    /// One step: the cell equations of `RecurrentKernel`, written with tensor ops.
    /// `inputWeight`/`recurrentWeight` may be given to override the parameters (DropConnect).
    public func step(
        _ cell: RecurrentCell, input x: Tensor<Scalar>, state: RecurrentState<Scalar>,
        inputWeight wi: Tensor<Scalar>? = nil, recurrentWeight wh: Tensor<Scalar>? = nil,
        stateMask: Tensor<Scalar>? = nil, updateMask: Tensor<Scalar>? = nil
    ) throws -> RecurrentState<Scalar> {
        let h = recurrentWeight.shape[1]
        let hIn = try stateMask.map { try state.hidden * $0 } ?? state.hidden
        let xSide = try x.matmul(wi ?? inputWeight.value, transposeB: true) + inputBias.value
        let hSide = try hIn.matmul(wh ?? recurrentWeight.value, transposeB: true) + recurrentBias.value
        func block(_ t: Tensor<Scalar>, _ k: Int) throws -> Tensor<Scalar> { try t.slice(axis: 1, (k * h)..<((k + 1) * h)) }
        func masked(_ t: Tensor<Scalar>) throws -> Tensor<Scalar> { try updateMask.map { try t * $0 } ?? t }
        switch cell {
        case .rnn:
            return RecurrentState(hidden: try masked((xSide + hSide).tanh()))
        case .lstm:
            let pre = try xSide + hSide
            let i = try block(pre, 0).sigmoid(), f = try block(pre, 1).sigmoid()
            let g = try masked(block(pre, 2).tanh()), o = try block(pre, 3).sigmoid()
            guard let c = state.cell else {
                throw TensorError.invalidArgument(op: "LSTM step", message: "the state has no cell tensor")
            }
            let newCell = try f * c + i * g
            return RecurrentState(hidden: try o * newCell.tanh(), cell: newCell)
        case .gru:
            let r = try (block(xSide, 0) + block(hSide, 0)).sigmoid()
            let z = try (block(xSide, 1) + block(hSide, 1)).sigmoid()
            let n = try masked((block(xSide, 2) + r * block(hSide, 2)).tanh())
            return RecurrentState(hidden: try (1 - z) * n + z * state.hidden)
        }
    }
}
