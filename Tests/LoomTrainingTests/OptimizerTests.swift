import Foundation
import LoomTraining
import XCTest

/// Each optimizer against its update rule written out in scalar Double, and on a real fit.
final class OptimizerTests: XCTestCase {
    let gradients: [[Double]] = [[0.5, -1.0], [0.25, 2.0], [-0.75, 0.1]]
    let start: [Double] = [1.0, -2.0]

    func run(_ optimizer: some Optimizer<Double>) throws -> [Double] {
        let p = Parameter(Tensor(start), name: "p")
        for g in gradients { try optimizer.update([p], gradients: [Tensor(g)]) }
        return p.data.scalars
    }

    func assertClose(_ a: [Double], _ b: [Double], file: StaticString = #filePath, line: UInt = #line) {
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-12, file: file, line: line) }
    }

    func testSGDMomentumNesterovDecay() throws {
        var p = start, v = [0.0, 0.0]
        for g in gradients {
            for i in 0..<2 {
                let gi = g[i] + 0.01 * p[i]
                v[i] = 0.9 * v[i] + gi
                p[i] -= 0.1 * (gi + 0.9 * v[i])
            }
        }
        assertClose(try run(SGD(learningRate: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true)), p)
        var plain = start
        for g in gradients { for i in 0..<2 { plain[i] -= 0.1 * g[i] } }
        assertClose(try run(SGD(learningRate: 0.1)), plain)
    }

    func testAdamAndAdamW() throws {
        for decoupled in [false, true] {
            var p = start, m = [0.0, 0.0], v = [0.0, 0.0]
            for (step, g) in gradients.enumerated() {
                let t = Double(step + 1)
                for i in 0..<2 {
                    var gi = g[i]
                    if decoupled { p[i] *= 1 - 0.01 * 0.1 } else { gi += 0.1 * p[i] }
                    m[i] = 0.9 * m[i] + 0.1 * gi
                    v[i] = 0.999 * v[i] + 0.001 * gi * gi
                    let mHat = m[i] / (1 - pow(0.9, t)), vHat = v[i] / (1 - pow(0.999, t))
                    p[i] -= 0.01 * mHat / (vHat.squareRoot() + 1e-8)
                }
            }
            assertClose(try run(Adam(learningRate: 0.01, weightDecay: 0.1, decoupledWeightDecay: decoupled)), p)
        }
    }

    func testRMSProp() throws {
        var p = start, v = [0.0, 0.0], b = [0.0, 0.0]
        for g in gradients {
            for i in 0..<2 {
                v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i]
                b[i] = 0.5 * b[i] + g[i] / (v[i].squareRoot() + 1e-8)
                p[i] -= 0.01 * b[i]
            }
        }
        assertClose(try run(RMSProp(learningRate: 0.01, momentum: 0.5)), p)
    }

    func testLearningRateMultiplierZeroFreezes() throws {
        let frozen = Parameter(Tensor<Double>([1, 2]), name: "frozen")
        frozen.learningRateMultiplier = 0
        let half = Parameter(Tensor<Double>([1, 2]), name: "half")
        half.learningRateMultiplier = 0.5
        try SGD<Double>(learningRate: 1).update([frozen, half], gradients: [Tensor([1, 1]), Tensor([1, 1])])
        XCTAssertEqual(frozen.data.scalars, [1, 2])
        XCTAssertEqual(half.data.scalars, [0.5, 1.5])
        XCTAssertThrowsError(try SGD<Double>().update([half], gradients: [Tensor([1, 2, 3])])) {
            XCTAssertTrue("\($0)".contains("'half'"))
        }
    }

    /// A two-layer network fits a nonlinear function with each optimizer: a real training run.
    func testOptimizersFitASmallNetwork() throws {
        let data = RandomSource(seed: 1)
        let x = try Tensor<Float>.randomUniform([64, 2], lower: -1, upper: 1, using: data)
        // y = x0 * x1 + sin(2 x0): nothing a linear model can fit.
        let y = try Tensor<Float>(shape: [64, 1], scalars: (0..<64).map { x.scalars[2 * $0] * x.scalars[2 * $0 + 1] + sin(2 * x.scalars[2 * $0]) })
        let optimizers: [(String, any Optimizer<Float>)] = [
            ("sgd", SGD(learningRate: 0.1, momentum: 0.9)), ("adam", Adam(learningRate: 0.01)), ("rmsprop", RMSProp(learningRate: 0.003)),
        ]
        for (name, optimizer) in optimizers {
            let source = RandomSource(seed: 2)
            let model = Chain<Float>(try Linear(inputSize: 2, outputSize: 32, using: source), Activation(.tanh),
                                     try Linear(inputSize: 32, outputSize: 1, using: source))
            let initial = try withoutGradients { try Loss.meanSquaredError(model(x), y) }.scalarValue
            for _ in 0..<300 {
                let loss = try Loss.meanSquaredError(model(x), y)
                try optimizer.update(model.parameters, gradients: loss.gradients(for: model.parameters))
            }
            let final = try withoutGradients { try Loss.meanSquaredError(model(x), y) }.scalarValue
            XCTAssertLessThan(final, initial / 20, "\(name): loss \(initial) -> \(final)")
        }
    }

    func testSchedules() {
        XCTAssertEqual(ConstantSchedule(0.1).learningRate(atStep: 100), 0.1)
        let step = StepSchedule(rate: 1, factor: 0.5, every: 10)
        XCTAssertEqual(step.learningRate(atStep: 9), 1)
        XCTAssertEqual(step.learningRate(atStep: 25), 0.25)
        let cosine = CosineSchedule(rate: 1, totalSteps: 100, minimum: 0.1)
        XCTAssertEqual(cosine.learningRate(atStep: 0), 1, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(atStep: 50), 0.55, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(atStep: 500), 0.1, accuracy: 1e-12)
        let warm = WarmupSchedule(steps: 4, then: ConstantSchedule(2))
        XCTAssertEqual((0..<6).map { warm.learningRate(atStep: $0) }, [0.5, 1, 1.5, 2, 2, 2])
    }

    func testClipByGlobalNorm() {
        var g = [Tensor<Double>([3, 0]), Tensor<Double>([4])]
        let norm = GradientClipping.clipByGlobalNorm(&g, maxNorm: 1)
        XCTAssertEqual(norm, 5)
        XCTAssertEqual(GradientClipping.globalNorm(g), 1, accuracy: 1e-12)
        XCTAssertEqual(g[0].scalars[0], 0.6, accuracy: 1e-12)
        var small = [Tensor<Double>([0.1])]
        XCTAssertEqual(GradientClipping.clipByGlobalNorm(&small, maxNorm: 1), 0.1, accuracy: 1e-12)
        XCTAssertEqual(small[0].scalars, [0.1])
        var bad = [Tensor<Double>([.nan, 1])]
        XCTAssertTrue(GradientClipping.clipByGlobalNorm(&bad, maxNorm: 1).isNaN)
    }
}
