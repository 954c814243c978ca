import ArgumentParser
import Foundation
import Loom
import LoomDistributed

/// `loom train`: a SequenceTransformer on your own pairs of text, or recordings and transcripts.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a sequence-to-sequence model on your own data, as a run configuration describes it.",
        discussion: """
            Data: a TSV of source<TAB>target lines (text), two line-aligned files (--train and --train-target), \\
            or a manifest of audio path<TAB>transcript lines (data.kind "audio"). The configuration is a JSON \\
            file of four sections (data, vocabulary, model, training; every key has a default); flags override \\
            single keys, and --set section.key=value any key. The configuration used is written to \\
            OUTPUT/run-config.json and into the model file. Writes OUTPUT/model.safetensors, metrics.jsonl, \\
            loss.svg, metrics.svg, report.json and checkpoints/; Ctrl-C stops with a checkpoint, --resume continues.
            """)

    @Option(help: "The run configuration (JSON).") var config: String?
    @Option(help: "Training pairs (overrides data.train).") var train: String?
    @Option(help: "The target side when the training pairs are two line-aligned files (data.train_target).") var trainTarget: String?
    @Option(help: "Validation pairs (data.validation; default: data.validation_fraction of the training pairs).") var validation: String?
    @Option(help: "Where the model, log, plots, report and checkpoints go.") var output: String = "runs/train"
    @Option(parsing: .unconditional, help: "Epochs (training.epochs).") var epochs: Int?
    @Option(parsing: .unconditional, help: "Examples per batch (training.batch_size).") var batchSize: Int?
    @Option(parsing: .unconditional, help: "Peak learning rate (training.learning_rate).") var learningRate: Double?
    @Option(parsing: .unconditional, help: "Seed (training.seed).") var seed: UInt64?
    @Option(parsing: .unconditional, help: "Threads (training.threads).") var threads: Int?
    @Option(parsing: .unconditional, help: "Checkpoint every this many steps (training.checkpoint_every).") var checkpointEvery: Int?
    @Option(name: .customLong("set"), help: "Override one key: section.key=value (value as JSON, or a string). Repeatable.") var sets: [String] = []
    @Flag(help: "Continue from the newest checkpoint in OUTPUT/checkpoints.") var resume = false
    @Flag(help: "Resume even if the checkpoint was written with other settings (reported).") var resumeAnyway = false
    @Flag(help: "Data-parallel training over the ranks `mpirun -np K` starts (one process without mpirun).") var distributed = false

    /// The flags as configuration overrides, then the --set ones.
    func overrides() throws -> [(key: String, value: String)] {
        func quoted(_ s: String) -> String { JSONText.quoted(s) }
        var out: [(String, String)] = []
        if let train { out.append(("data.train", quoted(train))) }
        if let trainTarget { out.append(("data.train_target", quoted(trainTarget))) }
        if let validation { out.append(("data.validation", quoted(validation))) }
        if let epochs { out.append(("training.epochs", "\(epochs)")) }
        if let batchSize { out.append(("training.batch_size", "\(batchSize)")) }
        if let learningRate { out.append(("training.learning_rate", "\(learningRate)")) }
        if let seed { out.append(("training.seed", "\(seed)")) }
        if let threads { out.append(("training.threads", "\(threads)")) }
        if let checkpointEvery { out.append(("training.checkpoint_every", "\(checkpointEvery)")) }
        for item in sets {
            guard let equals = item.firstIndex(of: "=") else { throw ValidationError("--set \(item): expected section.key=value") }
            out.append((String(item[..<equals]), String(item[item.index(after: equals)...])))
        }
        return out
    }

    /// The configuration with the flags applied; data paths in the file are relative to the
    /// file's folder, paths given as flags to the current directory.
    func loadConfiguration() throws -> RunConfiguration {
        do {
            guard let config else { return try RunConfiguration.parse("{}", file: "(flags)", overrides: overrides()) }
            let url = URL(fileURLWithPath: config)
            var c = try RunConfiguration.read(url, overrides: [])
            let folder = url.deletingLastPathComponent()
            func resolve(_ path: String?) -> String? {
                path.map { $0.hasPrefix("/") ? $0 : folder.appendingPathComponent($0).standardizedFileURL.path }
            }
            (c.data.train, c.data.train_target) = (resolve(c.data.train), resolve(c.data.train_target))
            (c.data.validation, c.data.validation_target) = (resolve(c.data.validation), resolve(c.data.validation_target))
            let flags = try overrides()
            guard !flags.isEmpty else { return c }
            return try RunConfiguration.parse(c.json, file: config, overrides: flags)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
    }

    func validate() throws {
        try validatingOptions { try OptionRange.path("--output", output) }
        if let config { try validatingOptions { try OptionRange.path("--config", config) } }
        let c = try loadConfiguration()
        guard c.data.train != nil else { throw ValidationError("no training data: give --train or data.train in the configuration") }
    }

    func run() throws {
        let c = try loadConfiguration()
        BLAS.selectOptimizedCoreAndRelaunchIfNeeded()
        if let threads = c.training.threads { BLAS.setThreadCount(threads) }
        let directory = URL(fileURLWithPath: output)
        let interruption = Interruption.install()
        defer { interruption.uninstall() }
        let communicator = try Distributed.communicator(requested: distributed)
        let outcome = try Distributed.guarded(communicator) {
            try SequenceRun.run(c, output: directory, resume: resume, resumeAnyway: resumeAnyway, communicator: communicator,
                                shouldStop: { interruption.requested })
        }
        let trainer = outcome.trainer
        // Rank 0 reports and writes; the other ranks are done.
        guard outcome.primary else { return }
        guard let metrics = outcome.validation else {
            print("\ninterrupted at step \(trainer.globalStep): checkpoint saved in \(directory.appendingPathComponent("checkpoints").path); "
                  + "run the same command with --resume to continue")
            throw ExitCode(130)
        }
        let rates = trainer.history.map(\.examplesPerSecond).filter(\.isFinite)
        let report: [String: Any] = [
            "task": "train", "epochs": trainer.epoch, "steps": trainer.globalStep, "wall_time_seconds": outcome.seconds,
            "training_examples_per_second": rates.isEmpty ? 0 : rates.reduce(0, +) / Double(rates.count),
            "train_examples": outcome.trainPairs, "validation_examples": outcome.validationPairs, "parameters": outcome.model.parameterCount,
            "model_file": outcome.modelFile.path, "validation": try JSONSerialization.jsonObject(with: JSONEncoder().encode(metrics)),
        ]
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
                             to: directory.appendingPathComponent("report.json"))
        print(String(format: "validation: exact match %.2f%%, CER %.2f%%, WER %.2f%%, BLEU %.2f (%d examples)", 100 * metrics.exact_match,
                     100 * metrics.character_error_rate, 100 * metrics.word_error_rate, metrics.bleu, metrics.examples))
        print("model: \(outcome.modelFile.path)")
    }
}

/// `loom evaluate`: a model's outputs on test pairs against their references.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Score a model on test pairs: exact match, character and word error rates, corpus BLEU.",
        discussion: """
            Test pairs as for `loom train`: a TSV of source<TAB>target, two line-aligned files (--test and \\
            --test-target), or a manifest of audio path<TAB>transcript for audio models. Prints the figures and \\
            writes OUTPUT/evaluation.json and OUTPUT/errors.tsv (line, source, reference, output of every wrong \\
            output; with --group-references the accepted references are separated by " | "). Sources with symbols the model never saw are encoded as unknown and counted.
            """)

    @Option(help: "The model file.") var model: String
    @Option(help: "Test pairs.") var test: String
    @Option(help: "The target side when the test pairs are two line-aligned files.") var testTarget: String?
    @Option(parsing: .unconditional, help: "Beam width, 1...\(DecodingOptions.maximumBeamWidth) (1: greedy).") var beam = 1
    @Option(parsing: .unconditional, help: "GNMT length penalty alpha, 0...10.") var lengthPenalty = 0.0
    @Option(parsing: .unconditional, help: "Maximum output length.") var maxLength = 100
    @Option(parsing: .unconditional, help: "Inputs decoded together, 1...4096.") var batchSize = 64
    @Flag(help: "Leave out malformed lines (counted) instead of stopping at the first.") var skipBadLines = false
    @Flag(help: "Pairs with the same source are one item, right when the output equals any of their targets (variants).")
    var groupReferences = false
    @Option(help: "Where evaluation.json and errors.tsv go (default: the model's folder).") var output: String?

    var options: DecodingOptions { DecodingOptions(maximumLength: maxLength, beamWidth: beam, lengthPenalty: lengthPenalty) }

    func validate() throws {
        try validatingOptions {
            try OptionRange.path("--model", model)
            try OptionRange.path("--test", test)
            try OptionRange.check("--beam", beam, in: 1...DecodingOptions.maximumBeamWidth)
            try OptionRange.check("--length-penalty", lengthPenalty, in: 0...10)
            try OptionRange.check("--max-length", maxLength, in: 1...DecodingOptions.maximumOutputLength)
            try OptionRange.check("--batch-size", batchSize, in: 1...4096)
            try options.validate()
        }
    }

    func run() throws {
        let modelURL = URL(fileURLWithPath: model)
        let (transformer, _) = try SequenceTransformer.load(from: modelURL)
        let isAudio: Bool = { if case .audio = transformer.configuration.source { return true } else { return false } }()
        let corpus = try testTarget.map { try PairCorpus.readParallel(source: URL(fileURLWithPath: test), target: URL(fileURLWithPath: $0), skipBadLines: skipBadLines) }
            ?? PairCorpus.readTSV(URL(fileURLWithPath: test), audio: isAudio, skipBadLines: skipBadLines)
        guard !corpus.pairs.isEmpty else { throw ValidationError("\(test): no pairs") }
        var examples = try SequenceRun.examples(corpus.pairs, for: transformer, file: test)
        if groupReferences { examples = SequenceRun.groupedBySource(examples) }
        let (decoded, metrics) = try SequenceRun.evaluate(examples, transformer, options: options, batchSize: batchSize)
        let directory = output.map { URL(fileURLWithPath: $0) } ?? modelURL.deletingLastPathComponent()
        try UserFile.makeDirectory(directory)
        var object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(metrics)) as? [String: Any] ?? [:]
        object["skipped_lines"] = corpus.skipped.count
        object["beam"] = beam
        object["model_file"] = modelURL.path
        object["test_file"] = test
        try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]),
                             to: directory.appendingPathComponent("evaluation.json"))
        var errors = "line\tsource\treference\toutput\n"
        let sourceOfLine = Dictionary(corpus.pairs.map { ($0.line, $0.source) }, uniquingKeysWith: { first, _ in first })
        for (example, output) in zip(examples, decoded) where !example.references.contains(output) {
            let source = sourceOfLine[example.line] ?? ""
            errors += "\(example.line)\t\(Decode.escaped(source))\t\(example.references.map(Decode.escaped).joined(separator: " | "))\t\(Decode.escaped(output))\n"
        }
        try AtomicFile.write(Data(errors.utf8), to: directory.appendingPathComponent("errors.tsv"))
        print(String(format: "%d examples: exact match %.2f%%, CER %.2f%%, WER %.2f%%, BLEU %.2f", metrics.examples, 100 * metrics.exact_match,
                     100 * metrics.character_error_rate, 100 * metrics.word_error_rate, metrics.bleu))
        if let cut = metrics.outputs_stopped_early, !cut.isEmpty {
            print("outputs stopped before end-of-sequence: " + cut.sorted { $0.key < $1.key }.map { "\($0.value) at \($0.key)" }.joined(separator: ", "))
        }
        if metrics.sources_with_unknown_symbols > 0 { print("\(metrics.sources_with_unknown_symbols) sources hold symbols unseen in training (encoded as unknown)") }
        if !corpus.skipped.isEmpty { print("\(corpus.skipped.count) malformed lines skipped (first: \(corpus.skipped[0]))") }
        print("wrote \(directory.appendingPathComponent("evaluation.json").path) and errors.tsv")
    }
}
