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

    /// One step without gradients, fused: both products into one gate buffer, then the C row pass
    /// of the fused kernel (loom_lstm.c, loom_rnn.c). The same values as `step` up to rounding; what
    /// step-by-step decoding runs (about ten times fewer tensor operations).
    /// Float LSTM and RNN, inside `withoutGradients` only; nil otherwise (callers fall back to `step`).
    public func inferenceStep(_ cell: RecurrentCell, input x: Tensor<Scalar>, state: RecurrentState<Scalar>) throws -> RecurrentState<Scalar>? {
        // Off the tape only: the weights are parameters, so a recording run must take `step`.
        guard Scalar.self == Float.self, cell != .gru, !GradientRecording.isEnabled else { return nil }
        let h = recurrentWeight.shape[1], g = cell.gates * h, inputSize = inputWeight.shape[1]
        guard x.rank == 2, x.shape[1] == inputSize, state.hidden.shape == [x.shape[0], h] else {
            throw TensorError.rank(op: "\(cell) step", expected: "input [B, \(inputSize)] and state [B, \(h)]", shape: x.shape)
        }
        let b = x.shape[0]
        var gates: [Scalar] = Memory.zeros(b * g), hidden: [Scalar] = Memory.zeros(b * h)
        var cellOut: [Scalar] = Memory.zeros(cell == .lstm ? b * h : 0), tanhCell: [Scalar] = Memory.zeros(cell == .lstm ? b * h : 0)
        let previousCell = cell == .lstm ? (state.cell ?? Tensor.zeros(unchecked: [b, h])) : state.hidden
        x.withBase { xp in state.hidden.withBase { hp in previousCell.withBase { cp in
            gates.withUnsafeMutableBufferPointer { gp in hidden.withUnsafeMutableBufferPointer { out in
                cellOut.withUnsafeMutableBufferPointer { c in tanhCell.withUnsafeMutableBufferPointer { tc in
                    rawStep(cell, rows: b, input: xp, hidden: hp, cell: cp, gates: gp.baseAddress!, hiddenOut: out.baseAddress!,
                            cellOut: c.baseAddress, tanhCell: tc.baseAddress)
                } }
            } }
        } } }
        return RecurrentState(hidden: Tensor(unchecked: [b, h], scalars: hidden),
                              cell: cell == .lstm ? Tensor(unchecked: [b, h], scalars: cellOut) : nil)
    }

    /// The fused inference step on raw buffers: gates [rows, G H] scratch; LSTM needs `cell`,
    /// `cellOut` and `tanhCell` [rows, H]. Float only (checked by the callers).
    func rawStep(_ cell: RecurrentCell, rows b: Int, input xp: UnsafePointer<Scalar>, hidden hp: UnsafePointer<Scalar>,
                 cell cp: UnsafePointer<Scalar>?, gates: UnsafeMutablePointer<Scalar>, hiddenOut: UnsafeMutablePointer<Scalar>,
                 cellOut: UnsafeMutablePointer<Scalar>?, tanhCell: UnsafeMutablePointer<Scalar>?) {
        let h = recurrentWeight.shape[1], g = cell.gates * h, inputSize = inputWeight.shape[1]
        // The row passes add the bias (both biases summed: RNN and LSTM only come here).
        var bias: [Scalar] = inputBias.data.scalars
        recurrentBias.data.withBase { bh in bias.withUnsafeMutableBufferPointer { Scalar.accumulate(bh, into: $0.baseAddress!, count: g) } }
        inputWeight.data.withBase { w in
            Scalar.gemm(transA: false, transB: true, m: b, n: g, k: inputSize, alpha: 1, a: xp, lda: inputSize, b: w, ldb: inputSize, beta: 0, c: gates, ldc: g)
        }
        recurrentWeight.data.withBase { w in
            Scalar.gemm(transA: false, transB: true, m: b, n: g, k: h, alpha: 1, a: hp, lda: h, b: w, ldb: h, beta: 1, c: gates, ldc: g)
        }
        func f(_ p: UnsafePointer<Scalar>) -> UnsafeMutablePointer<Float> { UnsafeMutableRawPointer(mutating: p).assumingMemoryBound(to: Float.self) }
        bias.withUnsafeBufferPointer { bp in
            let bias = f(bp.baseAddress!)
            for r in 0..<b {
                if cell == .lstm, let cp, let cellOut, let tanhCell {
                    CellRows.lstmForward(gate: f(gates + r * g), bias: bias, previousCell: f(cp + r * h), cell: f(cellOut + r * h),
                                         tanhCell: f(tanhCell + r * h), out: f(hiddenOut + r * h), hidden: h)
                } else {
                    CellRows.rnnForward(gate: f(gates + r * g), bias: bias, out: f(hiddenOut + r * h), hidden: h)
                }
            }
        }
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
