import LoomTensor
import XCTest

/// Every differentiable op against central finite differences in Double.
///
/// Each check reduces the op's output to a scalar as sum(output * R) with a fixed random R, so
/// that every output element's gradient is exercised with a distinct weight. Tolerances are
/// GradientCheck's defaults (1e-6 absolute + 1e-6 relative), justified in its documentation.
final class GradientCheckTests: XCTestCase {
    let source = RandomSource(seed: 7)

    func random(_ shape: [Int], _ lower: Double = -1, _ upper: Double = 1) throws -> Tensor<Double> {
        try Tensor.randomUniform(shape, lower: lower, upper: upper, using: source)
    }

    /// Checks `op` on `inputs`, weighting its output by a fixed random tensor.
    func check(_ name: String, _ inputs: [Tensor<Double>], file: StaticString = #filePath, line: UInt = #line,
               _ op: ([Tensor<Double>]) throws -> Tensor<Double>) throws {
        let weights = try random(withoutGradients { try op(inputs) }.shape)
        let report = try GradientCheck.compare(at: inputs) { xs in try (op(xs) * weights).sum() }
        XCTAssertTrue(report.passed, "\(name): \(report)", file: file, line: line)
    }

    func testBroadcastArithmetic() throws {
        let a = try random([2, 3, 4]), b = try random([3, 1]), c = try random([4]), s = try random([])
        try check("add", [a, b]) { try $0[0] + $0[1] }
        try check("subtract", [c, a]) { try $0[0] - $0[1] }
        try check("multiply", [a, b]) { try $0[0] * $0[1] }
        try check("divide", [a, try random([3, 1], 0.5, 2)]) { try $0[0] / $0[1] }
        try check("scalar tensor", [a, s]) { try $0[0] * $0[1] }
        try check("scalar ops", [a]) { 2 - (3 * $0[0] + 1) / 4 }
        try check("negate", [a]) { -$0[0] }
        // Keep the two sides apart so no tie sits within the difference step.
        try check("maximum", [a, a + 0.01]) { try $0[0].maximum($0[1] * 0.5) }
        try check("minimum", [a, c]) { try $0[0].minimum($0[1] * 0.5) }
    }

    func testElementwiseFunctions() throws {
        let x = try random([3, 5], -2, 2)
        let positive = try random([3, 5], 0.2, 3)
        // Values kept away from the kinks of relu and abs.
        let awayFromZero = try Tensor(shape: x.shape, scalars: x.scalars.map { $0 >= 0 ? $0 + 0.1 : $0 - 0.1 })
        try check("exp", [x]) { $0[0].exp() }
        try check("log", [positive]) { $0[0].log() }
        try check("tanh", [x]) { $0[0].tanh() }
        try check("sigmoid", [x]) { $0[0].sigmoid() }
        try check("relu", [awayFromZero]) { $0[0].relu() }
        try check("abs", [awayFromZero]) { $0[0].abs() }
        try check("square", [x]) { $0[0].squared() }
        try check("sqrt", [positive]) { $0[0].sqrt() }
    }

    func testReductions() throws {
        let x = try random([2, 3, 4])
        try check("sum all", [x]) { $0[0].sum() }
        try check("sum axes", [x]) { try $0[0].sum(alongAxes: [0, 2]) }
        try check("sum kept", [x]) { try $0[0].sum(alongAxes: [1], keepingAxes: true) }
        try check("mean", [x]) { try $0[0].mean(alongAxes: [-1]) }
        try check("mean all", [x]) { $0[0].mean() }
        try check("max", [x]) { try $0[0].max(alongAxis: 1) }
        try check("max kept", [x]) { try $0[0].max(alongAxis: 2, keepingAxis: true) }
    }

    func testShapeOps() throws {
        let x = try random([2, 3, 4]), y = try random([2, 5, 4])
        try check("reshape", [x]) { try $0[0].reshaped([6, -1]) }
        try check("permute", [x]) { try $0[0].permuted([2, 0, 1]) }
        try check("transpose", [x]) { try $0[0].transposed() }
        try check("slice", [x]) { try $0[0].slice(axis: 1, 1..<3) }
        try check("select", [x]) { try $0[0].select(axis: 2, index: 3) }
        try check("concatenate", [x, y]) { try Tensor.concatenate([$0[0], $0[1]], axis: 1) }
        try check("stack", [x, x * 2]) { try Tensor.stack([$0[0], $0[1]], axis: 2) }
        // One piece: returned without a copy, the gradient passing straight through.
        try check("concatenate one", [x]) { try Tensor.concatenate([$0[0]], axis: 1) }
        try check("stack one", [x]) { try Tensor.stack([$0[0]], axis: 1) }
        try check("gather", [try random([5, 3])]) { try $0[0].gathering(rows: [4, 0, 4, 2], indexShape: [2, 2]) }
    }

    func testMatmul() throws {
        for transposeA in [false, true] {
            for transposeB in [false, true] {
                let a = try random(transposeA ? [4, 3] : [3, 4]), b = try random(transposeB ? [5, 4] : [4, 5])
                try check("matmul tA \(transposeA) tB \(transposeB)", [a, b]) {
                    try $0[0].matmul($0[1], transposeA: transposeA, transposeB: transposeB)
                }
                let ba = try random(transposeA ? [2, 4, 3] : [2, 3, 4]), bb = try random(transposeB ? [2, 5, 4] : [2, 4, 5])
                try check("batched tA \(transposeA) tB \(transposeB)", [ba, bb]) {
                    try $0[0].matmul($0[1], transposeA: transposeA, transposeB: transposeB)
                }
                try check("shared right tA \(transposeA) tB \(transposeB)", [ba, b]) {
                    try $0[0].matmul($0[1], transposeA: transposeA, transposeB: transposeB)
                }
            }
        }
        try check("folded leading axes", [try random([2, 3, 4]), try random([4, 5])]) { try $0[0].matmul($0[1]) }
    }

    func testSoftmax() throws {
        let x = try random([3, 4, 5], -3, 3)
        try check("softmax last", [x]) { try $0[0].softmax() }
        try check("softmax middle", [x]) { try $0[0].softmax(alongAxis: 1) }
        try check("logSoftmax last", [x]) { try $0[0].logSoftmax() }
        try check("logSoftmax first", [x]) { try $0[0].logSoftmax(alongAxis: 0) }
    }

    /// A gradient that is wrong must fail the check: a deliberately broken pullback.
    func testCheckerCatchesAWrongGradient() throws {
        let x = try random([4])
        // d/dx of x.detached() * x is x (not 2x): the checker must see the missing half.
        let report = try GradientCheck.compare(at: [x]) { xs in try (xs[0].detached() * xs[0]).sum() }
        XCTAssertFalse(report.passed, "a detached factor drops half the gradient; the check must notice: \(report)")
    }
}

