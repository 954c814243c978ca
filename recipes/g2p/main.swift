// Grapheme-to-phoneme conversion on the CMU Pronouncing Dictionary: "loom" -> "L UW M".
// A thin preparation step (read CMUdict, split by word, write TSVs) and the committed run
// configuration recipes/g2p/run.json through the same training path as `loom train`; then the
// test words are scored the standard way (right when the output equals any reference variant)
// with greedy and beam search. Writes runs/g2p/g2p.safetensors for `loom decode`.
import ArgumentParser
import Foundation
import Loom
import LoomDistributed
import RecipeSupport

struct G2P: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "g2p", abstract: "Learn English pronunciations from CMUdict: \"loom\" -> \"L UW M\".",
        discussion: """
            The dictionary is Debian's pocketsphinx-en-us (\(PronouncingDictionary.debianPath)) unless --dictionary \\
            names another CMUdict-format file. Words are split by a stable hash of the word (10% test, 3% validation, \\
            the rest training; all variants of a word on one side). The model and training settings are \\
            recipes/g2p/run.json (or --config); the common flags override single keys.
            """)

    @OptionGroup var common: RecipeOptions
    @Option(help: "A CMUdict-format dictionary (default: Debian's pocketsphinx-en-us).") var dictionary: String?
    @Option(help: "A run configuration to use instead of recipes/g2p/run.json (the data keys are set from the split).") var config: String?
    @Option(parsing: .unconditional, help: "Beam width of the beam-search figures, 2...\(DecodingOptions.maximumBeamWidth).") var beam = 5
    @Option(parsing: .unconditional, help: "Use only this many words (the same ones each time; default: all, 4000 with --quick).") var words: Int?

    func validate() throws {
        do {
            try OptionRange.check("--beam", beam, in: 2...DecodingOptions.maximumBeamWidth)
            if let words { try OptionRange.check("--words", words, in: 20...10_000_000) }
            if let dictionary { try OptionRange.path("--dictionary", dictionary) }
            if let config { try OptionRange.path("--config", config) }
        } catch let error as OptionRangeError {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        try common.configureThreads()
        let directory = try common.outputDirectory("g2p")
        let path = dictionary ?? PronouncingDictionary.debianPath
        guard dictionary != nil || FileManager.default.fileExists(atPath: path) else {
            throw ValidationError("CMUdict not found at \(path): install Debian's pocketsphinx-en-us (apt-get install pocketsphinx-en-us), "
                                  + "or give a CMUdict-format file with --dictionary")
        }
        let dict = try PronouncingDictionary.read(URL(fileURLWithPath: path))
        let pronunciations = dict.words.reduce(0) { $0 + $1.pronunciations.count }
        print("\(path): \(dict.words.count) words, \(pronunciations) pronunciations, \(dict.phones.count) phones")
        if !dict.malformed.isEmpty {
            print("skipped \(dict.malformed.count) malformed lines, e.g. \(dict.malformed.prefix(3).map(\.description).joined(separator: "; "))")
        }
        if !dict.outsideAlphabet.isEmpty {
            print("left out \(dict.outsideAlphabet.count) words with characters other than a-z ' - . (e.g. \(dict.outsideAlphabet.prefix(5).joined(separator: ", ")))")
        }
        var entries = dict.words
        if let limit = words ?? (common.quick ? 4000 : nil), limit < entries.count {
            entries = Array(entries.sorted { FNV1a.hash("subset " + $0.word) < FNV1a.hash("subset " + $1.word) }.prefix(limit))
            print("using \(limit) of the words (--words)")
        }

        // The split, written as TSVs of word<TAB>phones (one line per variant); distributed, rank 0
        // writes them (the output folder is shared by the ranks) and the others wait for it.
        let communicator = RecipeOptions.communicator
        let primary = communicator?.isPrimary ?? true
        let data = directory.appendingPathComponent("data")
        if primary { try UserFile.makeDirectory(data) }
        var parts: [PronouncingDictionary.Part: [(word: String, pronunciations: [String])]] = [:]
        for entry in entries { parts[PronouncingDictionary.part(of: entry.word), default: []].append(entry) }
        var files: [PronouncingDictionary.Part: URL] = [:]
        for part in PronouncingDictionary.Part.allCases {
            let lines = (parts[part] ?? []).flatMap { e in e.pronunciations.map { "\(e.word)\t\($0)\n" } }
            guard !lines.isEmpty else { throw ValidationError("\(path): no words fall in the \(part.rawValue) part; give a larger dictionary") }
            files[part] = data.appendingPathComponent("\(part.rawValue).tsv")
            if primary { try AtomicFile.write(Data(lines.joined().utf8), to: files[part]!) }
        }
        var written = [0.0]
        try communicator?.allReduceSum(&written)
        let counts = PronouncingDictionary.Part.allCases.map { "\(parts[$0]?.count ?? 0) \($0.rawValue)" }.joined(separator: ", ")
        print("split by word: \(counts) words")

        let c = try configuration(train: files[.train]!, validation: files[.validation]!)
        let interruption = Interruption.install()
        defer { interruption.uninstall() }
        let outcome = try Distributed.guarded(communicator) {
            try SequenceRun.run(c, output: directory, modelName: "g2p.safetensors", resume: common.resume || common.resumeAnyway,
                                resumeAnyway: common.resumeAnyway, facts: ["task": "g2p", "dictionary": path], communicator: communicator,
                                shouldStop: { interruption.requested })
        }
        guard outcome.primary else { return }
        guard outcome.validation != nil else {
            print("\ninterrupted at step \(outcome.trainer.globalStep): checkpoint saved in \(directory.appendingPathComponent("checkpoints").path); "
                  + "run the same command with --resume to continue")
            throw ExitCode(130)
        }

        // The test words, each right when the output equals any of its variants.
        let testPairs = try PairCorpus.readTSV(files[.test]!).pairs
        let test = SequenceRun.groupedBySource(try SequenceRun.examples(testPairs, for: outcome.model, file: files[.test]!.path))
        let length = c.training.max_output_length
        let decodeStart = Date()
        let (greedy, greedyMetrics) = try SequenceRun.evaluate(test, outcome.model, options: DecodingOptions(maximumLength: length), batchSize: 256)
        let greedySeconds = Date().timeIntervalSince(decodeStart)
        let (beamed, beamMetrics) = try SequenceRun.evaluate(test, outcome.model, options: DecodingOptions(maximumLength: length, beamWidth: beam), batchSize: 256)

        var errors = "word\treferences\tgreedy\tbeam \(beam)\n"
        var examples: [String] = []
        for (example, (g, b)) in zip(test, zip(greedy, beamed)) where !example.references.contains(b) || !example.references.contains(g) {
            errors += "\(example.text ?? "")\t\(example.references.joined(separator: " | "))\t\(g)\t\(b)\n"
            if !example.references.contains(b) && examples.count < 12 {
                examples.append("  \(example.text ?? "") -> \(b)   (reference \(example.references.joined(separator: " | ")))")
            }
        }
        try AtomicFile.write(Data(errors.utf8), to: directory.appendingPathComponent("errors.tsv"))
        print("some errors (beam \(beam); all in errors.tsv):\n" + examples.joined(separator: "\n"))
        // The most frequent phone errors: each beam output aligned with its closest reference.
        var confusions: [String: Int] = [:]
        for (example, output) in zip(test, beamed) where !example.references.contains(output) {
            let hypothesis = output.split(separator: " ").map(String.init)
            let closest = example.references.map { $0.split(separator: " ").map(String.init) }
                .min { ErrorRate.editDistance(hypothesis, $0) < ErrorRate.editDistance(hypothesis, $1) } ?? []
            for pair in ErrorRate.alignment(reference: closest, hypothesis: hypothesis) where pair.reference != pair.hypothesis {
                confusions["\(pair.reference ?? "-")\t\(pair.hypothesis ?? "-")", default: 0] += 1
            }
        }
        let ranked = confusions.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        try AtomicFile.write(Data(("reference\toutput\tcount\n" + ranked.map { "\($0.key)\t\($0.value)\n" }.joined()).utf8),
                             to: directory.appendingPathComponent("phone-errors.tsv"))
        print("most frequent phone errors (reference -> output, - for none; all in phone-errors.tsv):\n"
              + ranked.prefix(10).map { "  \($0.key.replacingOccurrences(of: "\t", with: " -> ")): \($0.value)" }.joined(separator: "\n"))

        var report = RecipeReport()
        report.add("test_word_error_rate_greedy", "test word error rate, greedy", .fraction(1 - greedyMetrics.exact_match))
        report.add("test_phone_error_rate_greedy", "test phone error rate, greedy", .fraction(greedyMetrics.word_error_rate))
        report.add("test_word_error_rate_beam", "test word error rate, beam \(beam)", .fraction(1 - beamMetrics.exact_match))
        report.add("test_phone_error_rate_beam", "test phone error rate, beam \(beam)", .fraction(beamMetrics.word_error_rate))
        report.add("beam", "beam width", .integer(beam))
        report.add("test_words", "test words", .integer(test.count))
        report.add("train_words", "training words", .integer(parts[.train]?.count ?? 0))
        report.add("validation_words", "validation words", .integer(parts[.validation]?.count ?? 0))
        report.add("malformed_lines", "malformed lines skipped", .integer(dict.malformed.count))
        report.add("words_outside_alphabet", "words left out (characters outside a-z ' - .)", .integer(dict.outsideAlphabet.count))
        report.add("validation_word_error_rate", "validation word error rate, greedy", .fraction(1 - (outcome.validation?.exact_match ?? 0)))
        report.add("test_greedy_decode_seconds", "test decode time, greedy (s)", .number(greedySeconds, format: "%.1f"))
        report.addCommon(task: "g2p", history: outcome.trainer.history, epochs: outcome.trainer.epoch, seconds: outcome.seconds,
                         parameters: outcome.model.parameterCount, model: outcome.modelFile)
        report.addDecodeCommand(model: outcome.modelFile, example: "loom")
        report.add("plots", "plots", .text(["loss.svg", "metrics.svg"].map { directory.appendingPathComponent($0).path }.joined(separator: ", ")))
        try report.emit(to: directory)
    }

    /// The recipe's run configuration (or --config) with the data written above and the common
    /// flags applied; --quick trains a small model for a few epochs.
    func configuration(train: URL, validation: URL) throws -> RunConfiguration {
        var overrides: [(key: String, value: String)] = [
            ("data.train", JSONText.quoted(train.path)), ("data.validation", JSONText.quoted(validation.path)),
            ("data.group_references", "true"), ("training.seed", "\(common.seed)"), ("training.threads", "\(common.threadCount)"),
        ]
        if common.quick {
            overrides += [("model.encoder_layers", "[64]"), ("model.decoder_hidden", "64"), ("model.source_embedding", "32"),
                          ("model.target_embedding", "32"), ("model.dropout", "0"), ("training.epochs", "6"), ("training.learning_rate", "0.005")]
        }
        if let epochs = common.epochs { overrides.append(("training.epochs", "\(epochs)")) }
        if let batchSize = common.batchSize { overrides.append(("training.batch_size", "\(batchSize)")) }
        if let hidden = common.hidden { overrides += [("model.encoder_layers", "[\(hidden)]"), ("model.decoder_hidden", "\(hidden)")] }
        if let learningRate = common.learningRate { overrides.append(("training.learning_rate", "\(learningRate)")) }
        if let every = common.checkpointEvery { overrides.append(("training.checkpoint_every", "\(every)")) }
        do {
            if let config { return try RunConfiguration.read(URL(fileURLWithPath: config), overrides: overrides) }
            return try RunConfiguration.parse(String(decoding: PackageResources.run_json, as: UTF8.self), file: "recipes/g2p/run.json", overrides: overrides)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
    }
}

/// The recipe's own configuration, for the defaults its help shows.
let ownConfiguration = (try? RunConfiguration.parse(String(decoding: PackageResources.run_json, as: UTF8.self))) ?? RunConfiguration()
RecipeDefaults.current = RecipeDefaults(epochs: ownConfiguration.training.epochs, batchSize: ownConfiguration.training.batch_size,
                                        hidden: ownConfiguration.model.decoder_hidden, learningRate: ownConfiguration.training.learning_rate)
G2P.main()
