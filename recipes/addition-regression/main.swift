// The Wolfram addition-regression example: two-digit addition strings ("12+34") to the numeric
// sum, stacked BasicRecurrentLayers (tanh RNN) -> SequenceLast -> Linear, mean squared error.
// Target: at least 99% of held-out predictions round to the correct sum.
import ArgumentParser
import Foundation
import Loom
import RecipeSupport

struct AdditionRegression: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "addition-regression", abstract: "Regress the sum of two-digit additions with stacked RNNs.")
    @OptionGroup var common: RecipeOptions

    func run() throws {
        try common.configureThreads()
        let quick = common.quick
        let all = (0..<100).flatMap { a in (0..<100).map { b in (text: "\(a)+\(b)", sum: a + b) } }
        let (train, held) = split(quick ? Array(all.prefix(2500)) : all, heldOut: 0.1, seed: common.seed)
        let epochs = common.epochs ?? (quick ? 15 : RecipeDefaults.current.epochs), hidden = common.hidden ?? (quick ? 48 : RecipeDefaults.current.hidden)
        let batchSize = common.batchSize ?? RecipeDefaults.current.batchSize, learningRate = common.learningRateOrDefault
        let directory = try common.outputDirectory("addition-regression")
        print("addition-regression: \(train.count) training pairs, \(held.count) held out; RNN x 2 (\(hidden)) -> SequenceLast -> Linear")
        let source = RandomSource(seed: common.seed)
        let scale: Float = 100  // sums 0...198 are learned as sum / 100
        // Embedding -> 2 tanh RNN layers -> SequenceLast -> Linear to one number, as one model file `loom decode` applies.
        let model = try SequenceHead(SequenceHead.Configuration(codec: .characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 16,
                                                                cell: "rnn", hidden: hidden, layers: 2, scale: Double(scale)), using: source)
        func predict(_ texts: [String]) throws -> Tensor<Float> { try model(texts) }
        func roundedCorrect(_ items: [(text: String, sum: Int)]) throws -> Double {
            let predictions = try withoutGradients { try predict(items.map(\.text)) }.scalars
            return Double(zip(predictions, items).filter { Int(($0 * scale).rounded()) == $1.sum }.count) / Double(items.count)
        }
        var options = TrainerOptions()
        options.batchSize = batchSize
        common.apply(to: &options, directory: directory)
        options.runIdentity = ["task": "addition-regression", "hidden": "\(hidden)", "quick": "\(quick)"]
        options.runDirectory = directory
        options.progressEvery = 50
        options.gradientClipNorm = 1
        let parameters = model.parameters
        let trainer = Trainer<Float, (text: String, sum: Int), [(text: String, sum: Int)]>(
            parameters: parameters, optimizer: Adam<Float>(learningRate: learningRate), options: options, randomSource: source,
            length: { $0.text.count }, collate: { $0 },
            loss: { batch in try Loss.meanSquaredError(predict(batch.map(\.text)), Tensor(shape: [batch.count, 1], scalars: batch.map { Float($0.sum) / scale })) },
            metrics: { batch in
                let predictions = try predict(batch.map(\.text)).scalars
                return ["rounds_correct": Double(zip(predictions, batch).filter { Int(($0 * scale).rounded()) == $1.sum }.count) / Double(batch.count)]
            })
        trainer.options.schedule = CosineSchedule(rate: learningRate, totalSteps: epochs * ((train.count + batchSize - 1) / batchSize), minimum: 1e-4)
        let start = Date()
        try common.fit(trainer, train: train, validation: held, epochs: epochs)
        let seconds = Date().timeIntervalSince(start)
        let heldCorrect = try roundedCorrect(held)
        let errors = try withoutGradients { try predict(held.map(\.text)) }.scalars
        let mae = zip(errors, held).reduce(0.0) { $0 + abs(Double($1.0 * scale) - Double($1.1.sum)) } / Double(held.count)
        let modelURL = directory.appendingPathComponent("addition-regression.safetensors")
        try model.save(to: modelURL, training: ["task": "addition-regression", "held_out_rounds_correct": "\(heldCorrect)"])
        var report = RecipeReport()
        report.add("held_out_rounds_correct", "held-out predictions rounding to the correct sum", .fraction(heldCorrect))
        report.add("held_out_mean_absolute_error", "held-out mean absolute error", .number(mae, format: "%.3f"))
        report.add("training_rounds_correct", "training pairs rounding correctly", .fraction(try roundedCorrect(train)))
        report.add("held_out_examples", "held-out examples", .integer(held.count))
        report.addCommon(task: "addition-regression", history: trainer.history, epochs: trainer.epoch, seconds: seconds,
                         parameters: parameters.reduce(0) { $0 + $1.data.count }, model: modelURL)
        report.add("plots", "plots", .text(["loss.svg", "metrics.svg"].map { directory.appendingPathComponent($0).path }.joined(separator: ", ")))
        try report.emit(to: directory)
    }
}

RecipeDefaults.current = RecipeDefaults(epochs: 120, batchSize: 64, hidden: 128, learningRate: 2e-3)
AdditionRegression.main()
