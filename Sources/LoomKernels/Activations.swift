import CLoomKernels

/// Vectorized exp, sigmoid and tanh for `Float` buffers, accurate to a few ULP of libm.
///
/// The loops are in C (loom_activations.c and the cell files loom_rnn.c, loom_lstm.c, loom_gru.c), compiled for AVX-512, AVX2+FMA and baseline SSE2 with the
/// version for the running CPU chosen at load time; the formulas and their error bounds are
/// documented there.
public enum Activations {
    /// `out[i] = exp(x[i])`; `out` may alias `x`.
    public static func exp(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        loom_exp(x, out, count)
    }

    /// `out[i] = 1 / (1 + exp(-x[i]))`; `out` may alias `x`.
    public static func sigmoid(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        loom_sigmoid(x, out, count)
    }

    /// `out[i] = tanh(x[i])`; `out` may alias `x`.
    public static func tanh(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        loom_tanh(x, out, count)
    }

    /// `out[i] = ln(x[i] + offset)`; `out` may alias `x`.
    public static func log(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int, offset: Float = 0) {
        loom_log_offset(x, out, count, offset)
    }

    /// `out[i] = |z_i|^power` for interleaved complex `z` [count, 2] (re, im); power 1 or 2.
    public static func complexPower(_ z: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int, power: Int) {
        loom_complex_power(z, out, count, Int32(power))
    }
}
