import ArgumentParser
import Foundation
import Loom

/// `loom demo`: an end-to-end run of the library until the recipes exist: a two-layer tanh
/// network learns to tell apart two interleaved spirals (a classic problem no linear model
/// solves), trained with Adam on cross-entropy, and is scored on points it never saw.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small network on the two-spirals problem and report held-out accuracy.")

    @Option(help: "Training epochs (full-batch steps).") var epochs = 600
    @Option(help: "Hidden units per layer.") var hidden = 32
    @Option(help: "Points per spiral in the training set.") var points = 200
    @Option(help: "Seed for data, initialization and everything random.") var seed: UInt64 = 1
    @Option(help: "OpenBLAS threads.") var threads = 2
    @Option(help: "Adam learning rate.") var learningRate = 0.01

    func validate() throws {
        guard epochs > 0, hidden > 0, points > 0, threads > 0 else {
            throw ValidationError("--epochs, --hidden, --points and --threads must be positive")
        }
    }

    /// Two spirals: class c, radius r in (0, 1], angle 3 pi r + c pi, with Gaussian jitter.
    static func spirals(points: Int, source: RandomSource) throws -> (x: Tensor<Float>, labels: [Int]) {
        var xs: [Float] = [], labels: [Int] = []
        source.withGenerator { g in
            for c in 0..<2 {
                for _ in 0..<points {
                    let r = 0.05 + 0.95 * g.nextUnit()
                    let angle = 3 * Double.pi * r + Double(c) * Double.pi
                    xs += [Float(r * cos(angle) + 0.02 * g.nextNormal()), Float(r * sin(angle) + 0.02 * g.nextNormal())]
                    labels.append(c)
                }
            }
        }
        return (try Tensor(shape: [labels.count, 2], scalars: xs), labels)
    }

    static func accuracy(_ model: Chain<Float>, _ x: Tensor<Float>, _ labels: [Int]) throws -> Double {
        let predicted = try withoutGradients { try model(x).argmax(alongAxis: -1) }
        return Double(zip(predicted, labels).filter { $0 == $1 }.count) / Double(labels.count)
    }

    func run() throws {
        BLAS.setThreadCount(threads)
        let source = RandomSource(seed: seed)
        let train = try Demo.spirals(points: points, source: source)
        let test = try Demo.spirals(points: 500, source: source)
        let model = Chain<Float>(
            try Linear(inputSize: 2, outputSize: hidden, using: source), Activation(.tanh),
            try Linear(inputSize: hidden, outputSize: hidden, using: source), Activation(.tanh),
            try Linear(inputSize: hidden, outputSize: 2, using: source))
        let optimizer = Adam<Float>(learningRate: learningRate)
        print("two spirals: \(train.labels.count) training points, \(test.labels.count) held out; "
              + "MLP 2-\(hidden)-\(hidden)-2, Adam lr \(learningRate), \(BLAS.coreName) kernels, \(threads) threads")
        let progress = Progress(total: epochs, logEvery: max(epochs / 10, 1))
        let start = Date()
        for epoch in 1...epochs {
            let loss = try withLearningPhase(.training) { try Loss.crossEntropy(logits: model(train.x), targets: train.labels) }
            var gradients = try loss.gradients(for: model.parameters)
            let norm = GradientClipping.clipByGlobalNorm(&gradients, maxNorm: 5)
            guard norm.isFinite else { throw ValidationError("gradient norm became \(norm) at epoch \(epoch)") }
            try optimizer.update(model.parameters, gradients: gradients)
            if epoch % 10 == 0 || epoch == epochs {
                let trainAccuracy = try Demo.accuracy(model, train.x, train.labels)
                progress.update(epoch, [("loss", String(format: "%.4f", loss.scalarValue)),
                                        ("accuracy", String(format: "%.1f%%", 100 * trainAccuracy))])
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        let trainAccuracy = try Demo.accuracy(model, train.x, train.labels)
        let testAccuracy = try Demo.accuracy(model, test.x, test.labels)
        print(String(format: "done in %.2fs (%.0f examples/s): training accuracy %.1f%%, held-out accuracy %.1f%%",
                     elapsed, Double(epochs * train.labels.count) / elapsed, 100 * trainAccuracy, 100 * testAccuracy))
    }
}
