import Foundation

/// A wrong key or value in a run configuration, named by its key path and, when it can be
/// found, the line of the file.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var key: String
    public var line: Int?
    public var reason: String
    public var description: String { "\(file)\(line.map { " line \($0)" } ?? ""): \(key): \(reason)" }
}

/// Everything `loom train` needs to know, as a JSON file with four sections; every key has a
/// default, so `{}` is a valid configuration. Keys are checked strictly: an unknown key, a value
/// of the wrong type or out of its range is an error naming the key and its line.
///
/// ```json
/// {"data": {"train": "pairs.tsv", "validation_fraction": 0.1},
///  "model": {"encoder_layers": [128], "bidirectional": [true], "decoder_hidden": 128, "attention": "general"},
///  "training": {"epochs": 20, "batch_size": 64, "learning_rate": 0.003}}
/// ```
public struct RunConfiguration: Codable, Equatable, Sendable {
    /// Where the pairs come from, and how they are read.
    public struct Data: Codable, Equatable, Sendable {
        /// A TSV of `source<TAB>target` (text), a manifest of `audio<TAB>transcript` (audio), or
        /// with `train_target` the source side of two line-aligned files.
        public var train: String?
        public var train_target: String?
        public var validation: String?
        public var validation_target: String?
        /// The share of the training pairs held out for validation when no validation file is given.
        public var validation_fraction: Double = 0.1
        /// "text" or "audio".
        public var kind: String = "text"
        public var skip_bad_lines: Bool = false
        /// Pairs with the same source are one validation item, right when the output equals any
        /// of their targets (pronunciation variants, several translations of one sentence).
        public var group_references: Bool = false
    }

    /// How text becomes indices on each side.
    public struct Vocabulary: Codable, Equatable, Sendable {
        /// "characters", "words" or "pieces" (SentencePiece subwords, trained on the training side), for each side.
        public var source: String = "characters"
        public var target: String = "characters"
        /// SentencePiece: "unigram" or "bpe", and the vocabulary size asked for.
        public var pieces_type: String = "unigram"
        public var pieces_size: Int = 1000
        /// One vocabulary for both sides, learned from both (text sources of the same kind only).
        public var shared: Bool = false
        public var lowercase: Bool = false
        /// Words: keep those seen at least this often, at most `maximum_size` of them.
        public var minimum_count: Int = 1
        public var maximum_size: Int?
    }

    /// The SequenceTransformer's architecture (and, for audio, its front end).
    public struct Model: Codable, Equatable, Sendable {
        /// "lstm" or "gru", for the encoder and the decoder.
        public var cell: String = "lstm"
        public var encoder_layers: [Int] = [128]
        public var bidirectional: [Bool]?
        public var decoder_hidden: Int = 128
        public var decoder_layers: Int = 1
        /// "dot", "general", "additive" or "none".
        public var attention: String = "general"
        public var input_feeding: Bool = false
        public var source_embedding: Int = 32
        public var target_embedding: Int = 32
        public var reverse_source: Bool = false
        /// On embeddings, between layers and on the attentional vector, in training only.
        public var dropout: Double = 0
        /// Recurrent dropout of the encoder layers: "none", "weights" (DropConnect on the
        /// recurrent weights), "input", "state" or "state_update", with its probability.
        public var recurrent_dropout_method: String = "none"
        public var recurrent_dropout: Double = 0
        /// Audio: the front end ("speech", "librosa", "torchaudio", "wolfram" preset), mel bands,
        /// frames stacked per encoder step, "utterance" normalization, "global" (by the training
        /// set's statistics, stored in the model file) or "none".
        public var features_preset: String = "speech"
        public var mels: Int = 40
        public var frame_stacking: Int = 4
        public var feature_normalization: String = "utterance"
        /// Time derivatives appended to each frame: 0 none, 1 deltas, 2 deltas and delta-deltas.
        public var deltas: Int = 0
        /// Joint CTC/attention training: the weight of a CTC loss on the encoder outputs (0: none;
        /// see `SequenceTransformerConfiguration.ctcWeight`).
        public var ctc_weight: Double = 0
    }

    /// How long and how the model trains, and what picks the kept weights.
    public struct Training: Codable, Equatable, Sendable {
        public var epochs: Int = 20
        /// Stop after this many steps in all (a checkpoint is written there).
        public var max_steps: Int?
        /// Stop at the end of the step that crosses this wall time (a checkpoint is written there).
        public var time_budget_seconds: Double?
        public var batch_size: Int = 64
        /// Batches of at most this many padded positions instead of `batch_size` examples.
        public var batch_tokens: Int?
        /// "shuffled" or "bucketed".
        public var order: String = "shuffled"
        public var learning_rate: Double = 3e-3
        /// "cosine" (to `learning_rate` / 30 at the end) or "constant"; after `warmup_steps` of linear warm-up.
        public var schedule: String = "cosine"
        public var warmup_steps: Int = 0
        public var gradient_clip: Double? = 5
        public var label_smoothing: Double = 0
        /// Decoupled weight decay (AdamW, Loshchilov & Hutter 2019): each step also shrinks every
        /// weight by learning rate x this. 0: plain Adam.
        public var weight_decay: Double = 0
        /// Validate and keep an exponential moving average of the weights with this decay per
        /// step (e.g. 0.999; see `TrainerOptions.averageDecay`); nil: the last step's weights.
        public var weight_average_decay: Double?
        /// SpecAugment's masks on audio features during training: "none", "lb" or "ld" (the
        /// paper's LibriSpeech policies, frequency widths scaled to the feature count; see
        /// `SpecAugment`). Each step draws new masks from the run's seeded source.
        public var spec_augment: String = "none"
        /// SpecAugment's time warping W in frames (the paper's 80 is for long utterances; 0: none).
        public var time_warp: Int = 0
        /// Waveform augmentation of audio in training (`WaveformAugment`), drawn afresh for each
        /// utterance every time from the run's seeded source: speed perturbation at 0.9, 1.0 and
        /// 1.1; white noise at an SNR in [low, high] dB; a gain in [-gain_db, gain_db] dB.
        public var speed_perturbation: Bool = false
        public var noise_snr: [Double]?
        public var gain_db: Double?
        /// Conditions a microphone brings (see `WaveformAugment`): colours of the generated
        /// noise ("white", "pink", "brown"), seconds of silence [low, high] before and after,
        /// the probability of the telephone channel (8 kHz, 300-3,400 Hz), the largest DC offset
        /// (fraction of the peak), the probability of clipping.
        public var noise_colors: [String]?
        /// A list of noise recordings (one audio path per line, relative to the list) mixed in at
        /// `noise_snr` instead of generated noise; unreadable or silent files are named.
        public var noise_files: String?
        public var silence_padding: [Double]?
        public var telephone: Double = 0
        /// The probability that a training utterance is heard in a room: one of the impulse
        /// responses of `RoomReverberation.bankSize` (64) shoebox rooms drawn from the run's seed.
        public var reverberation: Double = 0
        public var dc_offset: Double = 0
        public var clipping: Double = 0
        public var seed: UInt64 = 1
        /// Threads of Loom's team (default: `LOOM_THREADS`, else the cores the process may use).
        public var threads: Int?
        /// Validation metric that picks the kept weights and drives early stopping:
        /// "exact_match", "character_error_rate" or "loss".
        public var metric: String = "exact_match"
        public var patience: Int?
        public var checkpoint_every: Int?
        /// Longest output decoded in validation and by default at decode time.
        public var max_output_length: Int = 100
    }

    public var data = Data()
    public var vocabulary = Vocabulary()
    public var model = Model()
    public var training = Training()

    public init() {}

    // MARK: - Reading

    /// Reads a configuration file, applies `overrides` (`section.key` -> JSON value text, e.g.
    /// `training.epochs` -> `3`), and checks it.
    public static func read(_ url: URL, overrides: [(key: String, value: String)] = []) throws -> RunConfiguration {
        let text = String(decoding: try UserFile.read(url.path, what: "configuration", limit: 16 << 20), as: UTF8.self)
        return try parse(text, file: url.path, overrides: overrides)
    }

    /// Parses configuration text (`file` names it in errors).
    public static func parse(_ text: String, file: String = "configuration", overrides: [(key: String, value: String)] = []) throws -> RunConfiguration {
        func fail(_ key: String, _ reason: String) -> ConfigurationError {
            ConfigurationError(file: file, key: key, line: line(of: key, in: text), reason: reason)
        }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: Foundation.Data(text.utf8)) } catch {
            throw ConfigurationError(file: file, key: "(file)", line: nil, reason: "not valid JSON: \((error as NSError).userInfo["NSDebugDescription"] ?? error)")
        }
        guard var object = parsed as? [String: Any] else { throw fail("(file)", "must be a JSON object of sections") }
        for (key, value) in overrides {
            let parts = key.split(separator: ".").map(String.init)
            guard parts.count == 2 else { throw fail(key, "an override names section.key, e.g. training.epochs") }
            let parsedValue = (try? JSONSerialization.jsonObject(with: Foundation.Data(value.utf8), options: [.fragmentsAllowed])) ?? value
            var section = object[parts[0]] as? [String: Any] ?? [:]
            section[parts[1]] = parsedValue
            object[parts[0]] = section
        }
        // Unknown keys: every key must be one the defaults write.
        let known = try JSONSerialization.jsonObject(with: JSONEncoder().encode(RunConfiguration.defaultsWithEveryKey)) as? [String: Any] ?? [:]
        for (section, value) in object {
            guard let knownSection = known[section] as? [String: Any] else { throw fail(section, "unknown section (known: \(known.keys.sorted().joined(separator: ", ")))") }
            guard let keys = value as? [String: Any] else { throw fail(section, "must be an object") }
            for key in keys.keys where knownSection[key] == nil {
                throw fail("\(section).\(key)", "unknown key (known in \(section): \(knownSection.keys.sorted().joined(separator: ", ")))")
            }
        }
        // Keys left out take their defaults: the given sections are laid over the defaults' JSON.
        var merged = try JSONSerialization.jsonObject(with: JSONEncoder().encode(RunConfiguration())) as? [String: Any] ?? [:]
        for (section, value) in object {
            var base = merged[section] as? [String: Any] ?? [:]
            for (key, v) in value as? [String: Any] ?? [:] { base[key] = v is NSNull ? nil : v }
            merged[section] = base
        }
        let configuration: RunConfiguration
        do {
            configuration = try JSONDecoder().decode(RunConfiguration.self, from: JSONSerialization.data(withJSONObject: merged))
        } catch let DecodingError.typeMismatch(type, context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw fail(key, "expected \(type == Double.self ? "a number" : type == Int.self ? "an integer" : type == Bool.self ? "true or false" : type == String.self ? "a string" : "\(type)")")
        } catch let DecodingError.dataCorrupted(context) {
            let key = context.codingPath.map(\.stringValue).joined(separator: ".")
            throw fail(key, context.debugDescription)
        } catch let DecodingError.valueNotFound(_, context) {
            throw fail(context.codingPath.map(\.stringValue).joined(separator: "."), "must not be null")
        }
        try configuration.validate { key, reason in fail(key, reason) }
        return configuration
    }

    /// Defaults with every optional key present, for the list of known keys.
    static var defaultsWithEveryKey: RunConfiguration {
        var c = RunConfiguration()
        (c.data.train, c.data.train_target, c.data.validation, c.data.validation_target) = ("", "", "", "")
        c.vocabulary.maximum_size = 0
        c.model.bidirectional = []
        (c.training.max_steps, c.training.time_budget_seconds, c.training.batch_tokens) = (0, 0, 0)
        (c.training.patience, c.training.checkpoint_every, c.training.threads) = (0, 0, 0)
        (c.training.noise_snr, c.training.gain_db, c.training.weight_average_decay) = ([], 0, 0)
        (c.training.noise_colors, c.training.silence_padding, c.training.noise_files) = ([], [], "")
        return c
    }

    /// The first line where `key`'s last component appears as a JSON key.
    static func line(of key: String, in text: String) -> Int? {
        guard let last = key.split(separator: ".").last else { return nil }
        for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where line.contains("\"\(last)\"") {
            return i + 1
        }
        return nil
    }

    /// Ranges and choices of every value.
    func validate(_ fail: (String, String) -> ConfigurationError) throws {
        func range<T: Comparable>(_ key: String, _ value: T, _ r: ClosedRange<T>) throws {
            guard r.contains(value) else { throw fail(key, "must be in \(r.lowerBound)...\(r.upperBound), got \(value)") }
        }
        func choice(_ key: String, _ value: String, _ options: [String]) throws {
            guard options.contains(value) else { throw fail(key, "must be one of \(options.joined(separator: ", ")), got \"\(value)\"") }
        }
        try range("data.validation_fraction", data.validation_fraction, 0...0.5)
        try choice("data.kind", data.kind, ["text", "audio"])
        try choice("vocabulary.source", vocabulary.source, ["characters", "words", "pieces"])
        try choice("vocabulary.target", vocabulary.target, ["characters", "words", "pieces"])
        try choice("vocabulary.pieces_type", vocabulary.pieces_type, ["unigram", "bpe"])
        if vocabulary.shared && (data.kind == "audio" || vocabulary.source != vocabulary.target) {
            throw fail("vocabulary.shared", "needs text sources and the same kind on both sides (source \"\(vocabulary.source)\", target \"\(vocabulary.target)\")")
        }
        try range("vocabulary.pieces_size", vocabulary.pieces_size, 5...1_000_000)
        try range("vocabulary.minimum_count", vocabulary.minimum_count, 1...1_000_000)
        if let m = vocabulary.maximum_size { try range("vocabulary.maximum_size", m, 1...10_000_000) }
        try choice("model.cell", model.cell, ["lstm", "gru"])
        guard !model.encoder_layers.isEmpty else { throw fail("model.encoder_layers", "needs at least one layer") }
        for h in model.encoder_layers { try range("model.encoder_layers", h, 1...4096) }
        if let b = model.bidirectional, b.count != model.encoder_layers.count {
            throw fail("model.bidirectional", "\(b.count) values for \(model.encoder_layers.count) encoder layers")
        }
        try range("model.decoder_hidden", model.decoder_hidden, 1...4096)
        try range("model.decoder_layers", model.decoder_layers, 1...16)
        try choice("model.attention", model.attention, ["dot", "general", "additive", "none"])
        if model.input_feeding && model.attention == "none" { throw fail("model.input_feeding", "needs attention") }
        try range("model.ctc_weight", model.ctc_weight, 0...0.99)
        try range("model.deltas", model.deltas, 0...2)
        try range("model.source_embedding", model.source_embedding, 1...4096)
        try range("model.target_embedding", model.target_embedding, 1...4096)
        try range("model.dropout", model.dropout, 0...0.9)
        try choice("model.recurrent_dropout_method", model.recurrent_dropout_method, ["none", "weights", "input", "state", "state_update"])
        try range("model.recurrent_dropout", model.recurrent_dropout, 0...0.9)
        try choice("model.features_preset", model.features_preset, FeatureConfiguration.Preset.allCases.map(\.rawValue))
        try range("model.mels", model.mels, 1...512)
        try range("model.frame_stacking", model.frame_stacking, 1...16)
        try choice("model.feature_normalization", model.feature_normalization, ["utterance", "global", "none"])
        try range("training.epochs", training.epochs, 1...100_000)
        if let s = training.max_steps { try range("training.max_steps", s, 1...Int.max) }
        if let t = training.time_budget_seconds { try range("training.time_budget_seconds", t, 1...1e9) }
        try range("training.batch_size", training.batch_size, 1...65_536)
        if let t = training.batch_tokens { try range("training.batch_tokens", t, 1...100_000_000) }
        try choice("training.order", training.order, ["shuffled", "bucketed"])
        try range("training.learning_rate", training.learning_rate, 1e-9...10)
        try choice("training.schedule", training.schedule, ["cosine", "constant"])
        try range("training.warmup_steps", training.warmup_steps, 0...10_000_000)
        if let c = training.gradient_clip { try range("training.gradient_clip", c, 1e-6...1e6) }
        try range("training.label_smoothing", training.label_smoothing, 0...0.5)
        try range("training.weight_decay", training.weight_decay, 0...1)
        if let decay = training.weight_average_decay, !(decay > 0 && decay < 1) {
            throw fail("training.weight_average_decay", "must be in (0, 1) (e.g. 0.999), got \(decay)")
        }
        try choice("training.spec_augment", training.spec_augment, ["none", "lb", "ld"])
        try range("training.time_warp", training.time_warp, 0...10_000)
        if training.time_warp > 0 && training.spec_augment == "none" {
            throw fail("training.time_warp", "is part of SpecAugment: set training.spec_augment too")
        }
        if training.spec_augment != "none" && data.kind != "audio" {
            throw fail("training.spec_augment", "masks audio features; data.kind is \"\(data.kind)\"")
        }
        if let snr = training.noise_snr {
            guard snr.count == 2, snr.allSatisfy(\.isFinite), snr[0] <= snr[1] else {
                throw fail("training.noise_snr", "must be [low, high] in dB with low <= high, got \(snr)")
            }
        }
        if let g = training.gain_db { try range("training.gain_db", g, 0...40) }
        if let colors = training.noise_colors {
            for c in colors { try choice("training.noise_colors", c, WaveformAugment.NoiseColor.allCases.map(\.rawValue)) }
            guard !colors.isEmpty else { throw fail("training.noise_colors", "must name at least one colour") }
        }
        if let pad = training.silence_padding {
            guard pad.count == 2, pad.allSatisfy(\.isFinite), 0 <= pad[0], pad[0] <= pad[1], pad[1] <= 10 else {
                throw fail("training.silence_padding", "must be [low, high] seconds with 0 <= low <= high <= 10, got \(pad)")
            }
        }
        if training.noise_files != nil && training.noise_snr == nil {
            throw fail("training.noise_files", "needs training.noise_snr, the range of SNRs to mix the recordings at")
        }
        try range("training.telephone", training.telephone, 0...1)
        try range("training.reverberation", training.reverberation, 0...1)
        try range("training.dc_offset", training.dc_offset, 0...1)
        try range("training.clipping", training.clipping, 0...1)
        if training.waveformAugment.isActive && data.kind != "audio" {
            throw fail("training.speed_perturbation", "speed, noise, gain and the channel change audio; data.kind is \"\(data.kind)\"")
        }
        if let t = training.threads { try range("training.threads", t, 1...256) }
        try choice("training.metric", training.metric, ["exact_match", "character_error_rate", "loss"])
        if let p = training.patience { try range("training.patience", p, 1...10_000) }
        if let c = training.checkpoint_every { try range("training.checkpoint_every", c, 1...Int.max) }
        try range("training.max_output_length", training.max_output_length, 1...DecodingOptions.maximumOutputLength)
    }

    /// The configuration as the JSON text written into the run directory and the model file.
    public var json: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

extension RunConfiguration.Training {
    /// The waveform augmentation these settings ask for (inactive by default).
    public var waveformAugment: WaveformAugment {
        var augment = WaveformAugment(speeds: speed_perturbation ? WaveformAugment.kaldiSpeeds : [1], gainDecibels: gain_db.map { -$0...$0 },
                                      noiseSNR: noise_snr.flatMap { $0.count == 2 && $0[0] <= $0[1] ? $0[0]...$0[1] : nil })
        augment.noiseColors = noise_colors?.compactMap(WaveformAugment.NoiseColor.init(rawValue:)) ?? [.white]
        if augment.noiseColors.isEmpty { augment.noiseColors = [.white] }
        augment.padding = silence_padding.flatMap { $0.count == 2 && $0[0] <= $0[1] ? $0[0]...$0[1] : nil }
        (augment.telephone, augment.dcOffset, augment.clipping) = (telephone, dc_offset, clipping)
        augment.reverberation = reverberation
        return augment
    }
}
