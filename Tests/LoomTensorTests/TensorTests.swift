import Foundation
import LoomTensor
import XCTest

/// Values, shapes, errors and storage of `Tensor`, and the tape's bookkeeping.
final class TensorTests: XCTestCase {
    func testCreationAndErrors() throws {
        let x = try Tensor<Float>(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(x.rank, 2)
        XCTAssertEqual(x.count, 6)
        XCTAssertThrowsError(try Tensor<Float>(shape: [2, 2], scalars: [1, 2, 3])) { error in
            XCTAssertEqual("\(error)", "shape [2, 2] holds 4 elements, but 3 were given")
        }
        XCTAssertThrowsError(try Tensor<Float>.zeros([2, -1]))
    }

    func testShapeMismatchNamesTheShapes() throws {
        let a = try Tensor<Float>.ones([2, 3]), b = try Tensor<Float>.ones([4, 5])
        XCTAssertThrowsError(try a + b) { XCTAssertEqual("\($0)", "add: shapes [2, 3] and [4, 5] do not fit together") }
        XCTAssertThrowsError(try a.matmul(b)) { XCTAssertEqual("\($0)", "matmul: shapes [2, 3] and [4, 5] do not fit together") }
        XCTAssertThrowsError(try a.matmul(try Tensor<Float>.ones([3]))) { XCTAssertTrue("\($0)".contains("[3]")) }
        XCTAssertThrowsError(try a.sum(alongAxes: [2])) { XCTAssertEqual("\($0)", "sum: axis 2 is out of range for a tensor of rank 2") }
        XCTAssertThrowsError(try a.reshaped([4, 2])) { XCTAssertTrue("\($0)".contains("[2, 3]") && "\($0)".contains("[4, 2]")) }
        XCTAssertThrowsError(try a.gathering(rows: [0, 7])) { XCTAssertEqual("\($0)", "gather: index 7 is out of range 0..<2") }
        XCTAssertThrowsError(try Tensor.concatenate([a, b], axis: 0))
        XCTAssertThrowsError(try a.slice(axis: 1, 2..<4))
    }

    func testBroadcastValues() throws {
        let a = try Tensor<Float>(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let row = Tensor<Float>([10, 20, 30])
        let column = try Tensor<Float>(shape: [2, 1], scalars: [100, 200])
        XCTAssertEqual(try (a + row).scalars, [11, 22, 33, 14, 25, 36])
        XCTAssertEqual(try (a * column).scalars, [100, 200, 300, 800, 1000, 1200])
        XCTAssertEqual(try (row - column).shape, [2, 3])
        XCTAssertEqual((a * 2).scalars, [2, 4, 6, 8, 10, 12])
    }

    func testReductionsAndShapes() throws {
        let a = try Tensor<Float>(shape: [2, 3], scalars: [1, 5, 3, 4, 2, 6])
        XCTAssertEqual(try a.sum(alongAxes: [0]).scalars, [5, 7, 9])
        XCTAssertEqual(try a.sum(alongAxes: [1], keepingAxes: true).shape, [2, 1])
        XCTAssertEqual(try a.mean(alongAxes: [1]).scalars, [3, 4])
        XCTAssertEqual(try a.max(alongAxis: 1).scalars, [5, 6])
        XCTAssertEqual(try a.argmax(alongAxis: 1), [1, 2])
        XCTAssertEqual(try a.argmax(alongAxis: 0), [1, 0, 1])
        XCTAssertEqual(try a.transposed().scalars, [1, 4, 5, 2, 3, 6])
        XCTAssertEqual(try a.slice(axis: 1, 1..<3).scalars, [5, 3, 2, 6])
        XCTAssertEqual(try Tensor.concatenate([a, a], axis: 1).scalars, [1, 5, 3, 1, 5, 3, 4, 2, 6, 4, 2, 6])
        XCTAssertEqual(try Tensor.stack([a, a], axis: 0).shape, [2, 2, 3])
        XCTAssertEqual(try Tensor.stack([a], axis: 1).shape, [2, 1, 3])
        XCTAssertEqual(try Tensor.stack([a], axis: 1).scalars, a.scalars)
        XCTAssertEqual(try Tensor.concatenate([a], axis: 1).scalars, a.scalars)
        XCTAssertThrowsError(try Tensor.concatenate([a], axis: 2))
        XCTAssertEqual(try Tensor<Float>.oneHot([2, 0], depth: 3).scalars, [0, 0, 1, 1, 0, 0])
        XCTAssertEqual(try a.gathering(rows: [1, 1, 0]).scalars, [4, 2, 6, 4, 2, 6, 1, 5, 3])
    }

    func testSoftmaxIsStableAndNormalized() throws {
        let x = try Tensor<Float>(shape: [2, 3], scalars: [1000, 1001, 1002, -5, 0, 5])
        let p = try x.softmax()
        XCTAssertEqual(Double(p.scalars[0...2].reduce(0, +)), 1, accuracy: 1e-6)
        XCTAssertFalse(p.scalars.contains { $0.isNaN })
        let lp = try x.logSoftmax()
        // log softmax of (0, 1, 2) shifted by 1000: -log(1 + e + e^2) + (0, 1, 2).
        let z = Foundation.log(1 + Foundation.exp(1.0) + Foundation.exp(2.0))
        XCTAssertEqual(Double(lp.scalars[2]), 2 - z, accuracy: 1e-5)
    }

    func testCopyOnWriteKeepsValuesIndependent() throws {
        let a = try Tensor<Float>.ones([4])
        var b = a
        b = b * 3
        XCTAssertEqual(a.scalars, [1, 1, 1, 1])
        XCTAssertEqual(b.scalars, [3, 3, 3, 3])
    }

    func testNoGradientModeRecordsNothing() throws {
        let x = try Tensor<Float>.ones([3]).requiringGradient()
        let y = withoutGradients { (x * 2).sum() }
        XCTAssertFalse(y.isRecorded)
        XCTAssertThrowsError(try y.gradients(wrt: [x]))
        let z = (x * 2).sum()
        XCTAssertTrue(z.isRecorded)
        XCTAssertEqual(try z.gradients(wrt: [x])[0].scalars, [2, 2, 2])
        // The tape is released by the backward pass; a second one is an error, not a wrong answer.
        XCTAssertThrowsError(try z.gradients(wrt: [x]))
    }

    func testUntrackedInputIsAnError() throws {
        let x = try Tensor<Float>.ones([3])
        let leaf = x.requiringGradient()
        XCTAssertThrowsError(try (leaf * 2).sum().gradients(wrt: [x]))
    }

    func testParameterGradientsAndUnusedParameters() throws {
        let w = Parameter(try Tensor<Float>(shape: [2], scalars: [3, 4]), name: "w")
        let unused = Parameter(try Tensor<Float>.ones([5]), name: "unused")
        let loss = try (w.value * w.value).sum()
        let grads = try loss.gradients(for: [w, unused])
        XCTAssertEqual(grads[0].scalars, [6, 8])
        XCTAssertEqual(grads[1].scalars, [0, 0, 0, 0, 0])
    }

    /// A deep chain (an unrolled recurrence) must not overflow the stack in the backward sweep.
    func testDeepChainBackward() throws {
        let x = try Tensor<Double>.ones([1]).requiringGradient()
        var y = x
        for _ in 0..<100_000 { y = y * 1.0 }
        XCTAssertEqual(try y.sum().gradients(wrt: [x])[0].scalars, [1])
    }

    func testSeededRandomIsReproducible() throws {
        let a = try Tensor<Float>.randomNormal([1000], using: RandomSource(seed: 42))
        let b = try Tensor<Float>.randomNormal([1000], using: RandomSource(seed: 42))
        XCTAssertEqual(a, b)
        let mean = a.scalars.reduce(0, +) / 1000
        let variance = a.scalars.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 1000
        // For 1000 standard normal draws the sample mean has sd 0.032 and the variance sd 0.045:
        // these bounds are five standard deviations wide.
        XCTAssertEqual(Double(mean), 0, accuracy: 0.16)
        XCTAssertEqual(Double(variance), 1, accuracy: 0.23)
    }

    /// Gradients arriving at one tensor by several paths are summed in place; a gradient tensor
    /// that one pullback hands to two inputs (an addition) must not be changed under the other.
    func testGradientsOfSharedInputsAreSummedWithoutAliasing() throws {
        let x = try Tensor<Double>(shape: [3], scalars: [1, 2, 3]).requiringGradient()
        let y = try Tensor<Double>(shape: [3], scalars: [4, 5, 6]).requiringGradient()
        let doubled = try x + x
        let loss = try ((doubled + x) * y + y).sum()
        let grads = try loss.gradients(wrt: [x, y])
        XCTAssertEqual(grads[0].scalars, [12, 15, 18])  // 3 y
        XCTAssertEqual(grads[1].scalars, [4, 7, 10])    // 3 x + 1
    }

    /// Each element is offset + scale * Scalar(sample) with the generator's samples in order, for
    /// Float and Double alike (both run concrete loops), so a seed gives the same values as ever.
    func testRandomElementsFollowTheGeneratorExactly() throws {
        var g = SeededGenerator(seed: 9)
        let uniform = try Tensor<Float>.randomUniform([5, 7], lower: -0.25, upper: 0.75, using: RandomSource(seed: 9))
        XCTAssertEqual(uniform.scalars, (0..<35).map { _ in Float(-0.25) + (Float(0.75) - Float(-0.25)) * Float(g.nextUnit()) })
        g = SeededGenerator(seed: 4)
        let normal = try Tensor<Double>.randomNormal([33], mean: 2, standardDeviation: 0.5, using: RandomSource(seed: 4))
        XCTAssertEqual(normal.scalars, (0..<33).map { _ in 2 + 0.5 * g.nextNormal() })
    }

    /// Sums over the last axis run in 32 partial sums (two vectors) and a tail: every length
    /// around the vector boundaries, against a sum in Double. Any order of summing n Floats is
    /// within (n - 1) eps sum|x| of the exact sum (eps = 2^-24), so that is the tolerance.
    func testSumsAcrossVectorBoundaries() throws {
        var generator = SystemRandomNumberGenerator()
        for length in [0, 1, 15, 16, 31, 32, 33, 63, 64, 65, 1_000, 1_048_576] {
            let rows = length > 1_000 ? 1 : 3
            let values = (0..<(rows * length)).map { _ in Float.random(in: -1...1, using: &generator) }
            let x = try Tensor<Float>(shape: [rows, length], scalars: values)
            let sums = try x.sum(alongAxes: [1]).scalars
            let total = x.sum().scalars[0]
            for r in 0..<rows {
                let row = values[(r * length)..<((r + 1) * length)]
                let exact = row.reduce(0.0) { $0 + Double($1) }
                let bound = Double(max(length - 1, 0)) * 0x1p-24 * row.reduce(0.0) { $0 + Double(abs($1)) }
                XCTAssertEqual(Double(sums[r]), exact, accuracy: bound, "length \(length)")
                if length < 32 { XCTAssertEqual(sums[r], row.reduce(0, +), "short rows are summed in order") }
            }
            let exact = values.reduce(0.0) { $0 + Double($1) }
            XCTAssertEqual(Double(total), exact, accuracy: Double(max(values.count - 1, 0)) * 0x1p-24 * values.reduce(0.0) { $0 + Double(abs($1)) })
        }
    }

    func testMatmulAgainstNaiveOnOddShapes() throws {
        let source = RandomSource(seed: 3)
        for (m, k, n) in [(1, 1, 1), (7, 3, 5), (1, 13, 9), (33, 17, 1)] {
            let a = try Tensor<Float>.randomUniform([m, k], lower: -1, upper: 1, using: source)
            let b = try Tensor<Float>.randomUniform([k, n], lower: -1, upper: 1, using: source)
            let c = try a.matmul(b)
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for p in 0..<k { s += Double(a.scalars[i * k + p]) * Double(b.scalars[p * n + j]) }
                    // k products of values in [-1, 1], summed in Float: error below k * eps.
                    XCTAssertEqual(Double(c.scalars[i * n + j]), s, accuracy: Double(k) * 1.2e-7)
                }
            }
        }
    }
}

extension TensorTests {
    /// permuted against index arithmetic, for every permutation of a rank-4 shape (trailing axes
    /// kept in place are copied as runs, the others element by element).
    func testPermuteMatchesIndexArithmetic() throws {
        let shape = [2, 3, 4, 5]
        let x = try Tensor<Double>(shape: shape, scalars: (0..<120).map(Double.init))
        func permutations(_ items: [Int]) -> [[Int]] {
            items.count <= 1 ? [items] : items.indices.flatMap { i in permutations(items.enumerated().filter { $0.offset != i }.map(\.element)).map { [items[i]] + $0 } }
        }
        for p in permutations([0, 1, 2, 3]) {
            let y = try x.permuted(p)
            XCTAssertEqual(y.shape, p.map { shape[$0] })
            for flat in 0..<120 {
                // Output index -> input index.
                var rest = flat, outIndex = [Int](repeating: 0, count: 4)
                for axis in stride(from: 3, through: 0, by: -1) { outIndex[axis] = rest % y.shape[axis]; rest /= y.shape[axis] }
                var inIndex = [Int](repeating: 0, count: 4)
                for (o, axis) in p.enumerated() { inIndex[axis] = outIndex[o] }
                let expected = ((inIndex[0] * 3 + inIndex[1]) * 4 + inIndex[2]) * 5 + inIndex[3]
                XCTAssertEqual(y.scalars[flat], Double(expected), "permutation \(p)")
            }
        }
    }

    /// Concatenation large enough to run in two halves on the worker team (forward and
    /// backward): every element lands where the index arithmetic says, and the gradient splits
    /// back to each input's own positions.
    func testLargeConcatenateSplitsExactly() throws {
        let rows = 301, widths = [130, 77]
        let source = RandomSource(seed: 9)
        let parts = try widths.map { try Tensor<Float>.randomUniform([rows, $0], using: source).requiringGradient() }
        let joined = try Tensor.concatenate(parts, axis: 1)
        XCTAssertGreaterThanOrEqual(rows * widths.reduce(0, +), WorkerTeam.grain)
        let total = widths.reduce(0, +)
        for r in 0..<rows {
            for c in 0..<total {
                let (k, j) = c < widths[0] ? (0, c) : (1, c - widths[0])
                XCTAssertEqual(joined.scalars[r * total + c], parts[k].scalars[r * widths[k] + j])
            }
        }
        let weights = try Tensor<Float>(shape: [rows, total], scalars: (0..<(rows * total)).map { Float($0 % 1000) })
        let gradients = try (joined * weights).sum().gradients(wrt: parts)
        for k in 0..<2 {
            for r in 0..<rows {
                for j in 0..<widths[k] {
                    XCTAssertEqual(gradients[k].scalars[r * widths[k] + j], weights.scalars[r * total + (k == 0 ? j : widths[0] + j)])
                }
            }
        }
    }
}
