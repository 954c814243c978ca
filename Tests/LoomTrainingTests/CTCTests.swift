import Foundation
@testable import LoomTraining
import XCTest

/// CTC loss against PyTorch's `ctc_loss` (Tests/Fixtures/torch_ctc.json, made by
/// scripts/make_ctc_fixture.py), a hand-counted lattice, and finite differences.
final class CTCTests: XCTestCase {
    struct Fixture: Decodable {
        struct Flat: Decodable { let shape: [Int]; let values: [Double] }
        struct Reduced: Decodable { let loss: Double; let gradient: Flat }
        struct PerSequence: Decodable { let loss: [Double?] }
        let logits: Flat
        let input_lengths: [Int]
        let targets: [[Int]]
        let none: PerSequence
        let mean_zero_infinity: Reduced
        let sum_zero_infinity: Reduced
    }

    func fixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/torch_ctc.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    /// Values and gradients in Double agree with PyTorch's float64 results to rounding: log-space
    /// sums of at most 12 x 9 terms whose rounding stays near 1e-14 of values of 10-30, so
    /// 1e-9 leaves a wide margin while any wrong transition shows at O(0.1).
    func testMatchesPyTorchInDouble() throws {
        let f = try fixture()
        let logits = try Tensor<Double>(shape: f.logits.shape, scalars: f.logits.values)
        for b in 0..<f.targets.count {
            let one = try Loss.ctc(logits: logits.slice(axis: 1, b..<(b + 1)), inputLengths: [f.input_lengths[b]], targets: [f.targets[b]],
                                   reduction: .sum)
            if let expected = f.none.loss[b] {
                XCTAssertEqual(one.scalarValue, expected, accuracy: 1e-9, "sequence \(b)")
            } else {
                XCTAssertEqual(one.scalarValue, .infinity, "sequence \(b): no alignment fits")
            }
        }
        for (reduction, expected) in [(Loss.Reduction.mean, f.mean_zero_infinity), (.sum, f.sum_zero_infinity)] {
            let leaf = logits.requiringGradient()
            let loss = try Loss.ctc(logits: leaf, inputLengths: f.input_lengths, targets: f.targets, reduction: reduction, zeroInfinity: true)
            XCTAssertEqual(loss.scalarValue, expected.loss, accuracy: 1e-9, "\(reduction)")
            let gradient = try XCTUnwrap(loss.gradients(wrt: [leaf]).first)
            XCTAssertEqual(gradient.shape, expected.gradient.shape)
            let worst = zip(gradient.scalars, expected.gradient.values).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-9, "\(reduction): gradient")
        }
    }

    /// The bar for Float: within 1e-4 of PyTorch. Rounding the logits to Float moves
    /// each by up to 3e-7 (|x| < 6), and each frame's log-probability by about twice that; a
    /// sequence's loss sums 12 of them: 1e-5 at worst.
    func testMatchesPyTorchInFloat() throws {
        let f = try fixture()
        let logits = try Tensor<Float>(shape: f.logits.shape, scalars: f.logits.values.map(Float.init))
        let leaf = logits.requiringGradient()
        let loss = try Loss.ctc(logits: leaf, inputLengths: f.input_lengths, targets: f.targets, zeroInfinity: true)
        XCTAssertEqual(Double(loss.scalarValue), f.mean_zero_infinity.loss, accuracy: 1e-4)
        let gradient = try XCTUnwrap(loss.gradients(wrt: [leaf]).first)
        let worst = zip(gradient.scalars, f.mean_zero_infinity.gradient.values).map { abs(Double($0) - $1) }.max() ?? .infinity
        XCTAssertLessThanOrEqual(worst, 1e-4)
    }

    /// Two frames, classes {blank, a}, target "a": the alignments are "a a", "- a" and "a -".
    func testTwoFramesByHand() throws {
        let logits = try Tensor<Double>(shape: [2, 1, 2], scalars: [0.3, -0.2, 1.1, 0.4])
        func softmax(_ a: Double, _ b: Double) -> (Double, Double) { (exp(a) / (exp(a) + exp(b)), exp(b) / (exp(a) + exp(b))) }
        let (blank0, a0) = softmax(0.3, -0.2), (blank1, a1) = softmax(1.1, 0.4)
        let p = a0 * a1 + blank0 * a1 + a0 * blank1
        let loss = try Loss.ctc(logits: logits, inputLengths: [2], targets: [[1]], reduction: .sum)
        XCTAssertEqual(loss.scalarValue, -log(p), accuracy: 1e-12)
        // The empty target has one alignment, "- -"; mean divides by max(1, target length).
        let empty = try Loss.ctc(logits: logits, inputLengths: [2], targets: [[]])
        XCTAssertEqual(empty.scalarValue, -log(blank0 * blank1), accuracy: 1e-12)
        // A repeat needs a blank between: "a a" collapses to "a", so [1, 1] needs 3 frames.
        XCTAssertEqual(try Loss.ctc(logits: logits, inputLengths: [2], targets: [[1, 1]]).scalarValue, .infinity)
        // No frames: only the empty target fits, with probability 1.
        XCTAssertEqual(try Loss.ctc(logits: logits, inputLengths: [0], targets: [[]]).scalarValue, 0)
    }

    func testGradientMatchesFiniteDifferences() throws {
        let source = RandomSource(seed: 5)
        let logits = try Tensor<Double>.randomUniform([6, 3, 4], lower: -2, upper: 2, using: source)
        for reduction in [Loss.Reduction.mean, .sum] {
            let report = try GradientCheck.compare(at: [logits]) { xs in
                try Loss.ctc(logits: xs[0], inputLengths: [6, 4, 5], targets: [[1, 1, 2], [3], []], blank: 0, reduction: reduction) * 2
            }
            XCTAssertTrue(report.passed, "\(reduction): \(report)")
        }
        // Another blank index, and a sequence no alignment fits left out by zeroInfinity.
        let report = try GradientCheck.compare(at: [logits]) { xs in
            try Loss.ctc(logits: xs[0], inputLengths: [6, 1, 5], targets: [[0, 2, 0], [1, 2], [1]], blank: 3, zeroInfinity: true)
        }
        XCTAssertTrue(report.passed, "blank 3: \(report)")
    }

    /// The scaled recursions (the fast path) against the log-space ones (the reference) on
    /// long random lattices: the same log-likelihood and occupancies to rounding (Double
    /// products and sums over 200 frames: about 1e-13 relative; checked at 1e-9).
    func testScaledRecursionsEqualLogSpace() throws {
        var generator = SeededGenerator(seed: 17)
        let (frames, batch, classes) = (200, 3, 7)
        let logits = (0..<(frames * batch * classes)).map { _ in generator.nextUnit() * 8 - 4 }
        let lp = try Tensor<Double>(shape: [frames * batch, classes], scalars: logits).logSoftmax().scalars
        let targets = [[1, 2, 2, 3, 6, 6, 6, 5], (0..<60).map { 1 + $0 % 6 }, [4]]
        for b in 0..<batch {
            let (scaled, reference) = try XCTUnwrap(CTCAlignmentProbe.both(lp, batch: batch, classes: classes, sequence: b, frames: frames,
                                                                            target: targets[b], blank: 0))
            XCTAssertEqual(scaled.logLikelihood, reference.logLikelihood, accuracy: 1e-9 * abs(reference.logLikelihood))
            let worst = zip(scaled.occupancy, reference.occupancy).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 1e-9, "sequence \(b)")
        }
        // Log-probabilities below Double's smallest exp (-745) underflow the scaled path, which
        // hands over to the log-space one: a finite loss, not an infinite one.
        let steep = try Tensor<Double>(shape: [3, 1, 3], scalars: [0, -2000, -1000, -1000, 0, -2000, 0, -1000, -2000])
        let loss = try Loss.ctc(logits: steep, inputLengths: [3], targets: [[1, 2]], reduction: .sum)
        XCTAssertTrue(loss.scalarValue.isFinite && loss.scalarValue > 1000, "\(loss.scalarValue)")
    }

    func testBadInputIsNamed() throws {
        let logits = try Tensor<Float>.zeros([4, 2, 3])
        func message(_ body: () throws -> Tensor<Float>) -> String {
            do { _ = try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertTrue(message { try Loss.ctc(logits: logits, inputLengths: [4], targets: [[1], [2]]) }.contains("1 input lengths"))
        XCTAssertTrue(message { try Loss.ctc(logits: logits, inputLengths: [4, 5], targets: [[1], [2]]) }.contains("input length 5 of sequence 1"))
        XCTAssertTrue(message { try Loss.ctc(logits: logits, inputLengths: [4, 4], targets: [[1], [0]]) }.contains("label 0 of sequence 1 is the blank"))
        XCTAssertTrue(message { try Loss.ctc(logits: logits, inputLengths: [4, 4], targets: [[3], [1]]) }.contains("label 3 of sequence 0 is not a class"))
        XCTAssertTrue(message { try Loss.ctc(logits: logits, inputLengths: [4, 4], targets: [[1], [1]], blank: 3) }.contains("blank 3"))
        XCTAssertTrue(message { try Loss.ctc(logits: Tensor<Float>.zeros([4, 3]), inputLengths: [4], targets: [[1]]) }.contains("[4, 3]"))
    }

    func testGreedyDecodingMergesRepeatsAndDropsBlanks() throws {
        // Frame winners of sequence 0: a a - a b b - -> "a a b"; of sequence 1 (4 frames): b b b - -> "b".
        let winners = [[1, 2], [1, 2], [0, 2], [1, 0], [2, 1], [2, 1], [0, 1]]
        var scalars = [Float](repeating: 0, count: 7 * 2 * 3)
        for (t, pair) in winners.enumerated() { for (b, k) in pair.enumerated() { scalars[(t * 2 + b) * 3 + k] = 1 } }
        let logits = try Tensor<Float>(shape: [7, 2, 3], scalars: scalars)
        XCTAssertEqual(try CTC.greedy(logits: logits, lengths: [7, 4]), [[1, 1, 2], [2]])
        XCTAssertThrowsError(try CTC.greedy(logits: logits, lengths: [8, 4]))
    }
}

/// The two computations of `CTCAlignment` side by side, for the tests.
enum CTCAlignmentProbe {
    static func both(_ lp: [Double], batch: Int, classes: Int, sequence: Int, frames: Int, target: [Int], blank: Int)
        -> (scaled: CTCAlignment, reference: CTCAlignment)? {
        let labels = [blank] + target.flatMap { [$0, blank] }
        guard let scaled = CTCAlignment.scaled(lp, batch: batch, classes: classes, sequence: sequence, frames: frames, labels: labels, blank: blank)
        else { return nil }
        return (scaled, CTCAlignment.logSpace(lp, batch: batch, classes: classes, sequence: sequence, frames: frames, labels: labels, blank: blank))
    }
}
