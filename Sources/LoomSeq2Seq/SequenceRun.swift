import Foundation

/// Corpus-level figures of a model's outputs against references.
public struct EvaluationMetrics: Codable, Equatable, Sendable {
    public var examples: Int
    /// Share of outputs equal to their reference.
    public var exact_match: Double
    public var character_error_rate: Double
    /// Over whitespace-separated tokens.
    public var word_error_rate: Double
    /// Corpus BLEU, 0-100 (sacreBLEU's defaults: 13a tokens, exp smoothing).
    public var bleu: Double
    /// Sources holding a symbol the source vocabulary does not know (encoded as unknown).
    public var sources_with_unknown_symbols: Int
    /// Outputs cut short, by why they stopped (`max_length`, `length_limit`, `repetition`;
    /// outputs that ended with end-of-sequence are not counted). nil when not counted.
    public var outputs_stopped_early: [String: Int]?

    public init(hypotheses: [String], references: [String], unknownSources: Int = 0) {
        self.init(hypotheses: hypotheses, referenceSets: references.map { [$0] }, unknownSources: unknownSources)
    }

    /// Against one or more accepted references per output: an output is an exact match when it
    /// equals any of them, error rates count the edits to the closest one, BLEU credits n-grams
    /// found in any (as sacreBLEU with several reference streams).
    public init(hypotheses: [String], referenceSets: [[String]], unknownSources: Int = 0) {
        examples = referenceSets.count
        exact_match = referenceSets.isEmpty ? 0 : Double(zip(hypotheses, referenceSets).filter { $1.contains($0) }.count) / Double(referenceSets.count)
        character_error_rate = ErrorRate.characters(hypotheses: hypotheses, referenceSets: referenceSets)
        word_error_rate = ErrorRate.words(hypotheses: hypotheses, referenceSets: referenceSets)
        bleu = BLEU.corpus(hypotheses: hypotheses, referenceSets: referenceSets).score
        sources_with_unknown_symbols = unknownSources
    }
}

/// One example of a run: a text source or audio features, and the target text.
public struct SequenceExample: Sendable {
    public var text: String?
    public var features: [Float]
    public var frames: Int
    public var target: String
    public var line: Int
    /// Every target accepted for this source: `target`, and with grouped references the targets
    /// of the other pairs with the same source.
    public var references: [String]
    /// Audio only, kept for waveform augmentation: the samples at the front end's rate.
    public var samples: [Float] = []

    public init(text: String?, features: [Float], frames: Int, target: String, line: Int) {
        (self.text, self.features, self.frames, self.target, self.line) = (text, features, frames, target, line)
        references = [target]
    }

    /// How long the source is (for bucketing).
    public var length: Int { text?.count ?? frames }
}

/// The one training path of `loom train` (and of recipes that state a `RunConfiguration`):
/// vocabularies from the training side, the architecture from the configuration, a `Trainer`
/// with checkpoints, validation metrics, keep-best and early stopping on the chosen metric.
public enum SequenceRun {
    /// Vocabularies learned from the training pairs (text sources, and the target side). Symbols
    /// unseen in training map to the unknown symbol.
    public static func vocabularies(_ c: RunConfiguration, train: [PairCorpus.Pair]) throws -> (source: TextCodec?, target: TextCodec) {
        func codec(_ kind: String, _ texts: [String]) throws -> TextCodec {
            switch kind {
            case "words":
                return .words(try WordTokenizer(learningFrom: texts, lowercase: c.vocabulary.lowercase, maximumSize: c.vocabulary.maximum_size,
                                                minimumCount: c.vocabulary.minimum_count))
            case "pieces":
                return .pieces(try SentencePieceCodec(learningFrom: c.vocabulary.lowercase ? texts.map { $0.lowercased() } : texts,
                                                      size: c.vocabulary.pieces_size, type: c.vocabulary.pieces_type == "bpe" ? .bpe : .unigram))
            default:
                return .characters(try CharacterEncoder(learningFrom: texts, ignoreCase: c.vocabulary.lowercase, unknown: .symbol))
            }
        }
        if c.vocabulary.shared {
            let both = try codec(c.vocabulary.target, train.map(\.source) + train.map(\.target))
            return (both, both)
        }
        let source = c.data.kind == "text" ? try codec(c.vocabulary.source, train.map(\.source)) : nil
        return (source, try codec(c.vocabulary.target, train.map(\.target)))
    }

    /// The audio front end of a configuration.
    public static func features(_ c: RunConfiguration) -> FeatureConfiguration {
        var f = FeatureConfiguration.preset(FeatureConfiguration.Preset(rawValue: c.model.features_preset) ?? .speech, kind: .mel)
        f.melBands = c.model.mels
        f.deltas = c.model.deltas > 0 ? c.model.deltas : nil
        return f
    }

    /// The architecture a configuration describes. With "global" feature normalization it needs
    /// the training set's `statistics`; without them the features are left as they are (a model
    /// to read the training features with, before the statistics exist).
    public static func architecture(_ c: RunConfiguration, source: TextCodec?, target: TextCodec,
                                    statistics: SequenceTransformerConfiguration.FeatureStatistics? = nil) throws -> SequenceTransformerConfiguration {
        let m = c.model
        let input: SequenceTransformerConfiguration.Source = source.map { .text($0, embeddingSize: m.source_embedding) }
            ?? .audio(features(c), frameStacking: m.frame_stacking)
        var a = SequenceTransformerConfiguration(
            source: input, encoderLayers: m.encoder_layers, encoderBidirectional: m.bidirectional ?? m.encoder_layers.map { _ in true },
            target: target, targetEmbeddingSize: m.target_embedding, decoderHidden: m.decoder_hidden, decoderLayers: m.decoder_layers,
            attention: m.attention == "none" ? nil : Attention<Float>.Score(rawValue: m.attention), inputFeeding: m.input_feeding, dropout: m.dropout)
        a.reverseSource = source != nil && m.reverse_source
        a.cell = m.cell == "gru" ? .gru : nil
        let p = m.recurrent_dropout
        switch m.recurrent_dropout_method {
        case "weights": a.recurrentDropout = RecurrentDropout(weights: p)
        case "input": a.recurrentDropout = RecurrentDropout(input: p)
        case "state": a.recurrentDropout = RecurrentDropout(state: p)
        case "state_update": a.recurrentDropout = RecurrentDropout(stateUpdate: p)
        default: a.recurrentDropout = nil
        }
        switch (source, m.feature_normalization, statistics) {
        case (nil, "utterance", _): a.featureNormalization = .utterance
        case let (nil, "global", statistics?): (a.featureNormalization, a.featureStatistics) = (.global, statistics)
        default: a.featureNormalization = nil
        }
        a.ctcWeight = m.ctc_weight > 0 ? m.ctc_weight : nil
        try a.validate()
        return a
    }

    /// Examples of pairs: text as is, audio read through the model's front end (a file that
    /// does not decode is an error naming it and its line).
    public static func examples(_ pairs: [PairCorpus.Pair], for model: SequenceTransformer, file: String) throws -> [SequenceExample] {
        try examples(pairs, for: model.configuration, file: file)
    }

    /// The same for a model not built yet, from its architecture.
    /// `keepSamples`: audio examples also keep their samples (for waveform augmentation).
    public static func examples(_ pairs: [PairCorpus.Pair], for architecture: SequenceTransformerConfiguration, file: String,
                                keepSamples: Bool = false) throws -> [SequenceExample] {
        switch architecture.source {
        case .text:
            return pairs.map { SequenceExample(text: $0.source, features: [], frames: 0, target: $0.target, line: $0.line) }
        case let .audio(front, _):
            let encoder = try AudioEncoder(configuration: front)
            return try pairs.map { pair in
                do {
                    let samples = keepSamples ? try encoder.samples(path: pair.source) : []
                    let f = keepSamples ? try encoder.features(samples: samples) : try encoder.features(path: pair.source)
                    guard f.frames > 0 else { throw AudioError.unsupported(path: pair.source, reason: "no frames") }
                    var example = SequenceExample(text: nil, features: f.values, frames: f.frames, target: pair.target, line: pair.line)
                    example.samples = samples
                    return example
                } catch {
                    throw CorpusLineError(file: file, line: pair.line, reason: "\(error)")
                }
            }
        }
    }

    /// The batch of sources of `examples`.
    public static func sources(_ examples: [SequenceExample], _ model: SequenceTransformer) throws -> SequenceTransformer.SourceBatch {
        if examples.first?.text != nil { return try model.sourceBatch(texts: examples.map { $0.text ?? "" }) }
        return try model.sourceBatch(features: examples.map { ($0.features, $0.frames) })
    }

    /// Decodes every example in batches; returns the best output of each, in order.
    public static func decode(_ examples: [SequenceExample], _ model: SequenceTransformer, options: DecodingOptions, batchSize: Int = 64) throws -> [String] {
        try decodeWithStops(examples, model, options: options, batchSize: batchSize).outputs
    }

    /// The best output of each example and how it stopped.
    public static func decodeWithStops(_ examples: [SequenceExample], _ model: SequenceTransformer, options: DecodingOptions,
                                       batchSize: Int = 64) throws -> (outputs: [String], stops: [StopReason]) {
        var out: [String] = [], stops: [StopReason] = []
        for start in stride(from: 0, to: examples.count, by: Swift.max(batchSize, 1)) {
            let batch = Array(examples[start..<Swift.min(start + batchSize, examples.count)])
            for hypotheses in try model.decode(sources(batch, model), options: options) {
                out.append(hypotheses.first?.text ?? "")
                stops.append(hypotheses.first?.hypothesis.stop ?? .end)
            }
        }
        return (out, stops)
    }

    /// Text examples with the same source merged into one test item: the first keeps its target
    /// and line and collects every target of that source as its references (in file order).
    /// Audio examples are kept as they are.
    public static func groupedBySource(_ examples: [SequenceExample]) -> [SequenceExample] {
        var index: [String: Int] = [:], out: [SequenceExample] = []
        for example in examples {
            guard let text = example.text else { out.append(example); continue }
            if let i = index[text] {
                if !out[i].references.contains(example.target) { out[i].references.append(example.target) }
            } else {
                index[text] = out.count
                out.append(example)
            }
        }
        return out
    }

    /// Decodes `examples` and scores the best outputs against their references.
    public static func evaluate(_ examples: [SequenceExample], _ model: SequenceTransformer, options: DecodingOptions,
                                batchSize: Int = 64) throws -> (outputs: [String], metrics: EvaluationMetrics) {
        let (outputs, stops) = try decodeWithStops(examples, model, options: options, batchSize: batchSize)
        var metrics = EvaluationMetrics(hypotheses: outputs, referenceSets: examples.map(\.references), unknownSources: unknownSources(examples, model))
        metrics.outputs_stopped_early = Dictionary(stops.filter { $0 != .end }.map { ($0.rawValue, 1) }, uniquingKeysWith: +)
        return (outputs, metrics)
    }

    /// How many text sources hold a symbol the model's source vocabulary maps to unknown.
    public static func unknownSources(_ examples: [SequenceExample], _ model: SequenceTransformer) -> Int {
        guard case let .text(codec, _) = model.configuration.source else { return 0 }
        let unknown: Int? = {
            switch codec {
            case let .characters(c): return c.unknownIndex
            case .words: return WordTokenizer.unknown
            case .pieces: return SentencePieceCodec.unknown
            }
        }()
        guard let unknown else { return 0 }
        return examples.filter { (try? codec.encode($0.text ?? ""))?.contains(unknown) ?? true }.count
    }

    /// Trains `model` on `train`, validating on `validation` each epoch; writes the run's log,
    /// plots and checkpoints under `output`. Returns the trainer (for its history and step count).
    public static func train(_ model: SequenceTransformer, configuration c: RunConfiguration, train: [SequenceExample],
                             validation: [SequenceExample], output: URL, resume: Bool, resumeAnyway: Bool,
                             communicator: (any Communicator)? = nil,
                             shouldStop: @escaping () -> Bool = { false }) throws -> Trainer<Float, SequenceExample, [SequenceExample]> {
        let t = c.training
        var options = TrainerOptions()
        options.batchSize = t.batch_size
        options.tokenBudget = t.batch_tokens
        options.order = t.order == "bucketed" ? .bucketed(buckets: 16) : .shuffled
        options.gradientClipNorm = t.gradient_clip
        options.seed = t.seed
        options.runDirectory = output
        options.checkpointDirectory = output.appendingPathComponent("checkpoints")
        options.checkpointEverySteps = t.checkpoint_every
        options.checkpointOnStop = true
        options.resumeAnyway = resumeAnyway
        options.communicator = communicator
        // Keep-best and early stopping on the chosen metric (kept in checkpoints, so a resumed run chooses as an uninterrupted one).
        options.restoreBestWeights = true
        options.earlyStoppingPatience = t.patience
        options.averageDecay = t.weight_average_decay
        let metric = t.metric
        options.selectionScore = { record in
            switch metric {
            case "loss": return record.validationLoss.map { -$0 }
            case "character_error_rate": return record.validationMetrics["character_error_rate"].map { -$0 }
            default: return record.validationMetrics["exact_match"]
            }
        }
        options.runIdentity = ["configuration": fingerprint(c)]
        let batches = (train.count + t.batch_size - 1) / t.batch_size
        let total = t.max_steps ?? t.epochs * batches
        let peak = t.learning_rate, warmup = t.warmup_steps
        let schedule = c.training.schedule
        options.schedule = FunctionSchedule { step in
            if step < warmup { return peak * Double(step + 1) / Double(warmup) }
            guard schedule == "cosine" else { return peak }
            let progress = Swift.min(Double(step - warmup) / Double(Swift.max(total - warmup, 1)), 1)
            return peak / 30 + (peak - peak / 30) * 0.5 * (1 + Foundation.cos(Double.pi * progress))
        }
        let decoding = DecodingOptions(maximumLength: t.max_output_length)
        let augment = (SpecAugment.named[t.spec_augment] ?? nil)?.withTimeWarp(t.time_warp)
        var waveform = t.waveformAugment
        if let list = t.noise_files, case let .audio(f, _) = model.configuration.source {
            waveform.noises = try WaveformAugment.readNoises(list: URL(fileURLWithPath: list), sampleRate: f.sampleRate)
        }
        if waveform.reverberation > 0, case let .audio(f, _) = model.configuration.source {
            waveform.rooms = RoomReverberation.bank(count: RoomReverberation.bankSize, sampleRate: f.sampleRate, seed: t.seed)
        }
        let front: AudioEncoder? = try {
            guard case let .audio(f, _) = model.configuration.source, waveform.isActive else { return nil }
            return try AudioEncoder(configuration: f)
        }()
        let trainer = Trainer<Float, SequenceExample, [SequenceExample]>(
            parameters: model.parameters, optimizer: Adam<Float>(learningRate: peak, weightDecay: t.weight_decay, decoupledWeightDecay: true), options: options,
            randomSource: model.randomSource,
            length: { $0.length }, collate: { $0 },
            loss: { batch in
                var batch = batch
                // New waveforms (speed, noise, gain) and their features for each training example.
                if let front, LearningPhase.current == .training {
                    batch = try model.randomSource.withGenerator { generator in
                        try batch.map { example in
                            var variant = example
                            let samples = try waveform.apply(to: example.samples, sampleRate: front.configuration.sampleRate, using: &generator)
                            (variant.features, variant.frames) = try front.features(samples: samples)
                            return variant
                        }
                    }
                }
                let masked = SpecAugment.masking(batch, policy: augment, training: LearningPhase.current == .training, source: model.randomSource,
                                                 features: \.features, frames: \.frames)
                return try model.loss(sources: sources(masked, model), targets: batch.map(\.target), labelSmoothing: t.label_smoothing)
            },
            metrics: { batch in
                let decoded = try model.decode(sources(batch, model), options: decoding).map { $0.first?.text ?? "" }
                let references = batch.map(\.references)
                return ["exact_match": Double(zip(decoded, references).filter { $1.contains($0) }.count) / Double(batch.count),
                        "character_error_rate": ErrorRate.characters(hypotheses: decoded, referenceSets: references)]
            })
        // The loss is a mean over target tokens (each target and its end symbol): distributed
        // ranks weight their gradients by their share of the batch's tokens.
        trainer.exampleWeight = { model.lossWeight(target: $0.target) }
        let primary = communicator?.isPrimary ?? true
        if resume || resumeAnyway {
            if let url = try trainer.resume(), primary {
                print("resumed from \(url.lastPathComponent) at step \(trainer.globalStep), epoch \(trainer.epoch)")
            } else if primary {
                print("no checkpoint yet in \(options.checkpointDirectory?.path ?? "?"); starting from the beginning")
            }
        }
        let start = Date()
        trainer.shouldStop = {
            shouldStop() || (t.max_steps.map { trainer.globalStep >= $0 } ?? false)
                || (t.time_budget_seconds.map { Date().timeIntervalSince(start) >= $0 } ?? false)
        }
        try trainer.fit(train: train, validation: validation.isEmpty ? nil : validation, epochs: t.epochs)
        return trainer
    }

    /// A stable fingerprint of what must not change across a resume: the data, vocabulary and
    /// model sections (training settings such as epochs may).
    public static func fingerprint(_ c: RunConfiguration) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let text = [try? encoder.encode(c.data), try? encoder.encode(c.vocabulary), try? encoder.encode(c.model)]
            .map { $0.map { String(decoding: $0, as: UTF8.self) } ?? "" }.joined(separator: "|")
        return String(FNV1a.hash(text), radix: 16)
    }
}

/// A learning-rate schedule given as a function of the step.
public struct FunctionSchedule: LearningRateSchedule {
    let rate: @Sendable (Int) -> Double
    public init(_ rate: @escaping @Sendable (Int) -> Double) { self.rate = rate }
    public func learningRate(atStep step: Int) -> Double { rate(step) }
}
