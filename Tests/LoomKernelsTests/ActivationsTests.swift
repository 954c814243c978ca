import Foundation
import LoomKernels
import XCTest

/// The SIMD activations against libm evaluated in Double, measured in ULPs of the Float result.
final class ActivationsTests: XCTestCase {
    // The sweeps reach results below Float's smallest normal number (exp(-87)), whose accuracy
    // is measured with Loom's default subnormal flushing off; `testSubnormalsFlushedByDefault`
    // covers the default.
    override func setUp() { BLAS.setFlushSubnormals(false) }
    override func tearDown() { BLAS.setFlushSubnormals(true) }

    /// With flushing on (the default), subnormal results are 0 and subnormal inputs read as 0
    /// (the mode is the thread's, so C kernels and Swift loops alike); with it off they are kept.
    func testSubnormalsFlushedByDefault() {
        let a: [Float] = [1e-20, 1e-39], b: [Float] = [1e-20, 1e30]
        var product = [Float](repeating: 1, count: 2)
        for flush in [true, false] {
            BLAS.setFlushSubnormals(flush)
            XCTAssertEqual(BLAS.flushesSubnormals, flush)
            Float.combine(.multiply, a, strideA: 1, b, strideB: 1, &product, count: 2)
            if flush {
                XCTAssertEqual(product[0], 0, "1e-40 is subnormal: flushed")
                XCTAssertEqual(product[1], 0, "the subnormal input 1e-39 reads as 0")
            } else {
                XCTAssertEqual(Double(product[0]), 1e-40, accuracy: 1e-42)
                XCTAssertEqual(Double(product[1]), 1e-9, accuracy: 1e-15)
            }
        }
    }

    /// Distance in units in the last place of `reference` (rounded to Float) between the two.
    func ulps(_ value: Float, _ reference: Double) -> Double {
        let r = Float(reference)
        if r == value { return 0 }
        let spacing = Double(r.ulp == 0 ? Float.leastNonzeroMagnitude : r.ulp)
        return abs(Double(value) - reference) / spacing
    }

    /// A sweep over [lower, upper] with a count not a multiple of 8, so the padded tail runs.
    func sweep(_ lower: Float, _ upper: Float, count: Int = 200_003) -> [Float] {
        (0..<count).map { lower + (upper - lower) * Float($0) / Float(count - 1) }
    }

    func worstULP(_ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void,
                  _ reference: (Double) -> Double, over inputs: [Float]) -> (Double, Float) {
        var out = [Float](repeating: 0, count: inputs.count)
        inputs.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in kernel(x.baseAddress!, o.baseAddress!, x.count) }
        }
        var worst = (0.0, Float(0))
        for (x, y) in zip(inputs, out) {
            let e = ulps(y, reference(Double(x)))
            if e > worst.0 { worst = (e, x) }
        }
        return worst
    }

    func testExpWithinThreeULP() {
        let (e, x) = worstULP({ Activations.exp($0, $1, count: $2) }, Foundation.exp, over: sweep(-87, 88.7))
        XCTAssertLessThanOrEqual(e, 3, "exp worst at x = \(x)")
        let (e2, x2) = worstULP({ Activations.exp($0, $1, count: $2) }, Foundation.exp, over: sweep(-1, 1, count: 10_001))
        XCTAssertLessThanOrEqual(e2, 3, "exp worst at x = \(x2)")
    }

    /// ln over 60 decades (log-spaced, so every exponent and mantissa region is hit), subnormals
    /// and special values; the offset form as the log-mel uses it.
    func testLogWithinThreeULP() {
        let inputs = (0..<200_003).map { Float(Foundation.pow(10.0, -37.5 + 75 * Double($0) / 200_002)) }
        let (e, x) = worstULP({ Activations.log($0, $1, count: $2) }, Foundation.log, over: inputs)
        XCTAssertLessThanOrEqual(e, 3, "log worst at x = \(x)")
        let subnormals: [Float] = [Float.leastNonzeroMagnitude, 1e-40, 3e-39, Float.leastNormalMagnitude.nextDown]
        let (e2, x2) = worstULP({ Activations.log($0, $1, count: $2) }, Foundation.log, over: subnormals)
        XCTAssertLessThanOrEqual(e2, 3, "log worst at subnormal x = \(x2)")
        var out = [Float](repeating: 0, count: 5)
        Activations.log([0, -1, .nan, .infinity, 1], &out, count: 5)
        XCTAssertEqual(out[0], -.infinity); XCTAssertTrue(out[1].isNaN); XCTAssertTrue(out[2].isNaN)
        XCTAssertEqual(out[3], .infinity); XCTAssertEqual(out[4], 0)
        var shifted: Float = 0
        Activations.log([Float(0)], &shifted, count: 1, offset: 1e-6)
        XCTAssertEqual(shifted, Foundation.log(Float(1e-6)), accuracy: 2 * Foundation.log(Float(1e-6)).ulp)
    }

    func testSigmoidWithinFourULP() {
        let (e, x) = worstULP({ Activations.sigmoid($0, $1, count: $2) }, { 1 / (1 + Foundation.exp(-$0)) }, over: sweep(-80, 30))
        XCTAssertLessThanOrEqual(e, 4, "sigmoid worst at x = \(x)")
    }

    func testTanhWithinFourULP() {
        let (e, x) = worstULP({ Activations.tanh($0, $1, count: $2) }, Foundation.tanh, over: sweep(-12, 12))
        XCTAssertLessThanOrEqual(e, 4, "tanh worst at x = \(x)")
        let (e2, x2) = worstULP({ Activations.tanh($0, $1, count: $2) }, Foundation.tanh, over: sweep(-0.6, 0.6, count: 100_001))
        XCTAssertLessThanOrEqual(e2, 4, "tanh worst near 0 at x = \(x2)")
    }

    func testSpecialValues() {
        let inputs: [Float] = [.infinity, -.infinity, .nan, 0, -0.0, 100, -100, 88.7, -87.3]
        var e = [Float](repeating: 0, count: inputs.count)
        var t = e, s = e
        Activations.exp(inputs, &e, count: inputs.count)
        Activations.tanh(inputs, &t, count: inputs.count)
        Activations.sigmoid(inputs, &s, count: inputs.count)
        XCTAssertEqual(e[0], .infinity); XCTAssertEqual(e[1], 0); XCTAssertTrue(e[2].isNaN); XCTAssertEqual(e[3], 1)
        XCTAssertEqual(e[5], .infinity); XCTAssertEqual(e[6], 0)
        XCTAssertTrue(e[7].isFinite && e[7] > 3e38, "exp(88.7) = \(e[7]) must be finite")
        XCTAssertTrue(e[8] > 0, "exp(-87.3) = \(e[8]) must be a positive normal")
        XCTAssertEqual(t[0], 1); XCTAssertEqual(t[1], -1); XCTAssertTrue(t[2].isNaN); XCTAssertEqual(t[3], 0)
        XCTAssertEqual(t[5], 1); XCTAssertEqual(t[6], -1)
        XCTAssertEqual(s[0], 1); XCTAssertEqual(s[1], 0); XCTAssertTrue(s[2].isNaN); XCTAssertEqual(s[3], 0.5)
    }
}
