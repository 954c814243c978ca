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
        try compare(at: inputs, parameters: [], step: h, absoluteTolerance: absoluteTolerance,
                    relativeTolerance: relativeTolerance) { xs in try f(xs) }
    }

    /// The same check over a layer's parameters as well as its inputs: each parameter's data is
    /// perturbed in place (and restored), and its analytic gradient read from the same backward
    /// pass as the inputs'. Parameters are reported after the inputs (input index
    /// `inputs.count + k` is parameter k).
    public static func compare(
        at inputs: [Tensor<Double>], parameters: [Parameter<Double>], step h: Double = 1e-6,
        absoluteTolerance: Double = 1e-6, relativeTolerance: Double = 1e-6,
        _ f: ([Tensor<Double>]) throws -> Tensor<Double>
    ) throws -> Report {
        let leaves = inputs.map { $0.requiringGradient() }
        let targets = leaves.compactMap(\.node) + parameters.map(\.leaf)
        let found = try f(leaves).backpropagate(to: targets, seed: nil)
        let shapes = inputs.map(\.shape) + parameters.map(\.shape)
        let analytic = zip(found, shapes).map { $0 ?? Tensor.zeros(unchecked: $1) }
        var report = Report(worstRatio: 0, worstInput: -1, worstElement: -1, analytic: 0, numeric: 0)
        func record(_ numeric: Double, _ i: Int, _ e: Int) {
            let a = analytic[i].scalars[e]
            let ratio = Swift.abs(a - numeric) / (absoluteTolerance + relativeTolerance * Swift.abs(numeric))
            if ratio > report.worstRatio || report.worstInput < 0 {
                report = Report(worstRatio: ratio, worstInput: i, worstElement: e, analytic: a, numeric: numeric)
            }
        }
        try withoutGradients {
            for (i, input) in inputs.enumerated() {
                for e in 0..<input.count {
                    var plus = inputs, minus = inputs
                    plus[i].scalars[e] += h
                    minus[i].scalars[e] -= h
                    record((try f(plus).scalarValue - f(minus).scalarValue) / (2 * h), i, e)
                }
            }
            for (k, parameter) in parameters.enumerated() {
                for e in 0..<parameter.data.count {
                    let original = parameter.data.scalars[e]
                    defer { parameter.data.scalars[e] = original }
                    parameter.data.scalars[e] = original + h
                    let up = try f(inputs).scalarValue
                    parameter.data.scalars[e] = original - h
                    let down = try f(inputs).scalarValue
                    record((up - down) / (2 * h), inputs.count + k, e)
                }
            }
        }
        return report
    }
}
