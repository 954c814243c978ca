/// The weights of one recurrent cell (one layer and direction), and its single steps: `step`,
/// composed of tensor ops (the unfused oracle, and what a recording run takes), and
/// `inferenceStep`, the fused kernel over one step (what step-by-step decoders run).
///
/// Shapes: x [B, I]; state hidden (and cell) [B, H]; weights in PyTorch's layout
/// (`inputWeight` [G H, I], `recurrentWeight` [G H, H], biases [G H]).
public struct RecurrentCellWeights<Scalar: TensorScalar> {
    public let inputWeight: Parameter<Scalar>      // [G H, I]
    public let recurrentWeight: Parameter<Scalar>  // [G H, H]
    public let inputBias: Parameter<Scalar>        // [G H]
    public let recurrentBias: Parameter<Scalar>    // [G H]

    public var parameters: [Parameter<Scalar>] { [inputWeight, recurrentWeight, inputBias, recurrentBias] }

    /// PyTorch's initialization: every weight and bias uniform in ±1/sqrt(H).
    public init(cell: any RecurrentCellRows.Type, inputSize: Int, hiddenSize: Int, suffix: String, using source: RandomSource) throws {
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

    /// One step without gradients: the fused kernel over a one-step layout (the same values as
    /// `step` up to rounding, and the same code as a whole sequence's inference). Off the tape
    /// only: the weights are parameters, so a recording run must take `step` (nil then).
    /// Pre-specialized for Float (see `Recurrent.run`): decoders call it every step.
    @_specialize(where Scalar == Float)
    public func inferenceStep(_ cell: any RecurrentCellRows.Type, input x: Tensor<Scalar>,
                              state: RecurrentState<Scalar>) throws -> RecurrentState<Scalar>? {
        guard !GradientRecording.isEnabled else { return nil }
        let h = recurrentWeight.shape[1], inputSize = inputWeight.shape[1]
        guard x.rank == 2, x.shape[1] == inputSize, state.hidden.shape == [x.shape[0], h],
              !cell.hasCellState || state.cell?.shape == [x.shape[0], h] else {
            throw TensorError.rank(op: "\(cell.name) step", expected: "input [B, \(inputSize)] and state [B, \(h)]", shape: x.shape)
        }
        let b = x.shape[0]
        let kernel = RecurrentKernel<Scalar>(cell: cell, inputSize: inputSize, hiddenSize: h,
                                             layout: PackedLayout(sortedLengths: Array(repeating: 1, count: b)), keepsForBackward: false)
        let tensors = [x, inputWeight.value, recurrentWeight.value, inputBias.value, recurrentBias.value, state.hidden]
            + (state.cell.map { [$0] } ?? [])
        FusedRecurrence.withPointers(tensors) { p in
            kernel.forward(.init(input: p[0], inputWeight: p[1], recurrentWeight: p[2], inputBias: p[3], recurrentBias: p[4],
                                 initialHidden: p[5], initialCell: cell.hasCellState ? p[6] : nil))
        }
        return RecurrentState(hidden: Tensor(unchecked: [b, h], scalars: Memory.array(copying: kernel.finalHidden, count: b * h)),
                              cell: cell.hasCellState ? Tensor(unchecked: [b, h], scalars: Memory.array(copying: kernel.finalCell, count: b * h)) : nil)
    }

    /// One step composed of tensor ops: the two sides' products, then the cell's `step`.
    /// `inputWeight`/`recurrentWeight` may be given to override the parameters (DropConnect).
    public func step(
        _ cell: any RecurrentCellKind.Type, input x: Tensor<Scalar>, state: RecurrentState<Scalar>,
        inputWeight wi: Tensor<Scalar>? = nil, recurrentWeight wh: Tensor<Scalar>? = nil,
        stateMask: Tensor<Scalar>? = nil, updateMask: Tensor<Scalar>? = nil
    ) throws -> RecurrentState<Scalar> {
        let hIn = try stateMask.map { try state.hidden * $0 } ?? state.hidden
        let xSide = try x.matmul(wi ?? inputWeight.value, transposeB: true) + inputBias.value
        let hSide = try hIn.matmul(wh ?? recurrentWeight.value, transposeB: true) + recurrentBias.value
        return try cell.step(inputSide: xSide, recurrentSide: hSide, state: state, updateMask: updateMask)
    }
}
