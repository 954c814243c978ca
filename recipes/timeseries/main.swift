// The seeds' stateful example: a random walk of 1,000 steps (accumulated random -1/0/+1), an LSTM
// trained to predict the next value. Stateful: the walk is cut into consecutive chunks, never
// shuffled, the state carried from chunk to chunk with truncated backpropagation at chunk
// boundaries (reset at each epoch). Compared with a stateless model that sees only a window of
// the last values. Reports one-step prediction errors on the last 20% of the walk (never trained
// on) and plots prediction against truth. Both models predict the step to the next value (the
// usual parameterization for a walk: the prediction is the current value plus the output).
import ArgumentParser
import Foundation
import Loom
import RecipeSupport

struct TimeSeries: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "timeseries", abstract: "Stateful LSTM on a random walk, against a windowed model.")
    @OptionGroup var common: RecipeOptions
    @Option(help: "Steps per chunk (truncated backpropagation length).") var chunk = 25
    @Option(help: "Values the stateless model sees.") var window = 10

    func validate() throws {
        if common.distributed {
            throw ValidationError("--distributed: the stateful model carries its state from one batch to the next, which data-parallel ranks cannot share")
        }
    }

    func run() throws {
        try common.configureThreads()
        let quick = common.quick
        let epochs = common.epochs ?? (quick ? 15 : RecipeDefaults.current.epochs), hidden = common.hidden ?? RecipeDefaults.current.hidden
        let directory = try common.outputDirectory("timeseries")
        var g = SeededGenerator(seed: common.seed)
        var walk: [Float] = [0]
        for _ in 1..<1000 { walk.append(walk.last! + Float(Int(g.next() % 3) - 1)) }
        let scale = max(walk.map(abs).max()!, 1)
        let series = walk.map { $0 / scale }
        let trainEnd = 800
        print("timeseries: random walk of \(walk.count) steps (range \(Int(walk.min()!))...\(Int(walk.max()!))), first \(trainEnd) for training, chunks of \(chunk)")

        // Stateful: chunk k covers steps [k c, (k + 1) c); its target is the next value.
        let source = RandomSource(seed: common.seed)
        let lstm = try LSTM<Float>(inputSize: 1, hiddenSize: hidden, using: source)
        let stateful = StatefulModel(lstm)
        let head = try Linear<Float>(inputSize: hidden, outputSize: 1, using: source)
        func chunkLoss(_ k: Int) throws -> Tensor<Float> {
            let range = (k * chunk)..<min((k + 1) * chunk, trainEnd - 1)
            let x = try SequenceBatch(values: Tensor(shape: [range.count, 1, 1], scalars: Array(series[range])))
            let out = try stateful(x)
            return try Loss.meanSquaredError(head(out.values.reshaped([range.count, hidden])),
                                             Tensor(shape: [range.count, 1], scalars: range.map { series[$0 + 1] - series[$0] }))
        }
        // Both models train quietly into their own run directory.
        func trainerOptions(batchSize: Int, order: BatchOrder, run: String) -> TrainerOptions {
            var options = TrainerOptions()
            options.batchSize = batchSize
            options.order = order
            common.apply(to: &options, directory: directory, name: "checkpoints/\(run)")
            options.runIdentity = ["task": "timeseries", "model": run, "hidden": "\(hidden)", "chunk": "\(chunk)", "window": "\(window)"]
            options.runDirectory = directory.appendingPathComponent(run)
            options.showProgress = false
            return options
        }
        var options = trainerOptions(batchSize: 1, order: .sequential, run: "stateful")
        // The state carried from chunk to chunk is not in a checkpoint: this model resumes from epoch ends only.
        options.checkpointOnStop = false
        options.checkpointEverySteps = nil
        let chunks = Array(0..<((trainEnd - 1 + chunk - 1) / chunk))
        let trainer = Trainer<Float, Int, Int>(parameters: lstm.parameters + head.parameters, optimizer: Adam<Float>(learningRate: common.learningRateOrDefault),
                                               options: options, randomSource: source, length: { _ in chunk }, collate: { $0[0] }, loss: chunkLoss)
        trainer.onEpochStart = { _ in stateful.reset() }
        let start = Date()
        try common.fit(trainer, train: chunks, epochs: epochs)
        // One-step predictions over the whole walk, state carried from the start.
        let predictedStateful: [Float] = try withoutGradients {
            stateful.reset()
            let out = try stateful(SequenceBatch(values: Tensor(shape: [series.count - 1, 1, 1], scalars: Array(series.dropLast()))))
            return zip(try head(out.values.reshaped([series.count - 1, hidden])).scalars, series).map { $0 + $1 }
        }

        // Stateless: a window of the last `window` values -> LSTM -> SequenceLast -> next value.
        let windowed = try LSTM<Float>(inputSize: 1, hiddenSize: hidden, using: source)
        let windowHead = try Linear<Float>(inputSize: hidden, outputSize: 1, using: source)
        func windowPredict(_ ends: [Int]) throws -> Tensor<Float> {
            var values = [Float](repeating: 0, count: window * ends.count)
            for (b, end) in ends.enumerated() { for t in 0..<window { values[t * ends.count + b] = end - window + 1 + t >= 0 ? series[end - window + 1 + t] : 0 } }
            let out = try windowed(SequenceBatch(values: Tensor(shape: [window, ends.count, 1], scalars: values)))
            return try windowHead(SequenceLast<Float>()(out.output))
        }
        // The stateful model reads the one walk in order (batch 1); --batch-size sets the windowed model's batches.
        let windowOptions = trainerOptions(batchSize: common.batchSize ?? 32, order: .shuffled, run: "windowed")
        let windowTrainer = Trainer<Float, Int, [Int]>(
            parameters: windowed.parameters + windowHead.parameters, optimizer: Adam<Float>(learningRate: common.learningRateOrDefault), options: windowOptions,
            randomSource: source, length: { _ in window }, collate: { $0 },
            loss: { ends in try Loss.meanSquaredError(windowPredict(ends), Tensor(shape: [ends.count, 1], scalars: ends.map { series[$0 + 1] - series[$0] })) })
        try common.fit(windowTrainer, train: Array(0..<(trainEnd - 1)), epochs: max(epochs / 3, 5))
        let predictedWindowed = zip(try withoutGradients { try windowPredict(Array(0..<(series.count - 1))) }.scalars, series).map { $0 + $1 }
        let seconds = Date().timeIntervalSince(start)

        // Errors in the walk's units on the held-out tail, and the naive "same as last" baseline.
        func rmse(_ predictions: [Float]) -> Double {
            let range = (trainEnd - 1)..<(series.count - 1)
            return (range.reduce(0.0) { $0 + pow(Double((predictions[$1] - series[$1 + 1]) * scale), 2) } / Double(range.count)).squareRoot()
        }
        let persistence = rmse(Array(series.dropLast()))
        let points = { (values: [Float]) in values.enumerated().map { (x: Double($0.offset + 1), y: Double($0.element * scale)) } }
        try SVGPlot.write([SVGPlot.Series(name: "random walk", points: points(Array(series.dropFirst()))),
                           SVGPlot.Series(name: "stateful LSTM", points: points(predictedStateful)),
                           SVGPlot.Series(name: "windowed LSTM", points: points(predictedWindowed))],
                          title: "One-step predictions (training: steps 1-\(trainEnd))", xLabel: "step", yLabel: "value",
                          to: directory.appendingPathComponent("predictions.svg"))
        var report = RecipeReport()
        report.add("stateful_rmse", "stateful LSTM one-step RMSE (held-out steps \(trainEnd)-\(series.count - 1))", .number(rmse(predictedStateful), format: "%.3f"))
        report.add("windowed_rmse", "windowed LSTM one-step RMSE (window \(window))", .number(rmse(predictedWindowed), format: "%.3f"))
        report.add("repeat_last_value_rmse", "repeat-last-value RMSE (the optimum for a random walk is its step noise, sqrt(2/3) = 0.816)",
                   .number(persistence, format: "%.3f"))
        report.add("task", "task", .text("timeseries"))
        report.add("epochs", "epochs (stateful)", .integer(trainer.epoch))
        report.add("windowed_epochs", "epochs (windowed)", .integer(windowTrainer.epoch))
        report.add("wall_time_seconds", "wall time (s)", .number(seconds, format: "%.1f"))
        report.add("plots", "plot", .text(directory.appendingPathComponent("predictions.svg").path))
        try report.emit(to: directory)
    }
}

RecipeDefaults.current = RecipeDefaults(epochs: 60, batchSize: 32, hidden: 32, learningRate: 5e-3)
TimeSeries.main()
