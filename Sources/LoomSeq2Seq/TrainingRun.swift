import Foundation

/// Data of a run that cannot be used: no pairs, too few to hold some out.
public struct RunDataError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension SequenceRun {
    /// What a finished (or interrupted) run produced.
    public struct Outcome {
        public var model: SequenceTransformer
        public var trainer: Trainer<Float, SequenceExample, [SequenceExample]>
        /// The validation figures of the kept weights (nil when the run was interrupted).
        public var validation: EvaluationMetrics?
        public var interrupted: Bool
        public var seconds: Double
        /// The model file written (not written when interrupted).
        public var modelFile: URL
        public var trainPairs: Int, validationPairs: Int
        /// Whether this process wrote the model (every run but ranks 1... of a distributed one).
        public var primary: Bool
    }

    /// The training and validation pairs a configuration names; without a validation file,
    /// `data.validation_fraction` of the training pairs is held out (seeded).
    public static func readData(_ c: RunConfiguration, quiet: Bool = false) throws -> (train: [PairCorpus.Pair], validation: [PairCorpus.Pair]) {
        func read(_ path: String, _ target: String?) throws -> PairCorpus {
            let corpus = try target.map { try PairCorpus.readParallel(source: URL(fileURLWithPath: path), target: URL(fileURLWithPath: $0), skipBadLines: c.data.skip_bad_lines) }
                ?? PairCorpus.readTSV(URL(fileURLWithPath: path), audio: c.data.kind == "audio", skipBadLines: c.data.skip_bad_lines)
            if !corpus.skipped.isEmpty && !quiet {
                FileHandle.standardError.write(Data("warning: \(path): skipped \(corpus.skipped.count) malformed lines (first: \(corpus.skipped[0]))\n".utf8))
            }
            guard !corpus.pairs.isEmpty else { throw RunDataError("\(path): no pairs") }
            return corpus
        }
        guard let trainPath = c.data.train else { throw RunDataError("no training data: give data.train") }
        let train = try read(trainPath, c.data.train_target)
        if let validation = c.data.validation { return (train.pairs, try read(validation, c.data.validation_target).pairs) }
        guard c.data.validation_fraction > 0 else { return (train.pairs, []) }
        guard train.pairs.count >= 2 else { throw RunDataError("\(trainPath): 2 pairs or more are needed to hold some out for validation") }
        let (kept, held) = train.split(heldOut: c.data.validation_fraction, seed: c.training.seed)
        if !quiet { print("validation: \(held.count) of \(train.pairs.count) training pairs held out (data.validation_fraction \(c.data.validation_fraction), seed \(c.training.seed))") }
        return (kept, held)
    }

    /// The whole of `loom train`, for the CLI and for recipes that state a run configuration:
    /// reads the data, learns the vocabularies, builds the model, trains it (checkpoints, keep-best,
    /// early stopping), scores the kept weights on the validation pairs and saves the model as
    /// `output/modelName` with the configuration and `facts` in its metadata. The configuration
    /// is written to `output/run-config.json`. `shouldStop` ends the run with a checkpoint.
    public static func run(_ c: RunConfiguration, output: URL, modelName: String = "model.safetensors", resume: Bool = false,
                           resumeAnyway: Bool = false, facts: [String: String] = [:], communicator: (any Communicator)? = nil,
                           shouldStop: @escaping () -> Bool = { false }) throws -> Outcome {
        let primary = communicator?.isPrimary ?? true
        func say(_ text: String) { if primary { print(text) } }
        if primary { try UserFile.makeDirectory(output) }
        let (train, validation) = try readData(c, quiet: !primary)
        say("train: \(train.count) pairs, validation: \(validation.count) pairs" + (communicator.map { $0.size > 1 ? ", on \($0.size) ranks" : "" } ?? ""))
        let (sourceCodec, targetCodec) = try vocabularies(c, train: train)
        var design = try architecture(c, source: sourceCodec, target: targetCodec)
        let trainExamples = try examples(train, for: design, file: c.data.train ?? "", keepSamples: c.training.waveformAugment.isActive)
        if sourceCodec == nil && c.model.feature_normalization == "global" {
            // Global normalization takes the statistics of the training features just read.
            let statistics = SequenceTransformerConfiguration.FeatureStatistics.of(trainExamples.map { ($0.features, $0.frames) },
                                                                                    features: features(c).featureCount)
            design = try architecture(c, source: sourceCodec, target: targetCodec, statistics: statistics)
        }
        let model = try SequenceTransformer(design, using: RandomSource(seed: c.training.seed))
        var validationExamples = try examples(validation, for: model, file: c.data.validation ?? c.data.train ?? "")
        if c.data.group_references {
            validationExamples = groupedBySource(validationExamples)
            say("validation: \(validationExamples.count) distinct sources (data.group_references: an output is right when it equals any of their targets)")
        }
        say("model: \(model.parameterCount) parameters; source \(sourceCodec.map { "vocabulary \($0.size)" } ?? "audio"), target vocabulary \(targetCodec.size)")
        if primary { try AtomicFile.write(Data((c.json + "\n").utf8), to: output.appendingPathComponent("run-config.json")) }
        let start = Date()
        let trainer = try self.train(model, configuration: c, train: trainExamples, validation: validationExamples, output: output,
                                     resume: resume, resumeAnyway: resumeAnyway, communicator: communicator, shouldStop: shouldStop)
        let modelFile = output.appendingPathComponent(modelName)
        // Interrupted on any rank: interrupted on all (they stopped at the same step).
        var interrupted = [shouldStop() ? 1.0 : 0]
        if let communicator, communicator.size > 1 { try communicator.allReduceMaximum(&interrupted) }
        var outcome = Outcome(model: model, trainer: trainer, validation: nil, interrupted: interrupted[0] > 0, seconds: Date().timeIntervalSince(start),
                              modelFile: modelFile, trainPairs: train.count, validationPairs: validation.count, primary: primary)
        guard !outcome.interrupted, primary else { return outcome }
        let metrics = try evaluate(validationExamples, model, options: DecodingOptions(maximumLength: c.training.max_output_length)).metrics
        outcome.validation = metrics
        var metadata = facts
        metadata["configuration"] = c.json
        metadata["epochs"] = "\(trainer.epoch)"
        metadata["steps"] = "\(trainer.globalStep)"
        metadata["validation_exact_match"] = "\(metrics.exact_match)"
        metadata["validation_bleu"] = "\(metrics.bleu)"
        try model.fitOutputLengthBound(trainExamples)
        try model.save(to: modelFile, training: metadata)
        return outcome
    }
}
