import CLoomKernels

/// The tanh recurrence (PyTorch's `nn.RNN`, Wolfram's BasicRecurrentLayer):
///
///     h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
///
/// Saved for backward: h' before the update mask (the activated gate). Float rows: `loom_rnn.c`.
public enum RNNCell: RecurrentCellRows {
    public static var name: String { "rnn" }
    public static var gates: Int { 1 }

    public static func forward<S: TensorScalar>(_ p: CellForwardRows<S>) {
        if S.self == Float.self { return forward(p.float) }
        let h = p.hiddenSize
        for r in p.rows {
            let gate = p.gates + r * h, out = p.output + r * p.outputStride
            S.accumulate(p.bias, into: gate, count: h)
            S.map(.tanh, gate, gate, count: h)
            for j in 0..<h { out[j] = gate[j] * (p.update?[r * h + j] ?? 1) }
        }
    }

    /// The C rows (loom_rnn.c).
    static func forward(_ p: CellForwardRows<Float>) {
        let h = p.hiddenSize
        for r in p.rows {
            loom_rnn_forward_row(p.gates + r * h, p.bias, p.output + r * p.outputStride, p.update.map { $0 + r * h }, h)
        }
    }

    public static func backward<S: TensorScalar>(_ p: CellBackwardRows<S>) {
        if S.self == Float.self { return backward(p.float) }
        let h = p.hiddenSize
        for r in p.rows {
            let gate = p.gates + r * h, dOut = p.outputGradient + r * p.outputGradientStride
            let dh = p.hiddenGradient + r * h, dxg = p.inputSideGradient + r * h
            for j in 0..<h {
                let a = gate[j]
                dxg[j] = (dOut[j] + dh[j]) * (p.update?[r * h + j] ?? 1) * (1 - a * a)
                dh[j] = 0
            }
        }
    }

    static func backward(_ p: CellBackwardRows<Float>) {
        let h = p.hiddenSize
        for r in p.rows {
            loom_rnn_backward_row(p.gates + r * h, p.outputGradient + r * p.outputGradientStride, p.hiddenGradient + r * h,
                                  p.inputSideGradient + r * h, p.update.map { $0 + r * h }, h)
        }
    }
}
