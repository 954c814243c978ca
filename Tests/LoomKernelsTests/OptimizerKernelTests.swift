import LoomKernels
import XCTest

/// Float's Adam step (C, vectorized, split across the worker team when large) against the
/// Swift loop of `OptimizerKernels.adam` it replaces: the same operations in the same order
/// with no fused multiply-adds, so the two must agree bit for bit.
final class OptimizerKernelTests: XCTestCase {
    func testVectorizedAdamEqualsTheScalarLoop() {
        var generator = SystemRandomNumberGenerator()
        // 37: two vectors and a tail; above the split threshold (odd, so the halves differ).
        for count in [1, 37, WorkerTeam.grain + 3] {
            for decoupled in [false, true] {
                func values(_ range: ClosedRange<Float>) -> [Float] { (0..<count).map { _ in .random(in: range, using: &generator) } }
                let p0 = values(-1...1), g = values(-2...2), m0 = values(-0.1...0.1), v0 = values(0...0.01)
                var (p1, m1, v1) = (p0, m0, v0)
                var (p2, m2, v2) = (p0, m0, v0)
                // Step 3, so both bias corrections differ from 1; weight decay on.
                let update = OptimizerUpdate<Float>.adam(learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, step: 3,
                                                         weightDecay: 0.05, decoupled: decoupled)
                m1.withUnsafeMutableBufferPointer { m in
                    v1.withUnsafeMutableBufferPointer { v in
                        Float.optimizerStep(update, parameter: &p1, gradient: g, state: [m.baseAddress!, v.baseAddress!], count: count)
                    }
                }
                OptimizerKernels.adam(parameter: &p2, gradient: g, firstMoment: &m2, secondMoment: &v2, count: count,
                                      learningRate: 0.01, beta1: 0.9, beta2: 0.999, epsilon: 1e-8, step: 3,
                                      weightDecay: 0.05, decoupledDecay: decoupled)
                XCTAssertEqual(p1, p2, "count \(count), decoupled \(decoupled)")
                XCTAssertEqual(m1, m2)
                XCTAssertEqual(v1, v2)
                XCTAssertNotEqual(p1, p0)
            }
        }
    }
}
