// The Wolfram compare-xy example: every string of x and y up to length 8, labeled Less, Equal or
// Greater by comparing the counts of x and y; an LSTM reads the string, its last state goes to a
// linear classifier. Reports accuracy on the whole training set (target 100%) and on every
// string of lengths 9 to 12, never seen (target 99%).
import ArgumentParser
import Foundation
import Loom
import RecipeSupport

struct CompareXY: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "compare-xy", abstract: "Classify strings of x and y as Less, Equal or Greater.")
    @OptionGroup var common: RecipeOptions

    static let labels = ["Less", "Equal", "Greater"]

    /// Every string over {x, y} with length in `lengths`, with its label (count of x vs count of y).
    static func strings(_ lengths: ClosedRange<Int>) -> [(text: String, label: Int)] {
        lengths.flatMap { n in
            (0..<(1 << n)).map { bits -> (String, Int) in
                let text = String((0..<n).map { bits >> $0 & 1 == 1 ? "y" : "x" })
                let ys = bits.nonzeroBitCount, xs = n - ys
                return (text, xs < ys ? 0 : xs == ys ? 1 : 2)
            }
        }
    }

    func run() throws {
        try common.configureThreads()
        let quick = common.quick
        let train = Self.strings(1...(quick ? 6 : 8)), test = Self.strings((quick ? 7 : 9)...(quick ? 8 : 12))
        let epochs = common.epochs ?? (quick ? 25 : RecipeDefaults.current.epochs), hidden = common.hidden ?? RecipeDefaults.current.hidden
        let batchSize = common.batchSize ?? RecipeDefaults.current.batchSize
        let directory = try common.outputDirectory("compare-xy")
        print("compare-xy: \(train.count) training strings (lengths \(train.first!.text.count)-\(train.last!.text.count)), \(test.count) unseen test strings")
        let source = RandomSource(seed: common.seed)
        // Embedding -> LSTM -> SequenceLast -> Linear over the three labels, as one model file `loom decode` applies.
        let model = try SequenceHead(SequenceHead.Configuration(codec: .characters(CharacterEncoder(alphabet: Array("xy"))), embeddingSize: 8,
                                                                cell: "lstm", hidden: hidden, layers: 1, labels: Self.labels), using: source)
        let decoder = try ClassDecoder(labels: Self.labels)
        func logits(_ texts: [String]) throws -> Tensor<Float> { try model(texts) }
        func accuracy(_ items: [(text: String, label: Int)]) throws -> Double {
            var correct = 0
            for start in stride(from: 0, to: items.count, by: 512) {
                let chunk = Array(items[start..<min(start + 512, items.count)])
                let predicted = try withoutGradients { try decoder.decisions(logits(chunk.map(\.text)).softmax(alongAxis: 1)) }
                correct += zip(predicted, chunk).filter { $0 == Self.labels[$1.label] }.count
            }
            return Double(correct) / Double(items.count)
        }
        var options = TrainerOptions()
        options.batchSize = batchSize
        common.apply(to: &options, directory: directory)
        options.runIdentity = ["task": "compare-xy", "hidden": "\(hidden)", "quick": "\(quick)"]
        options.runDirectory = directory
        options.progressEvery = 20
        let parameters = model.parameters
        let trainer = Trainer<Float, (text: String, label: Int), [(text: String, label: Int)]>(
            parameters: parameters, optimizer: Adam<Float>(learningRate: common.learningRateOrDefault), options: options, randomSource: source,
            length: { $0.text.count }, collate: { $0 },
            loss: { batch in try Loss.crossEntropy(logits: logits(batch.map(\.text)), targets: batch.map(\.label)) },
            metrics: { batch in
                let predicted = try decoder.decisions(logits(batch.map(\.text)).softmax(alongAxis: 1))
                return ["accuracy": Double(zip(predicted, batch).filter { $0 == Self.labels[$1.label] }.count) / Double(batch.count)]
            })
        let start = Date()
        var perfectAt: Int?
        trainer.onEpochEnd = { record in if perfectAt == nil, (record.validationMetrics["accuracy"] ?? 0) == 1 { perfectAt = record.epoch } }
        // Validation here is the training set itself: the target is 100% on it.
        try common.fit(trainer, train: train, validation: train, epochs: epochs)
        let seconds = Date().timeIntervalSince(start)
        let trainAccuracy = try accuracy(train), testAccuracy = try accuracy(test)
        let modelURL = directory.appendingPathComponent("compare-xy.safetensors")
        try model.save(to: modelURL, training: ["task": "compare-xy", "unseen_lengths_accuracy": "\(testAccuracy)"])
        var report = RecipeReport()
        report.add("training_accuracy", "training-set accuracy", .fraction(trainAccuracy))
        report.add("unseen_lengths_accuracy", "unseen lengths accuracy", .fraction(testAccuracy))
        report.add("chance_accuracy", "chance", .fraction(Double(test.filter { $0.label == 1 }.count) > Double(test.count) / 3 ? 0.5 : 1.0 / 3))
        if let perfectAt { report.add("training_accuracy_100_at_epoch", "100% on the training set from epoch", .integer(perfectAt)) }
        report.addCommon(task: "compare-xy", history: trainer.history, epochs: trainer.epoch, seconds: seconds,
                         parameters: parameters.reduce(0) { $0 + $1.data.count }, model: modelURL)
        report.add("plots", "plots", .text(["loss.svg", "metrics.svg"].map { directory.appendingPathComponent($0).path }.joined(separator: ", ")))
        try report.emit(to: directory)
    }
}

RecipeDefaults.current = RecipeDefaults(epochs: 60, batchSize: 32, hidden: 32, learningRate: 0.01)
CompareXY.main()
