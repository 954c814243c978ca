// The Keras addition example as a SequenceTransformer: "535+61" -> "596".
// 50,000 unique pairs of numbers up to 3 digits (corpora/addition), 10% held out, input reversed by
// default; trains until 99% exact match on the held-out pairs or the epoch limit, then saves
// runs/addition/addition.safetensors for `loom decode`.
import ArgumentParser
import Foundation
import Loom
import RecipeSupport

struct Addition: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "addition", abstract: "Learn to add: \"535+61\" -> \"596\" with an encoder-decoder.")

    @OptionGroup var common: RecipeOptions
    @Option(parsing: .unconditional, help: "Digits per number.") var digits = 3
    @Option(parsing: .unconditional, help: "Unique pairs in the corpus.") var pairs = 50_000
    @Flag(name: .customLong("no-reverse"), help: "Do not reverse the input string (reversing helps LSTMs).") var noReverse = false
    @Option(parsing: .unconditional, help: "Stop once held-out exact match reaches this.") var target = 0.99
    @Option(help: "Write the corpus as train.tsv and held-out.tsv (source<TAB>target) into this folder and stop (for `loom train`).")
    var exportTsv: String?
    @Flag(help: "Bucket batches by length instead of shuffling plainly. Questions are 3 to 7 characters, so\n bucketing saves little padding, and same-length batches (all one-digit sums, say) slowed\n convergence here: 12% held-out exact match after 2 epochs against 68% shuffled.") var bucket = false

    func validate() throws {
        do {
            try OptionRange.check("--digits", digits, in: 1...9)
            // At least 20 pairs, so that the 10% held out for measuring holds 2.
            try OptionRange.check("--pairs", pairs, in: 20...10_000_000)
            try OptionRange.check("--target", target, in: 0...1)
        } catch let error as OptionRangeError {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        try common.configureThreads()
        let quick = common.quick
        let digits = quick ? min(self.digits, 2) : self.digits
        let count = quick ? min(pairs, 3000) : pairs
        let epochs = common.epochs ?? (quick ? 8 : RecipeDefaults.current.epochs)
        let hidden = common.hidden ?? (quick ? 64 : RecipeDefaults.current.hidden)
        let batchSize = common.batchSize ?? RecipeDefaults.current.batchSize
        let learningRate = common.learningRateOrDefault
        let reverse = !noReverse
        let directory = try common.outputDirectory("addition")
        let corpus = try AdditionCorpus.generate(digits: digits, pairs: count, seed: common.seed)
        let (train, held) = split(corpus, heldOut: 0.1, seed: common.seed &+ 1)
        if let exportTsv {
            let folder = URL(fileURLWithPath: exportTsv)
            try UserFile.makeDirectory(folder)
            for (name, pairs) in [("train.tsv", train), ("held-out.tsv", held)] {
                try AtomicFile.write(Data(pairs.map { "\($0.question)\t\($0.answer)\n" }.joined().utf8), to: folder.appendingPathComponent(name))
            }
            print("wrote \(train.count) training and \(held.count) held-out pairs to \(folder.path)")
            return
        }
        print("addition: \(corpus.count) unique pairs of up to \(digits) digits (\(train.count) train, \(held.count) held out), input \(reverse ? "reversed" : "as written")")

        let source = RandomSource(seed: common.seed)
        var architecture = try SequenceTransformerConfiguration(
            source: .text(.characters(try CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 32),
            encoderLayers: [hidden], encoderBidirectional: [true],
            target: .characters(try CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 32,
            decoderHidden: hidden, attention: .general)
        architecture.reverseSource = reverse
        let model = try SequenceTransformer(architecture, using: source)
        var options = TrainerOptions()
        options.batchSize = batchSize
        options.order = bucket ? .bucketed(buckets: 16) : .shuffled
        common.apply(to: &options, directory: directory)
        options.runIdentity = ["task": "addition", "digits": "\(digits)", "hidden": "\(hidden)", "reversed": "\(reverse)"]
        options.runDirectory = directory
        options.gradientClipNorm = 5
        options.restoreBestWeights = false
        // Cosine decay over the epoch budget: the last epochs settle instead of bouncing.
        options.schedule = CosineSchedule(rate: learningRate, totalSteps: epochs * ((train.count + batchSize - 1) / batchSize), minimum: 1e-4)
        let trainer = Trainer<Float, AdditionCorpus.Pair, [AdditionCorpus.Pair]>(
            parameters: model.parameters, optimizer: Adam<Float>(learningRate: learningRate), options: options, randomSource: source,
            length: { $0.question.count }, collate: { $0 },
            loss: { batch in try model.loss(sources: model.sourceBatch(texts: batch.map { $0.question }), targets: batch.map(\.answer)) },
            metrics: { batch in
                let decoded = try model.decode(model.sourceBatch(texts: batch.map { $0.question }), options: DecodingOptions(maximumLength: digits + 2))
                let characters = zip(decoded, batch).reduce(0.0) { total, pair in
                    let (a, b) = (Array(pair.0[0].text), Array(pair.1.answer))
                    return total + Double(zip(a, b).filter { $0 == $1 }.count) / Double(max(a.count, b.count))
                }
                return ["exact_match": Double(zip(decoded, batch).filter { $0.0[0].text == $0.1.answer }.count) / Double(batch.count),
                        "character_accuracy": characters / Double(batch.count)]
            })
        trainer.exampleWeight = { model.lossWeight(target: $0.answer) }
        var reached: Int?
        trainer.onEpochEnd = { record in
            if reached == nil, let exact = record.validationMetrics["exact_match"], exact >= target { reached = record.epoch }
        }
        let start = Date()
        // Reaching the target ends the run at that epoch's end.
        trainer.stopAfterEpoch = { _ in reached != nil }
        let history = try common.fit(trainer, train: train, validation: held, epochs: epochs)
        let seconds = Date().timeIntervalSince(start)
        // The last epoch's validation decoded every held-out pair with these final weights.
        let final = history.last?.validationMetrics ?? [:]
        let exact = final["exact_match"] ?? 0, characters = final["character_accuracy"] ?? 0
        let modelURL = directory.appendingPathComponent("addition.safetensors")
        try model.fitOutputLengthBound(train.map { SequenceExample(text: $0.question, features: [], frames: 0, target: $0.answer, line: 0) })
        try model.save(to: modelURL, training: ["task": "addition", "digits": "\(digits)", "reversed_input": "\(reverse)",
                                                "held_out_exact_match": "\(exact)", "epochs": "\(trainer.epoch)"])
        var report = RecipeReport()
        report.add("held_out_exact_match", "held-out exact match", .fraction(exact))
        report.add("held_out_character_accuracy", "held-out character accuracy", .fraction(characters))
        report.add("held_out_examples", "held-out examples", .integer(held.count))
        if let reached { report.add("target_reached_at_epoch", "target \(ReportValue.fraction(target).display) reached at epoch", .integer(reached)) }
        report.addCommon(task: "addition", history: trainer.history, epochs: trainer.epoch, seconds: seconds, parameters: model.parameterCount, model: modelURL)
        report.addDecodeCommand(model: modelURL, example: "\"535+61\"")
        report.add("plots", "plots", .text(["loss.svg", "metrics.svg"].map { directory.appendingPathComponent($0).path }.joined(separator: ", ")))
        try report.emit(to: directory)
    }
}

RecipeDefaults.current = RecipeDefaults(epochs: 20, batchSize: 128, hidden: 128, learningRate: 3e-3)
Addition.main()
