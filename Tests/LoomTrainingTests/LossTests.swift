import Foundation
import LoomTraining
import XCTest

final class LossTests: XCTestCase {
    let source = RandomSource(seed: 21)

    func testCrossEntropyValue() throws {
        let logits = try Tensor<Double>(shape: [2, 3], scalars: [1, 2, 3, 0, 0, 0])
        let loss = try Loss.crossEntropy(logits: logits, targets: [2, 1])
        let z = Foundation.log(exp(1.0) + exp(2.0) + exp(3.0))
        XCTAssertEqual(loss.scalarValue, ((z - 3) + Foundation.log(3.0)) / 2, accuracy: 1e-12)
    }

    func testCrossEntropyIgnoresPaddingAndSmooths() throws {
        let logits = try Tensor<Double>(shape: [3, 3], scalars: [1, 2, 3, 0, 0, 0, 5, -5, 9])
        let masked = try Loss.crossEntropy(logits: logits, targets: [2, 1, 0], mask: [true, true, false])
        let ignored = try Loss.crossEntropy(logits: logits, targets: [2, 1, -100], ignoredIndex: -100)
        let firstTwo = try Loss.crossEntropy(logits: logits.slice(axis: 0, 0..<2), targets: [2, 1])
        XCTAssertEqual(masked.scalarValue, firstTwo.scalarValue, accuracy: 1e-12)
        XCTAssertEqual(ignored.scalarValue, firstTwo.scalarValue, accuracy: 1e-12)
        // Smoothing e: (1 - e) nll + e * mean over classes of -log p.
        let e = 0.1
        let smoothed = try Loss.crossEntropy(logits: logits.slice(axis: 0, 0..<1), targets: [2], labelSmoothing: e)
        let lp = try logits.slice(axis: 0, 0..<1).logSoftmax().scalars
        XCTAssertEqual(smoothed.scalarValue, (1 - e) * -lp[2] + e * -(lp.reduce(0, +) / 3), accuracy: 1e-12)
        let none = try Loss.crossEntropy(logits: logits, targets: [0, 0, 0], mask: [false, false, false])
        XCTAssertEqual(none.scalarValue, 0)
    }

    func testCrossEntropyGradient() throws {
        let logits = try Tensor<Double>.randomUniform([2, 3, 5], lower: -2, upper: 2, using: source)
        let report = try GradientCheck.compare(at: [logits]) { xs in
            try Loss.crossEntropy(logits: xs[0], targets: [0, 4, 2, 3, 1, 1], mask: [true, true, false, true, true, true],
                                  ignoredIndex: 3, labelSmoothing: 0.2) * 3
        }
        XCTAssertTrue(report.passed, "\(report)")
    }

    func testCrossEntropyErrors() throws {
        let logits = try Tensor<Float>.zeros([2, 3])
        XCTAssertThrowsError(try Loss.crossEntropy(logits: logits, targets: [0])) { XCTAssertTrue("\($0)".contains("[2, 3]")) }
        XCTAssertThrowsError(try Loss.crossEntropy(logits: logits, targets: [0, 3])) { XCTAssertTrue("\($0)".contains("target 3")) }
        XCTAssertNoThrow(try Loss.crossEntropy(logits: logits, targets: [0, 3], ignoredIndex: 3))
    }

    func testRegressionLosses() throws {
        let p = try Tensor<Double>(shape: [2, 2], scalars: [1, 2, 3, 4])
        let t = try Tensor<Double>(shape: [2, 2], scalars: [1, 0, 4, 4])
        XCTAssertEqual(try Loss.meanSquaredError(p, t).scalarValue, (0 + 4 + 1 + 0) / 4)
        XCTAssertEqual(try Loss.meanAbsoluteError(p, t).scalarValue, (0 + 2 + 1 + 0) / 4)
        XCTAssertThrowsError(try Loss.meanSquaredError(p, Tensor([1, 2])))
        let q = try Tensor<Double>.randomUniform([3, 4], lower: -1, upper: 1, using: source)
        let target = try Tensor<Double>.randomUniform([3, 4], lower: 2, upper: 3, using: source)
        XCTAssertTrue(try GradientCheck.compare(at: [q]) { try Loss.meanSquaredError($0[0], target) }.passed)
        XCTAssertTrue(try GradientCheck.compare(at: [q]) { try Loss.meanAbsoluteError($0[0], target) }.passed)
    }
}
