import CLoomKernels

/// Long short-term memory, PyTorch's equations (gates i, f, g, o):
///
///     i, f, g, o = s(.), s(.), tanh(.), s(.) of W_i* x + b_i* + W_h* h + b_h*
///     c' = f c + i g,  h' = o tanh(c')
///
/// Saved for backward: the activated gates and tanh(c'). Float rows: `loom_lstm.c`.
public enum LSTMCell: RecurrentCellRows {
    public static var name: String { "lstm" }
    public static var gates: Int { 4 }
    public static var hasCellState: Bool { true }
    public static var savesRow: Bool { true }
    public static var hasInferenceRows: Bool { true }

    public static func forward<S: TensorScalar>(_ p: CellForwardRows<S>) {
        if S.self == Float.self { return forward(p.float) }
        guard let cp = p.previousCell, let c = p.cell, let tc = p.saved else { preconditionFailure("LSTM rows need cell and saved rows") }
        let h = p.hiddenSize, gh = 4 * h
        for r in p.rows {
            let gate = p.gates + r * gh, cp = cp + r * h, c = c + r * h, tc = tc + r * h, out = p.output + r * p.outputStride
            S.accumulate(p.bias, into: gate, count: gh)
            S.map(.sigmoid, gate, gate, count: 2 * h)
            S.map(.tanh, gate + 2 * h, gate + 2 * h, count: h)
            S.map(.sigmoid, gate + 3 * h, gate + 3 * h, count: h)
            for j in 0..<h { c[j] = gate[h + j] * cp[j] + gate[j] * gate[2 * h + j] * (p.update?[r * h + j] ?? 1) }
            S.map(.tanh, c, tc, count: h)
            for j in 0..<h { out[j] = gate[3 * h + j] * tc[j] }
        }
    }

    /// The C rows (loom_lstm.c), compiled for the CPU's widest vectors.
    static func forward(_ p: CellForwardRows<Float>) {
        guard let cp = p.previousCell, let c = p.cell, let tc = p.saved else { preconditionFailure("LSTM rows need cell and saved rows") }
        let h = p.hiddenSize, gh = 4 * h
        for r in p.rows {
            loom_lstm_forward_row(p.gates + r * gh, p.bias, cp + r * h, c + r * h, tc + r * h, p.output + r * p.outputStride,
                                  p.update.map { $0 + r * h }, h)
        }
    }

    public static func inferenceForward(_ p: CellForwardRows<Float>, inputSide: UnsafePointer<Float>, hasRecurrentProduct: Bool) {
        guard let cp = p.previousCell, let c = p.cell, let tc = p.saved else { preconditionFailure("LSTM rows need cell and saved rows") }
        let h = p.hiddenSize, gh = 4 * h
        for r in p.rows {
            let act = p.gates + r * gh
            loom_lstm_forward_row_split(inputSide + r * gh, hasRecurrentProduct ? act : nil, act, p.bias, cp + r * h, c + r * h,
                                        tc + r * h, p.output + r * p.outputStride, p.update.map { $0 + r * h }, h)
        }
    }

    public static func backward<S: TensorScalar>(_ p: CellBackwardRows<S>) {
        if S.self == Float.self { return backward(p.float) }
        guard let cp = p.previousCell, let tc = p.saved else { preconditionFailure("LSTM rows need cell and saved rows") }
        let h = p.hiddenSize, gh = 4 * h
        for r in p.rows {
            let gate = p.gates + r * gh, tc = tc + r * h, cp = cp + r * h
            let dOut = p.outputGradient + r * p.outputGradientStride, dh = p.hiddenGradient + r * h, dc = p.cellGradient + r * h
            let dxg = p.inputSideGradient + r * gh
            for j in 0..<h {
                let i = gate[j], f = gate[h + j], g = gate[2 * h + j], o = gate[3 * h + j]
                let m = p.update?[r * h + j] ?? 1
                let dhj = dOut[j] + dh[j]
                let dcj = dc[j] + dhj * o * (1 - tc[j] * tc[j])
                dxg[j] = dcj * g * m * i * (1 - i)
                dxg[h + j] = dcj * cp[j] * f * (1 - f)
                dxg[2 * h + j] = dcj * i * m * (1 - g * g)
                dxg[3 * h + j] = dhj * tc[j] * o * (1 - o)
                dc[j] = dcj * f
                dh[j] = 0
            }
        }
    }

    static func backward(_ p: CellBackwardRows<Float>) {
        guard let cp = p.previousCell, let tc = p.saved else { preconditionFailure("LSTM rows need cell and saved rows") }
        let h = p.hiddenSize, gh = 4 * h
        for r in p.rows {
            loom_lstm_backward_row(p.gates + r * gh, tc + r * h, cp + r * h, p.outputGradient + r * p.outputGradientStride,
                                   p.hiddenGradient + r * h, p.cellGradient + r * h, p.inputSideGradient + r * gh,
                                   p.update.map { $0 + r * h }, h)
        }
    }
}
