import ArgumentParser
import Foundation
import Loom

/// `loom demo`: an end-to-end run of the library until the recipes exist: a two-layer tanh
/// network learns to tell apart two interleaved spirals (a classic problem no linear model
/// solves), trained with Adam on cross-entropy, and is scored on points it never saw.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small network on the two-spirals problem and report held-out accuracy.")

    @Option(help: "Training epochs.") var epochs = 300
    @Option(help: "Examples per batch.") var batchSize = 100
    @Option(help: "Hidden units per layer.") var hidden = 32
    @Option(help: "Points per spiral in the training set.") var points = 200
    @Option(help: "Seed for data, initialization and everything random.") var seed: UInt64 = 1
    @Option(help: "Threads (1 or 2 use Loom's own team; more go to OpenBLAS).") var threads = 2
    @Option(help: "Adam learning rate.") var learningRate = 0.01
    @Option(help: "Write checkpoints here (at each epoch's end and every --checkpoint-every steps).") var checkpointDir: String?
    @Option(help: "Also checkpoint every this many steps.") var checkpointEvery: Int?
    @Flag(help: "Continue from the newest checkpoint in --checkpoint-dir.") var resume = false
    @Option(help: "Write the metrics log (metrics.jsonl) and plots (loss.svg, metrics.svg) here.") var runDir: String?

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
            try Linear(inputSize: 2, outputSize: hidden, using: source), Activation(.tanh), try Dropout(probability: 0.02, using: source),
            try Linear(inputSize: hidden, outputSize: hidden, using: source), Activation(.tanh),
            try Linear(inputSize: hidden, outputSize: 2, using: source))
        var options = TrainerOptions()
        options.batchSize = batchSize
        options.order = .shuffled
        options.gradientClipNorm = 5
        options.seed = seed
        options.checkpointDirectory = checkpointDir.map { URL(fileURLWithPath: $0) }
        options.checkpointEverySteps = checkpointEvery
        options.runDirectory = runDir.map { URL(fileURLWithPath: $0) }
        options.progressEvery = 100
        // An example is a row of the training matrix; a batch is (points, labels).
        let trainer = Trainer<Float, Int, (Tensor<Float>, [Int])>(
            parameters: model.parameters, optimizer: Adam<Float>(learningRate: learningRate), options: options, randomSource: source,
            length: { _ in 1 },
            collate: { rows in (try train.x.gathering(rows: rows), rows.map { train.labels[$0] }) },
            loss: { batch in try Loss.crossEntropy(logits: model(batch.0), targets: batch.1) },
            metrics: { batch in
                let predicted = try model(batch.0).argmax(alongAxis: -1)
                return ["accuracy": Double(zip(predicted, batch.1).filter { $0 == $1 }.count) / Double(batch.1.count)]
            })
        if resume {
            guard checkpointDir != nil else { throw ValidationError("--resume needs --checkpoint-dir") }
            if let url = try trainer.resume() {
                print("resumed from \(url.lastPathComponent) at step \(trainer.globalStep), epoch \(trainer.epoch)")
            } else {
                print("no checkpoint yet in \(checkpointDir!); starting from the beginning")
            }
        }
        print("two spirals: \(train.labels.count) training points, \(test.labels.count) held out; "
              + "MLP 2-\(hidden)-\(hidden)-2, Adam lr \(learningRate), batch \(batchSize), \(BLAS.coreName) kernels, \(threads) threads")
        let start = Date()
        try trainer.fit(train: Array(0..<train.labels.count), epochs: epochs)
        let elapsed = Date().timeIntervalSince(start)
        let trainAccuracy = try Demo.accuracy(model, train.x, train.labels)
        let testAccuracy = try Demo.accuracy(model, test.x, test.labels)
        print(String(format: "final loss %.9g after %d steps (%d skipped)", trainer.currentLoss, trainer.globalStep, trainer.skippedSteps))
        print(String(format: "done in %.2fs: training accuracy %.1f%%, held-out accuracy %.1f%%", elapsed, 100 * trainAccuracy, 100 * testAccuracy))
        if let runDir { print("metrics log and plots in \(runDir)") }
    }
}
