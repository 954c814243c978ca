import CLoomKernels

/// Gated recurrent unit, PyTorch's equations (gates r, z, n; the reset gate multiplies the
/// recurrent side of n, so that side stays apart from the input side):
///
///     r = s(W_ir x + b_ir + W_hr h + b_hr),  z = s(W_iz x + b_iz + W_hz h + b_hz)
///     n = tanh(W_in x + b_in + r (W_hn h + b_hn)),  h' = (1 - z) n + z h
///
/// Saved for backward: the activated gates and W_hn h + b_hn. Float rows: `loom_gru.c`.
public enum GRUCell: RecurrentCellRows {
    public static var name: String { "gru" }
    public static var gates: Int { 3 }
    public static var savesRow: Bool { true }
    public static var keepsRecurrentSide: Bool { true }

    public static func forward<S: TensorScalar>(_ p: CellForwardRows<S>) {
        if S.self == Float.self { return forward(p.float) }
        guard let side = p.recurrentSide, let saved = p.saved else { preconditionFailure("GRU rows need the recurrent side and a saved row") }
        let h = p.hiddenSize, gh = 3 * h
        for r in p.rows {
            let gate = p.gates + r * gh, hs = side + r * gh, savedN = saved + r * h
            let hp = p.previousHidden + r * p.previousHiddenStride, out = p.output + r * p.outputStride
            S.accumulate(p.bias, into: gate, count: gh)
            for j in 0..<(2 * h) { gate[j] += hs[j] }
            S.map(.sigmoid, gate, gate, count: 2 * h)
            for j in 0..<h {
                savedN[j] = hs[2 * h + j]
                gate[2 * h + j] += gate[j] * hs[2 * h + j]
            }
            S.map(.tanh, gate + 2 * h, gate + 2 * h, count: h)
            for j in 0..<h {
                let candidate = gate[2 * h + j] * (p.update?[r * h + j] ?? 1)
                let z = gate[h + j]
                out[j] = (1 - z) * candidate + z * hp[j]
            }
        }
    }

    /// The C rows (loom_gru.c).
    static func forward(_ p: CellForwardRows<Float>) {
        guard let side = p.recurrentSide, let saved = p.saved else { preconditionFailure("GRU rows need the recurrent side and a saved row") }
        let h = p.hiddenSize, gh = 3 * h
        for r in p.rows {
            loom_gru_forward_row(p.gates + r * gh, p.bias, side + r * gh, saved + r * h, p.previousHidden + r * p.previousHiddenStride,
                                 p.output + r * p.outputStride, p.update.map { $0 + r * h }, h)
        }
    }

    public static func backward<S: TensorScalar>(_ p: CellBackwardRows<S>) {
        if S.self == Float.self { return backward(p.float) }
        guard let saved = p.saved else { preconditionFailure("GRU rows need a saved row") }
        let h = p.hiddenSize, gh = 3 * h
        for r in p.rows {
            let gate = p.gates + r * gh, hsn = saved + r * h, hp = p.previousHidden + r * p.previousHiddenStride
            let dOut = p.outputGradient + r * p.outputGradientStride, dh = p.hiddenGradient + r * h
            let dxg = p.inputSideGradient + r * gh, dhg = p.recurrentSideGradient + r * gh
            for j in 0..<h {
                let rg = gate[j], z = gate[h + j], nn = gate[2 * h + j]
                let m = p.update?[r * h + j] ?? 1
                let dhj = dOut[j] + dh[j]
                let dn = dhj * (1 - z) * m * (1 - nn * nn)
                let dz = dhj * (hp[j] - nn * m) * z * (1 - z)
                let dr = dn * hsn[j] * rg * (1 - rg)
                dxg[j] = dr; dhg[j] = dr
                dxg[h + j] = dz; dhg[h + j] = dz
                dxg[2 * h + j] = dn
                dhg[2 * h + j] = dn * rg
                dh[j] = dhj * z  // the direct path h' = ... + z h
            }
        }
    }

    static func backward(_ p: CellBackwardRows<Float>) {
        guard let saved = p.saved else { preconditionFailure("GRU rows need a saved row") }
        let h = p.hiddenSize, gh = 3 * h
        for r in p.rows {
            loom_gru_backward_row(p.gates + r * gh, saved + r * h, p.previousHidden + r * p.previousHiddenStride,
                                  p.outputGradient + r * p.outputGradientStride, p.hiddenGradient + r * h, p.inputSideGradient + r * gh,
                                  p.recurrentSideGradient + r * gh, p.update.map { $0 + r * h }, h)
        }
    }
}
