import ArgumentParser
import Foundation
import Loom

/// `loom demo`: an end-to-end run of the library until the recipes exist: a two-layer tanh
/// network learns to tell apart two interleaved spirals (a classic problem no linear model
/// solves), trained with Adam on cross-entropy, and is scored on points it never saw.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a small network on the two-spirals problem and report held-out accuracy.")

    @Option(parsing: .unconditional, help: "Training epochs.") var epochs = 300
    @Option(parsing: .unconditional, help: "Examples per batch.") var batchSize = 100
    @Option(parsing: .unconditional, help: "Hidden units per layer.") var hidden = 32
    @Option(parsing: .unconditional, help: "Points per spiral in the training set.") var points = 200
    @Option(parsing: .unconditional, help: "Seed for data, initialization and everything random.") var seed: UInt64 = 1
    @Option(parsing: .unconditional, help: "Threads (default: LOOM_THREADS, else the cores this process may use).") var threads: Int?
    @Option(parsing: .unconditional, help: "Adam learning rate.") var learningRate = 0.01
    @Option(help: "Write checkpoints here (at each epoch's end and every --checkpoint-every steps).") var checkpointDir: String?
    @Option(parsing: .unconditional, help: "Also checkpoint every this many steps.") var checkpointEvery: Int?
    @Flag(help: "Continue from the newest checkpoint in --checkpoint-dir.") var resume = false
    @Flag(help: "Resume even if the checkpoint was written with other settings or data (reported).") var resumeAnyway = false
    @Option(name: [.customLong("output"), .customLong("run-dir")], help: "Write the metrics log (metrics.jsonl) and plots (loss.svg, metrics.svg) here.")
    var runDir: String?

    func validate() throws {
        try validatingOptions {
            try OptionRange.check("--epochs", epochs, in: 1...1_000_000)
            try OptionRange.check("--batch-size", batchSize, in: 1...1_000_000)
            try OptionRange.check("--hidden", hidden, in: 1...4096)
            try OptionRange.check("--points", points, in: 1...1_000_000)
            if let threads { try OptionRange.check("--threads", threads, in: 1...WorkerTeam.maximumThreads) }
            try OptionRange.check("--learning-rate", learningRate, in: 0...10)
            if let checkpointEvery { try OptionRange.check("--checkpoint-every", checkpointEvery, in: 1...Int.max) }
            if let checkpointDir { try OptionRange.path("--checkpoint-dir", checkpointDir) }
            if let runDir { try OptionRange.path("--output", runDir) }
        }
        if (resume || resumeAnyway) && checkpointDir == nil { throw ValidationError("--resume needs --checkpoint-dir") }
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
        if let threads { BLAS.setThreadCount(threads) }
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
        options.resumeAnyway = resumeAnyway
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
        if let checkpointDir, resume || resumeAnyway {
            if let url = try trainer.resume() {
                print("resumed from \(url.lastPathComponent) at step \(trainer.globalStep), epoch \(trainer.epoch)"
                      + (trainer.epoch >= epochs ? " (the run had finished all \(epochs) epochs)" : ""))
            } else {
                print("no checkpoint yet in \(checkpointDir); starting from the beginning")
            }
        }
        print("two spirals: \(train.labels.count) training points, \(test.labels.count) held out; "
              + "MLP 2-\(hidden)-\(hidden)-2, Adam lr \(learningRate), batch \(batchSize), \(BLAS.coreName) kernels, \(BLAS.threadCount) threads")
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
