/// Central finite differences, the oracle every analytic gradient is held to.
public enum GradientCheck {
    /// The largest discrepancy found by `compare`.
    public struct Report: CustomStringConvertible {
        /// max over inputs and elements of |analytic - numeric| / (atol/rtol scale), <= 1 passes.
        public var worstRatio: Double
        public var worstInput: Int
        public var worstElement: Int
        public var analytic: Double
        public var numeric: Double
        public var passed: Bool { worstRatio <= 1 }
        public var description: String {
            "worst ratio \(worstRatio) at input \(worstInput) element \(worstElement): analytic \(analytic), numeric \(numeric)"
        }
    }

    /// Compares the tape's gradient of the scalar `f(inputs)` with central differences
    /// (f(x + h) - f(x - h)) / 2h for every element of every input.
    ///
    /// In Double with h = 1e-6 the truncation error is O(h^2 |f'''|) ~ 1e-12 and the rounding error
    /// O(eps |f| / h) ~ 1e-10 |f|, so `absoluteTolerance` 1e-6 and `relativeTolerance` 1e-6 leave
    /// a margin of 10^4 over the arithmetic while any real mistake (a missing term, a wrong
    /// sign or index) shows up at O(1).
    public static func compare(
        at inputs: [Tensor<Double>], step h: Double = 1e-6,
        absoluteTolerance: Double = 1e-6, relativeTolerance: Double = 1e-6,
        _ f: ([Tensor<Double>]) throws -> Tensor<Double>
    ) throws -> Report {
        let leaves = inputs.map { $0.requiringGradient() }
        let analytic = try f(leaves).gradients(wrt: leaves)
        var report = Report(worstRatio: 0, worstInput: -1, worstElement: -1, analytic: 0, numeric: 0)
        try withoutGradients {
            for (i, input) in inputs.enumerated() {
                for e in 0..<input.count {
                    var plus = inputs, minus = inputs
                    plus[i].scalars[e] += h
                    minus[i].scalars[e] -= h
                    let numeric = (try f(plus).scalarValue - f(minus).scalarValue) / (2 * h)
                    let a = analytic[i].scalars[e]
                    let ratio = Swift.abs(a - numeric) / (absoluteTolerance + relativeTolerance * Swift.abs(numeric))
                    if ratio > report.worstRatio || report.worstInput < 0 {
                        report = Report(worstRatio: ratio, worstInput: i, worstElement: e, analytic: a, numeric: numeric)
                    }
                }
            }
        }
        return report
    }
}
