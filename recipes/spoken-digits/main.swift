// Speech to text: spoken digit sequences ("four one nine" -> "419") through log-mel features and a
// SequenceTransformer (bidirectional LSTM encoder over stacked frames, attention decoder).
// By default the corpus is synthesized with espeak-ng and flite (corpora/spoken-digits), the test
// split speaks with voices never heard in training and a third split with festival, a synthesizer
// never heard in training; --train-manifest/--test-manifest train on any
// recordings instead. Saves runs/spoken-digits/spoken-digits.safetensors for `loom decode`.
import ArgumentParser
import Foundation
import Loom
import RecipeSupport

struct SpokenDigits: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spoken-digits", abstract: "Transcribe spoken digit sequences: audio -> log-mel -> encoder-decoder -> \"419\".")

    @OptionGroup var common: RecipeOptions
    @Option(help: "A TSV manifest (audio path<TAB>transcript) to train on instead of the synthesized corpus.") var trainManifest: String?
    @Option(help: "The test manifest (default with --train-manifest: 10% of it, held out).") var testManifest: String?
    @Option(help: "Where the synthesized corpus goes (default: corpora/spoken-digits/seed-<seed>).") var corpus: String?
    @Option(help: "Synthesized training utterances.") var utterances = 12_000
    @Option(help: "Synthesized test utterances (voices never heard in training).") var testUtterances = 1_000
    @Option(help: "Longest digit sequence synthesized.") var maximumDigits = 7
    @Option(help: "Voice variants held out for the test split.") var heldOutVariants = 12
    @Option(help: "Synthesizers of the training and test utterances, comma-separated: espeak-ng, flite, festival (one voice of each but espeak-ng held out for the test; espeak-ng holds out --held-out-variants). Default espeak-ng,flite: measured, a second synthesizer took a never-heard one from 23.5% to 86.2% (Benchmarks/RESULTS.md).")
    var engines = "espeak-ng,flite"
    @Option(help: "Synthesizers never heard in training, comma-separated, for a third split spoken by all their voices, reported beside the held-out voices (none: no such split).")
    var unseenEngines = "festival"
    @Option(help: "Utterances of the unseen-synthesizer split.") var unseenUtterances = 600
    @Option(help: "Consecutive 10 ms frames concatenated per encoder step (time reduction).") var frameStacking = 4
    @Option(name: [.customLong("mels"), .customLong("mel-bands")], help: "Mel bands of the front end (as `loom encode-audio --mels`).") var melBands = 40
    @Option(help: "SpecAugment masks during training: none, lb or ld (LibriSpeech policies, widths scaled to the mel bands; default none, ld with --small-corpus).")
    var specAugment: String?
    @Option(help: "SpecAugment's time warping: W in 10 ms frames (0: none; the paper's 80 suits utterances of several seconds).") var timeWarp = 0
    @Flag(help: "The settings measured best for a few thousand recordings (Benchmarks/RESULTS.md, small-data protocol): SpecAugment LD, deltas and delta-deltas, 24 epochs; options given explicitly win.")
    var smallCorpus = false
    @Option(help: "Time derivatives appended to each frame: 0 none, 1 deltas, 2 deltas and delta-deltas (default 0; 2 with --small-corpus).")
    var deltas: Int?
    @Option(help: "Feature normalization: utterance (each recording by its own statistics) or global (the training set's, kept in the model file).")
    var normalization = "utterance"
    @Option(help: "Dropout on the features, between layers and on the attentional vector, in training only.") var dropout = 0.0
    @Option(help: "Label smoothing of the attention decoder's targets.") var labelSmoothing = 0.0
    @Option(help: "Decoupled weight decay (AdamW); 0: Adam.") var weightDecay = 0.0
    @Option(help: "Weight of a CTC loss on the encoder outputs beside the attention decoder's (joint CTC/attention; 0: none).")
    var ctcWeight = 0.0
    @Flag(help: "Speed perturbation in training: each utterance at 0.9, 1.0 or 1.1 times its speed, drawn afresh every time (Kaldi's factors).")
    var speedPerturbation = false
    @Option(help: "Additive white noise in training at an SNR drawn from this range in dB, \"LOW:HIGH\" or one value (default none).")
    var noiseSNR: String?
    @Option(help: "Gain in training drawn from -D...D dB (default none).") var gainDB: Double?
    @Option(help: "Colours of the training noise, comma-separated: white, pink, brown (one drawn per utterance; default white, all with --microphone).")
    var noiseColors: String?
    @Option(help: "A list of noise recordings (one audio path per line) mixed in instead of generated noise, at --noise-snr (default 5:20).") var noiseFiles: String?
    @Option(help: "Seconds of silence before and after each training utterance, \"LOW:HIGH\" (default none).") var silencePadding: String?
    @Option(help: "Probability that a training utterance passes through the telephone channel (8 kHz, 300-3,400 Hz; default 0).") var telephone: Double?
    @Option(help: "Largest DC offset added in training, a fraction of the peak (default 0).") var dcOffset: Double?
    @Option(help: "Probability that a training utterance is heard in a room (64 rooms by the image method, drawn from the seed; default 0).") var reverberation = 0.0
    @Option(help: "Probability that a training utterance is clipped (at 0.3-0.9 of its peak; default 0).") var clipping: Double?
    @Flag(help: "Conditions a microphone brings, in training: noise of every colour at 5-30 dB SNR, telephone channel half the time, gain ±10 dB, silence 0-0.3 s, DC offset up to 5%, clipping 10%, speed perturbation (options given explicitly win).")
    var microphone = false

    /// The SpecAugment policy's name: --spec-augment, else LD with --small-corpus, else none.
    var maskingName: String { specAugment ?? (smallCorpus ? "ld" : "none") }

    /// The waveform augmentation the options ask for (`--microphone`'s settings where an option is
    /// not given). Only with `loading` are the noise recordings read and the bank of rooms built;
    /// without, the settings are checked with one room.
    func waveformAugment(loading: Bool = true) throws -> WaveformAugment {
        var augment = WaveformAugment(speeds: speedPerturbation || microphone ? WaveformAugment.kaldiSpeeds : [1])
        augment.noiseSNR = try noiseSNR.map { try Self.range($0, option: "--noise-snr", unit: "dB", single: true) }
            ?? (microphone ? 5...30 : noiseFiles != nil ? 5...20 : nil)
        if let gainDB { guard gainDB >= 0, gainDB <= 40 else { throw ValidationError("--gain-db must be in 0...40, got \(gainDB)") } }
        augment.gainDecibels = gainDB.map { -$0...$0 } ?? (microphone ? -10...10 : nil)
        augment.padding = try silencePadding.map { try Self.range($0, option: "--silence-padding", unit: "seconds", single: false) }
            ?? (microphone ? 0...0.3 : nil)
        augment.noiseColors = try noiseColors.map { try Self.names($0, option: "--noise-colors") } ?? (microphone ? WaveformAugment.NoiseColor.allCases : [.white])
        augment.telephone = telephone ?? (microphone ? 0.5 : 0)
        augment.dcOffset = dcOffset ?? (microphone ? 0.05 : 0)
        augment.clipping = clipping ?? (microphone ? 0.1 : 0)
        augment.reverberation = reverberation
        if reverberation > 0 { augment.rooms = RoomReverberation.bank(count: loading ? RoomReverberation.bankSize : 1, sampleRate: 16_000, seed: common.seed) }
        if let noiseFiles, loading {
            do { augment.noises = try WaveformAugment.readNoises(list: URL(fileURLWithPath: noiseFiles), sampleRate: 16_000) } catch {
                throw ValidationError("--noise-files: \(error)")
            }
        }
        do { try augment.validate() } catch { throw ValidationError("waveform augmentation: \(error)") }
        return augment
    }

    /// "LOW:HIGH" (or, with `single`, one number) of an option, finite and in order.
    static func range(_ text: String, option: String, unit: String, single: Bool) throws -> ClosedRange<Double> {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard (single ? 1...2 : 2...2).contains(parts.count), let low = parts.first ?? nil, let high = parts.last ?? nil,
              low.isFinite, high.isFinite, low <= high else {
            throw ValidationError("\(option) must be \"LOW:HIGH\"\(single ? " or one number" : "") of \(unit), got \"\(text)\"")
        }
        return low...high
    }

    /// The values a comma-separated option names.
    static func names<E: CaseIterable & RawRepresentable>(_ text: String, option: String) throws -> [E] where E.RawValue == String {
        try text.split(separator: ",").map { name in
            guard let value = E(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(option): unknown value \"\(name)\"; known: \(E.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return value
        }
    }

    /// The engines a comma-separated option names ("none": no engine).
    static func engines(_ text: String, option: String) throws -> [SpokenDigitsCorpus.Engine] {
        text == "none" ? [] : try names(text, option: option)
    }

    func validate() throws {
        let trainEngines = try Self.engines(engines, option: "--engines"), unseen = try Self.engines(unseenEngines, option: "--unseen-engines")
        guard !trainEngines.isEmpty else { throw ValidationError("--engines names at least one synthesizer") }
        if let both = unseen.first(where: trainEngines.contains) { throw ValidationError("\(both.rawValue) is in --engines and --unseen-engines: an unseen synthesizer is one never heard in training") }
        guard unseenUtterances >= 0 else { throw ValidationError("--unseen-utterances must be at least 0") }
        if let deltas, !(0...2).contains(deltas) { throw ValidationError("--deltas must be 0, 1 or 2, got \(deltas)") }
        guard ["utterance", "global"].contains(normalization) else { throw ValidationError("--normalization must be utterance or global, got \"\(normalization)\"") }
        guard dropout >= 0 && dropout < 1 else { throw ValidationError("--dropout must be in [0, 1), got \(dropout)") }
        guard labelSmoothing >= 0 && labelSmoothing <= 0.5 else { throw ValidationError("--label-smoothing must be in [0, 0.5], got \(labelSmoothing)") }
        guard weightDecay >= 0 && weightDecay <= 1 else { throw ValidationError("--weight-decay must be in [0, 1], got \(weightDecay)") }
        guard ctcWeight >= 0 && ctcWeight < 1 else { throw ValidationError("--ctc-weight must be in [0, 1), got \(ctcWeight)") }
        _ = try waveformAugment(loading: false)
        guard (0...10_000).contains(timeWarp) else { throw ValidationError("--time-warp must be in 0...10000 frames, got \(timeWarp)") }
        if timeWarp > 0 && maskingName == "none" {
            throw ValidationError("--time-warp is part of SpecAugment: give --spec-augment lb or ld too")
        }
        if let specAugment, !SpecAugment.named.keys.contains(specAugment) {
            throw ValidationError("--spec-augment must be one of \(SpecAugment.named.keys.sorted().joined(separator: ", ")), got \"\(specAugment)\"")
        }
    }

    func run() throws {
        try common.configureThreads()
        let quick = common.quick
        let epochs = common.epochs ?? (smallCorpus ? 24 : RecipeDefaults.current.epochs)
        let masking = (SpecAugment.named[maskingName] ?? nil)?.withTimeWarp(timeWarp)
        let deltas = self.deltas ?? (smallCorpus ? 2 : 0)
        let hidden = common.hidden ?? (quick ? 64 : RecipeDefaults.current.hidden)
        let batchSize = common.batchSize ?? RecipeDefaults.current.batchSize
        let learningRate = common.learningRateOrDefault
        let directory = try common.outputDirectory("spoken-digits")
        let start = Date()

        // The corpus: manifests given, or synthesized (reused when already complete).
        var trainEntries: [AudioManifest.Entry], testEntries: [AudioManifest.Entry], unseenEntries: [AudioManifest.Entry] = []
        if let trainManifest {
            let all = try AudioManifest.read(URL(fileURLWithPath: trainManifest)).entries
            if let testManifest {
                (trainEntries, testEntries) = (all, try AudioManifest.read(URL(fileURLWithPath: testManifest)).entries)
            } else {
                (trainEntries, testEntries) = split(all, heldOut: 0.1, seed: common.seed)
            }
            print("spoken-digits: \(trainEntries.count) training and \(testEntries.count) test recordings from \(trainManifest)")
        } else {
            var p = SpokenDigitsCorpus.Parameters(seed: common.seed, trainUtterances: quick ? min(utterances, 800) : utterances,
                                                  testUtterances: quick ? min(testUtterances, 100) : testUtterances,
                                                  maximumDigits: quick ? min(maximumDigits, 3) : maximumDigits, heldOutVariants: heldOutVariants)
            if quick { p.signalToNoise = 20...30 }
            p.engines = try Self.engines(engines, option: "--engines")
            p.unseenEngines = try Self.engines(unseenEngines, option: "--unseen-engines")
            p.unseenUtterances = p.unseenEngines.isEmpty ? 0 : (quick ? min(unseenUtterances, 100) : unseenUtterances)
            let folder = URL(fileURLWithPath: corpus ?? "corpora/spoken-digits/seed-\(common.seed)" + (quick ? "-quick" : ""))
            let (trainURL, testURL, unseenURL) = try SpokenDigitsCorpus.generate(p, in: folder, threads: common.threadCount)
            trainEntries = try AudioManifest.read(trainURL).entries
            testEntries = try AudioManifest.read(testURL).entries
            unseenEntries = try unseenURL.map { try AudioManifest.read($0).entries } ?? []
            let voices = p.engines.map { engine in
                let (train, test) = SpokenDigitsCorpus.voiceSplit(p, engine)
                return "\(engine.rawValue): \(train.count) voices\(engine == .espeak ? " x \(SpokenDigitsCorpus.accents.count) accents" : ""), held out \(test.joined(separator: ", "))"
            }
            print("spoken-digits: \(trainEntries.count) training and \(testEntries.count) test utterances (\(voices.joined(separator: "; "))); "
                  + (unseenEntries.isEmpty ? "" : "\(unseenEntries.count) by unseen synthesizers \(p.unseenEngines.map(\.rawValue).joined(separator: ", ")); ")
                  + "corpus in \(folder.path)")
        }
        guard !trainEntries.isEmpty, !testEntries.isEmpty else { throw ValidationError("the training and test sets must both be non-empty") }

        // Features: 16 kHz log-mel, 25 ms windows every 10 ms, normalized in the model (--normalization).
        var front = FeatureConfiguration(kind: .mel, sampleRate: 16_000, fftLength: 400, hop: 160, melBands: melBands,
                                         maximumFrequency: 8000, log: .offset(1e-6))
        front.deltas = deltas > 0 ? deltas : nil
        let featureStart = Date()
        let waveform = try waveformAugment()
        // Augmented waveforms need the training samples kept, and their features made again.
        let train = try Utterance.load(trainEntries, configuration: front, threads: common.threadCount, keepSamples: waveform.isActive)
        let test = try Utterance.load(testEntries, configuration: front, threads: common.threadCount)
        let unseen = try Utterance.load(unseenEntries, configuration: front, threads: common.threadCount)
        let frames = (train + test + unseen).reduce(0) { $0 + $1.frames }
        print(String(format: "features: %d utterances, %.0f s of audio, in %.1f s", train.count + test.count + unseen.count,
                     Double(frames) / 100, Date().timeIntervalSince(featureStart)))
        let waveformDescription = waveform.isActive
            ? "speeds \(waveform.speeds), noise \(waveform.noiseSNR.map { "\($0.lowerBound)-\($0.upperBound) dB SNR" } ?? "none") "
              + "(\(waveform.noiseColors.map(\.rawValue).joined(separator: "/"))), gain \(waveform.gainDecibels.map { "±\($0.upperBound) dB" } ?? "none"), "
              + "silence \(waveform.padding.map { "\($0.lowerBound)-\($0.upperBound) s" } ?? "none"), telephone \(waveform.telephone), "
              + "DC offset \(waveform.dcOffset), clipping \(waveform.clipping), reverberation \(waveform.reverberation)"
            : "none"
        print("training: \(epochs) epochs, waveform augmentation \(waveformDescription), SpecAugment \(maskingName)\(masking.map { $0.timeWarp > 0 ? " with time warp \($0.timeWarp)" : "" } ?? ""), CTC weight \(ctcWeight), deltas \(deltas), \(normalization) normalization, "
              + "dropout \(dropout), label smoothing \(labelSmoothing), weight decay \(weightDecay)")

        // The target alphabet: every character of the training transcripts.
        let alphabet = Array(Set(train.flatMap { Array($0.transcript) })).sorted()
        if let unseen = (test + unseen).first(where: { !Set($0.transcript).isSubset(of: Set(alphabet)) }) {
            throw ValidationError("the test transcript \"\(unseen.transcript)\" of \(unseen.path) has characters never seen in training")
        }
        let source = RandomSource(seed: common.seed)
        var architecture = try SequenceTransformerConfiguration(
            source: .audio(front, frameStacking: frameStacking),
            encoderLayers: [hidden, hidden], encoderBidirectional: [true, true],
            target: .characters(try CharacterEncoder(alphabet: alphabet)), targetEmbeddingSize: 32,
            decoderHidden: hidden, attention: .general, dropout: dropout)
        if normalization == "global" {
            architecture.featureNormalization = .global
            architecture.featureStatistics = .of(train.map { ($0.features, $0.frames) }, features: front.featureCount)
        } else {
            architecture.featureNormalization = .utterance
        }
        architecture.ctcWeight = ctcWeight > 0 ? ctcWeight : nil
        let model = try SequenceTransformer(architecture, using: source)
        let longest = train.map(\.transcript.count).max() ?? 1

        func sources(_ batch: [Utterance]) throws -> SequenceTransformer.SourceBatch {
            try model.sourceBatch(features: batch.map { ($0.features, $0.frames) })
        }
        // Each training utterance's waveform changed afresh (speed, noise, gain) and its features
        // made again, drawing from the run's seeded source; evaluation hears the recordings as they are.
        let encoder = try AudioEncoder(configuration: front)
        func augmented(_ batch: [Utterance]) throws -> [Utterance] {
            guard waveform.isActive, LearningPhase.current == .training else { return batch }
            return try source.withGenerator { generator in
                try batch.map { utterance in
                    var variant = utterance
                    let samples = try waveform.apply(to: utterance.samples, sampleRate: front.sampleRate, using: &generator)
                    (variant.features, variant.frames) = try encoder.features(samples: samples)
                    return variant
                }
            }
        }
        func decode(_ batch: [Utterance]) throws -> [(text: String, hypothesis: Hypothesis)] {
            try model.decode(sources(batch), options: DecodingOptions(maximumLength: longest * 2 + 2)).map { $0[0] }
        }
        func transcribe(_ batch: [Utterance]) throws -> [String] { try decode(batch).map(\.text) }
        var options = TrainerOptions()
        options.batchSize = batchSize
        options.order = .bucketed(buckets: 16)
        common.apply(to: &options, directory: directory)
        options.runIdentity = ["task": "spoken-digits", "hidden": "\(hidden)", "mels": "\(melBands)", "frame_stacking": "\(frameStacking)"]
        if ctcWeight > 0 { options.runIdentity["ctc_weight"] = "\(ctcWeight)" }
        if deltas > 0 { options.runIdentity["deltas"] = "\(deltas)" }
        if normalization != "utterance" { options.runIdentity["normalization"] = normalization }
        if waveform.isActive { options.runIdentity["waveform"] = waveformDescription }
        options.runDirectory = directory
        options.gradientClipNorm = 5
        // A fixed budget and no selection on the test split: its numbers are reported, not tuned on.
        options.restoreBestWeights = false
        options.schedule = CosineSchedule(rate: learningRate, totalSteps: epochs * ((train.count + batchSize - 1) / batchSize), minimum: learningRate / 30)
        let trainer = Trainer<Float, Utterance, [Utterance]>(
            parameters: model.parameters, optimizer: Adam<Float>(learningRate: learningRate, weightDecay: weightDecay, decoupledWeightDecay: true), options: options,
            randomSource: source,
            length: { $0.frames }, collate: { $0 },
            loss: { batch in
                let batch = try augmented(batch)
                let masked = SpecAugment.masking(batch, policy: masking, training: LearningPhase.current == .training,
                                                 source: source, features: \.features, frames: \.frames)
                return try model.loss(sources: sources(masked), targets: batch.map(\.transcript), labelSmoothing: labelSmoothing)
            },
            metrics: { batch in
                let hypotheses = try transcribe(batch), references = batch.map(\.transcript)
                return ["character_error_rate": ErrorRate.characters(hypotheses: hypotheses, references: references),
                        "sequence_accuracy": Double(zip(hypotheses, references).filter { $0 == $1 }.count) / Double(batch.count)]
            })
        trainer.exampleWeight = { model.lossWeight(target: $0.transcript) }
        let trainStart = Date()
        // The "validation" figures printed during training are the test split's (no tuning happens on them).
        _ = try common.fit(trainer, train: train, validation: test, epochs: epochs)
        let trainSeconds = Date().timeIntervalSince(trainStart)

        // The final numbers: every test utterance decoded once more with the final weights.
        var hypotheses: [String] = []
        for offset in stride(from: 0, to: test.count, by: 64) {
            hypotheses += try transcribe(Array(test[offset..<min(offset + 64, test.count)]))
        }
        let references = test.map(\.transcript)
        let cer = ErrorRate.characters(hypotheses: hypotheses, references: references)
        let accuracy = Double(zip(hypotheses, references).filter { $0 == $1 }.count) / Double(test.count)
        let mistakes = zip(test, hypotheses).filter { $0.0.transcript != $0.1 }.prefix(5)
            .map { "\(URL(fileURLWithPath: $0.0.path).lastPathComponent): \"\($0.0.transcript)\" heard as \"\($0.1)\"" }
        // The unseen synthesizers' split: accuracy, and how many outputs a guard ended (the
        // length bound fitted below is not in force yet: the maximum length and the loop guard).
        var unseenDecoded: [(text: String, hypothesis: Hypothesis)] = []
        for offset in stride(from: 0, to: unseen.count, by: 64) {
            unseenDecoded += try decode(Array(unseen[offset..<min(offset + 64, unseen.count)]))
        }
        let unseenAccuracy = unseen.isEmpty ? nil
            : Double(zip(unseenDecoded, unseen).filter { $0.0.text == $0.1.transcript }.count) / Double(unseen.count)
        let unseenStopped = unseenDecoded.filter { !$0.hypothesis.finished }.count

        // Where the decoder listened, for the longest test utterance.
        let shown = test.max { $0.transcript.count < $1.transcript.count } ?? test[0]
        let (heard, _, weights) = try model.alignment(sources([shown]), maximumLength: longest * 2 + 2)
        let rowLabels = Array(heard).map(String.init) + ["</s>"]
        let alignmentURL = directory.appendingPathComponent("alignment.svg")
        try AtomicFile.write(Data(SVGPlot.heatmap(weights.map { $0.map(Double.init) }, rowLabels: rowLabels,
                                                   title: "Attention: \(URL(fileURLWithPath: shown.path).lastPathComponent) \"\(shown.transcript)\" heard as \"\(heard)\"",
                                                   xLabel: "encoder step (\(frameStacking * 10) ms)", yLabel: "output").utf8), to: alignmentURL)

        let modelURL = directory.appendingPathComponent("spoken-digits.safetensors")
        try model.fitOutputLengthBound(train.map { SequenceExample(text: nil, features: [], frames: $0.frames, target: $0.transcript, line: 0) })
        try model.save(to: modelURL, training: ["task": "spoken-digits", "test_character_error_rate": "\(cer)",
                                                "test_sequence_accuracy": "\(accuracy)", "epochs": "\(trainer.epoch)"])
        var report = RecipeReport()
        report.add("test_character_error_rate", "test character error rate", .fraction(cer))
        report.add("test_sequence_accuracy", "test sequence accuracy", .fraction(accuracy))
        report.add("test_examples", "test utterances", .integer(test.count))
        if let unseenAccuracy {
            report.add("unseen_engine_sequence_accuracy", "unseen-synthesizer sequence accuracy (\(unseenEngines))", .fraction(unseenAccuracy))
            report.add("unseen_engine_character_error_rate", "unseen-synthesizer character error rate",
                       .fraction(ErrorRate.characters(hypotheses: unseenDecoded.map(\.text), references: unseen.map(\.transcript))))
            report.add("unseen_engine_examples", "unseen-synthesizer utterances", .integer(unseen.count))
            report.add("unseen_engine_outputs_stopped", "unseen-synthesizer outputs ended by a guard, not by end-of-sequence", .integer(unseenStopped))
        }
        report.add("first_mistakes", "first mistakes", .text(mistakes.isEmpty ? "none" : mistakes.joined(separator: "; ")))
        report.addCommon(task: "spoken-digits", history: trainer.history, epochs: trainer.epoch, seconds: Date().timeIntervalSince(start),
                         parameters: model.parameterCount, model: modelURL)
        report.add("training_wall_time_seconds", "training wall time (s)", .number(trainSeconds, format: "%.1f"))
        report.addDecodeCommand(model: modelURL, example: shown.path)
        report.add("plots", "plots", .text(["loss.svg", "metrics.svg", "alignment.svg"].map { directory.appendingPathComponent($0).path }.joined(separator: ", ")))
        try report.emit(to: directory)
    }
}

/// One recording in memory: its log-mel frames and transcript.
struct Utterance: Sendable {
    var path: String
    var transcript: String
    var features: [Float]
    var frames: Int
    /// The samples at the front end's rate, kept for waveform augmentation (else empty).
    var samples: [Float] = []

    /// Features of every entry, `threads` files at a time; a file that cannot be read stops
    /// the run with its name.
    static func load(_ entries: [AudioManifest.Entry], configuration: FeatureConfiguration, threads: Int, keepSamples: Bool = false) throws -> [Utterance] {
        let encoder = try AudioEncoder(configuration: configuration)
        var out = [Utterance?](repeating: nil, count: entries.count)
        var failure: Error?
        let lock = NSLock()
        let workers = max(1, threads)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for i in stride(from: w, to: entries.count, by: workers) {
                do {
                    let samples = keepSamples ? try encoder.samples(path: entries[i].path) : []
                    let (values, frames) = keepSamples ? try encoder.features(samples: samples) : try encoder.features(path: entries[i].path)
                    lock.withLock {
                        out[i] = Utterance(path: entries[i].path, transcript: entries[i].transcript, features: values, frames: frames, samples: samples)
                    }
                } catch {
                    lock.withLock { failure = failure ?? error }
                    return
                }
            }
        }
        if let failure { throw failure }
        return out.compactMap { $0 }
    }
}

RecipeDefaults.current = RecipeDefaults(epochs: 8, batchSize: 32, hidden: 128, learningRate: 2e-3)
SpokenDigits.main()
