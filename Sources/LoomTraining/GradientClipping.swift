/// Gradient clipping by the global norm (PyTorch's `clip_grad_norm_`).
public enum GradientClipping {
    /// The L2 norm of all gradients taken together, accumulated in Double. NaN or infinity when
    /// any gradient element is not finite, which is how non-finite steps are detected.
    public static func globalNorm<S: TensorScalar>(_ gradients: [Tensor<S>]) -> Double {
        var total = 0.0
        for g in gradients {
            g.withBase { p in
                // Specialized loops: a generic Double(x) is a dynamic conversion per element.
                if S.self == Float.self {
                    let f = UnsafeRawPointer(p).assumingMemoryBound(to: Float.self)
                    for i in 0..<g.count { total += Double(f[i]) * Double(f[i]) }
                } else {
                    let d = UnsafeRawPointer(p).assumingMemoryBound(to: Double.self)
                    for i in 0..<g.count { total += d[i] * d[i] }
                }
            }
        }
        return total.squareRoot()
    }

    /// Scales every gradient by maxNorm / norm when the global norm exceeds `maxNorm`; returns the
    /// norm before clipping. Non-finite gradients are left as they are (the caller skips them).
    @discardableResult
    public static func clipByGlobalNorm<S: TensorScalar>(_ gradients: inout [Tensor<S>], maxNorm: Double) -> Double {
        let norm = globalNorm(gradients)
        guard norm.isFinite, norm > maxNorm, norm > 0 else { return norm }
        let scale = S(maxNorm / norm)
        gradients = gradients.map { $0 * scale }
        return norm
    }
}
