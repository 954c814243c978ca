/// The weights of one recurrent cell (one layer and direction), and its single steps: `step`,
/// composed of tensor ops (the unfused oracle, and what a recording run takes), and
/// `inferenceStep`, the two products and then the cell's own fused rows (what step-by-step
/// decoders run).
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

    /// One step without gradients: both products into one gate buffer (the recurrent side into
    /// its own when the cell keeps it apart), then the cell's forward rows, the ones the fused
    /// kernel runs (C for Float). The same values as `step` up to rounding; what greedy, beam and
    /// sampling searches run at every decoder step. Off the tape only: the weights are
    /// parameters, so a recording run must take `step` (nil then).
    /// Pre-specialized for Float (see `Recurrent.run`): decoders call it every step.
    @_specialize(where Scalar == Float)
    public func inferenceStep(_ cell: any RecurrentCellRows.Type, input x: Tensor<Scalar>,
                              state: RecurrentState<Scalar>) throws -> RecurrentState<Scalar>? {
        guard !GradientRecording.isEnabled else { return nil }
        let h = recurrentWeight.shape[1], inputSize = inputWeight.shape[1], g = cell.gates * h
        guard x.rank == 2, x.shape[1] == inputSize, state.hidden.shape == [x.shape[0], h],
              !cell.hasCellState || state.cell?.shape == [x.shape[0], h] else {
            throw TensorError.rank(op: "\(cell.name) step", expected: "input [B, \(inputSize)] and state [B, \(h)]", shape: x.shape)
        }
        let b = x.shape[0], apart = cell.keepsRecurrentSide
        // gates [B, G H] and (apart) side [B, G H]; bias [G H]; then the new hidden, cell and
        // saved rows [B, H] each.
        let buffer = UnsafeMutablePointer<Scalar>.allocate(capacity: Swift.max(b * g * (apart ? 2 : 1) + g + 3 * b * h, 1))
        defer { buffer.deallocate() }
        let gates = buffer, side = buffer + b * g, bias = side + (apart ? b * g : 0)
        let hidden = bias + g, newCell = hidden + b * h, saved = newCell + b * h
        let tensors = [x, inputWeight.value, recurrentWeight.value, inputBias.value, recurrentBias.value, state.hidden]
            + (cell.hasCellState ? [state.cell ?? state.hidden] : [])
        FusedRecurrence.withPointers(tensors) { p in
            Memory.copy(p[3], to: bias, count: g)
            if !apart { Scalar.accumulate(p[4], into: bias, count: g) }
            // C [B, G H] (+)= A W^T, in int8 when the weight has an int8 form (Float only).
            func product(_ weight: Parameter<Scalar>, a: UnsafePointer<Scalar>, w: UnsafePointer<Scalar>, k: Int, beta: Scalar,
                         c: UnsafeMutablePointer<Scalar>) {
                if Scalar.self == Float.self, let q = weight.quantized {
                    q.multiply(m: b, a: a, lda: k, beta: beta, c: c, ldc: g)
                } else {
                    Scalar.gemm(transA: false, transB: true, m: b, n: g, k: k, alpha: 1, a: a, lda: k, b: w, ldb: k, beta: beta, c: c, ldc: g)
                }
            }
            product(inputWeight, a: p[0], w: p[1], k: inputSize, beta: 0, c: gates)
            if apart { for r in 0..<b { Memory.copy(p[4], to: side + r * g, count: g) } }
            product(recurrentWeight, a: p[5], w: p[2], k: h, beta: 1, c: apart ? side : gates)
            cell.forward(CellForwardRows(
                rows: 0..<b, hiddenSize: h, gates: gates, bias: bias, recurrentSide: apart ? UnsafePointer(side) : nil,
                previousHidden: p[5], previousHiddenStride: h, previousCell: cell.hasCellState ? p[6] : nil,
                cell: cell.hasCellState ? newCell : nil, saved: cell.savesRow ? saved : nil, output: hidden, outputStride: h))
        }
        return RecurrentState(hidden: Tensor(unchecked: [b, h], scalars: Memory.array(copying: hidden, count: b * h)),
                              cell: cell.hasCellState ? Tensor(unchecked: [b, h], scalars: Memory.array(copying: newCell, count: b * h)) : nil)
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
