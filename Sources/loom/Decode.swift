import ArgumentParser
import Foundation
import Loom

/// `loom decode`: a saved SequenceTransformer turns inputs into text.
struct Decode: ParsableCommand {
    enum Format: String, ExpressibleByArgument, CaseIterable { case txt, tsv, json }

    static let configuration = CommandConfiguration(
        abstract: "Decode text or audio inputs with a saved model, one output line per input, in input order.",
        discussion: """
            Inputs are the arguments, or one per line on standard input when there are none (read and \
            decoded --batch-size lines at a time, so output follows input as it streams): text for text \
            models, audio file paths for audio models. --format tsv prints input, rank, score and output \
            (one line per n-best hypothesis); json prints one JSON object per input. An input that cannot \
            be decoded (empty, too long, an unknown character, unreadable audio) is reported on standard \
            error with its number and keeps its place in the output: an empty line (txt), a line \
            `input<TAB>error<TAB><TAB>message` (tsv) or an object with "error" (json); the exit status is \
            then 1. Control characters in txt and tsv output are escaped (\\n, \\r, \\t, \\u{1B}).
            """)

    @Option(help: "The model file (.safetensors written by Loom).") var model: String
    @Option(parsing: .unconditional, help: "Beam width, 1...\(DecodingOptions.maximumBeamWidth) (1: greedy).") var beam = 1
    @Option(parsing: .unconditional, help: "Hypotheses per input, 1...beam (more than 1 needs --format tsv or json).") var nbest = 1
    @Option(parsing: .unconditional, help: "Maximum output length; decoding always stops there.") var maxLength = 100
    @Option(parsing: .unconditional, help: "Minimum output length (<= --max-length).") var minLength = 0
    @Option(parsing: .unconditional, help: "GNMT length penalty alpha, 0...10 (0: none).") var lengthPenalty = 0.0
    @Option(help: "Output format: txt, tsv or json.") var format: Format = .txt
    @Option(parsing: .unconditional, help: "Inputs decoded together, 1...4096.") var batchSize = 64
    @Option(parsing: .unconditional, help: "Longest text input in characters; longer ones are reported, not decoded.") var maxInputLength = 10_000
    @Flag(help: "Draw each output from the model's distribution instead of searching (with --temperature, --top-k, --top-p, --seed).")
    var sample = false
    @Option(parsing: .unconditional, help: "Sampling temperature, (0, 100] (below 1: sharper).") var temperature = 1.0
    @Option(parsing: .unconditional, help: "Sample among the k most probable tokens only.") var topK: Int?
    @Option(parsing: .unconditional, help: "Sample from the smallest set of tokens whose probability reaches p, (0, 1].") var topP: Double?
    @Option(parsing: .unconditional, help: "Seed of the sampling (the same seed and inputs give the same outputs).") var seed: UInt64 = 1
    @Option(parsing: .unconditional, help: "Bound each output to C + R x its source's length (tokens, or encoder steps of audio): R (default: the model file's bound).")
    var lengthRatio: Double?
    @Option(parsing: .unconditional, help: "The constant C of that bound (with --length-ratio; default 10).") var lengthConstant: Int?
    @Flag(help: "Let outputs repeat a short cycle without end (the guard stops one after 12 tokens of a cycle of at most 4).")
    var noRepetitionGuard = false
    @Argument(help: "Inputs (default: lines of standard input).") var inputs: [String] = []

    var decodingOptions: DecodingOptions {
        var options = DecodingOptions(maximumLength: maxLength, minimumLength: minLength, beamWidth: beam, nBest: nbest, lengthPenalty: lengthPenalty)
        if sample { options.sampling = SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed) }
        if let lengthRatio { options.lengthBound = OutputLengthBound(ratio: lengthRatio, constant: lengthConstant ?? 10) }
        if noRepetitionGuard { options.repetitionGuard = nil }
        return options
    }

    func validate() throws {
        try validatingOptions {
            try OptionRange.path("--model", model)
            try OptionRange.check("--beam", beam, in: 1...DecodingOptions.maximumBeamWidth)
            try OptionRange.check("--nbest", nbest, in: 1...beam)
            try OptionRange.check("--max-length", maxLength, in: 1...DecodingOptions.maximumOutputLength)
            try OptionRange.check("--min-length", minLength, in: 0...maxLength)
            try OptionRange.check("--length-penalty", lengthPenalty, in: 0...10)
            try OptionRange.check("--batch-size", batchSize, in: 1...4096)
            try OptionRange.check("--max-input-length", maxInputLength, in: 1...1_000_000)
            try decodingOptions.validate()
        }
        if lengthConstant != nil && lengthRatio == nil { throw ValidationError("--length-constant needs --length-ratio") }
        if nbest > 1 && format == .txt { throw ValidationError("--nbest \(nbest) prints several hypotheses per input: use --format tsv or json") }
    }

    func run() throws {
        let transformer = try DecodingModel(contentsOf: URL(fileURLWithPath: model))
        var failed = 0, number = 0
        var stops: [StopReason: Int] = [:]
        var lines = inputs.isEmpty ? nil : inputs.makeIterator()
        // Bounded batches in, results out in order: standard input is never read ahead of the output.
        while true {
            var chunk: [String] = []
            while chunk.count < batchSize, let line = lines != nil ? lines?.next() : readLine() { chunk.append(line) }
            if chunk.isEmpty { break }
            failed += try decodeChunk(chunk, firstNumber: number + 1, transformer, stops: &stops)
            number += chunk.count
            fflush(stdout)
        }
        // Outputs cut short (best hypothesis of each input): said once, on standard error.
        let cut = stops.filter { $0.key != .end && $0.value > 0 }.sorted { $0.key.rawValue < $1.key.rawValue }
        if !cut.isEmpty {
            let names: [StopReason: String] = [.maximumLength: "at --max-length", .lengthLimit: "at the bound from the source's length",
                                               .repetition: "by the repetition guard"]
            FileHandle.standardError.write(Data(("note: of \(number) outputs, " + cut.map { "\($0.value) stopped \(names[$0.key] ?? $0.key.rawValue)" }
                .joined(separator: ", ") + "\n").utf8))
        }
        if failed > 0 { throw ExitCode(1) }
    }

    /// Decodes one chunk; returns how many of its inputs failed, and counts in `stops` how the
    /// best hypothesis of each decoded input stopped.
    func decodeChunk(_ chunk: [String], firstNumber: Int, _ transformer: DecodingModel, stops: inout [StopReason: Int]) throws -> Int {
        var results = [Result<[(text: String, hypothesis: Hypothesis)], Error>?](repeating: nil, count: chunk.count)
        var sources: [(index: Int, source: DecodingModel.Source)] = []
        for (i, item) in chunk.enumerated() {
            do { sources.append((i, try prepare(item, transformer))) } catch { results[i] = .failure(error) }
        }
        do {
            for (s, decoded) in zip(sources, try decode(sources.map(\.source), transformer, seedOffset: firstNumber)) { results[s.index] = .success(decoded) }
        } catch {
            // The batch failed as a whole: decode one by one, so that the error lands on its own input.
            for s in sources { results[s.index] = Result { try decode([s.source], transformer, seedOffset: firstNumber + s.index)[0] } }
        }
        var failed = 0
        for (i, result) in results.enumerated() {
            guard let result else { continue }
            if case let .success(outputs) = result, let best = outputs.first { stops[best.hypothesis.stop, default: 0] += 1 }
            if case let .failure(error) = result {
                failed += 1
                FileHandle.standardError.write(Data("error: input \(firstNumber + i) (\(Self.escaped(chunk[i]))): \(error)\n".utf8))
            }
            emit(chunk[i], result)
        }
        return failed
    }

    func prepare(_ item: String, _ model: DecodingModel) throws -> DecodingModel.Source {
        if model.audioFeatures != nil { return try model.prepare(audioPath: item) }
        return try model.prepare(text: item, maximumCharacters: maxInputLength)
    }

    /// Sampling draws from a seed offset by the first input's number, so that each batch draws
    /// afresh and a run is reproducible for the same inputs and batch size.
    func decode(_ sources: [DecodingModel.Source], _ model: DecodingModel, seedOffset: Int) throws -> [[(text: String, hypothesis: Hypothesis)]] {
        var options = decodingOptions
        options.sampling?.seed &+= UInt64(seedOffset)
        return try model.decode(sources, options: options)
    }

    /// Control characters as visible escapes, so that one output stays one line and no terminal
    /// escape sequence passes through.
    static func escaped(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20 || (0x7F..<0xA0).contains(scalar.value) || scalar == "\u{2028}" || scalar == "\u{2029}":
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    func emit(_ input: String, _ result: Result<[(text: String, hypothesis: Hypothesis)], Error>) {
        switch (format, result) {
        case (.txt, .failure): print("")
        case let (.txt, .success(r)): print(Self.escaped(r.first?.text ?? ""))
        case let (.tsv, .failure(error)): print("\(Self.escaped(input))\terror\t\t\(Self.escaped("\(error)"))")
        case let (.tsv, .success(r)):
            for (rank, h) in r.enumerated() {
                print("\(Self.escaped(input))\t\(rank + 1)\t\(String(format: "%.4f", h.hypothesis.score))\t\(Self.escaped(h.text))")
            }
        case let (.json, .failure(error)): printJSON(["input": input, "error": "\(error)"])
        case let (.json, .success(r)):
            // JSON has no NaN or infinity: such scores are written as strings, so every input keeps its line.
            func number(_ x: Double) -> Any { x.isFinite ? x : (x.isNaN ? "NaN" : x > 0 ? "Infinity" : "-Infinity") }
            printJSON(["input": input, "outputs": r.map {
                ["text": $0.text, "score": number($0.hypothesis.score), "log_probability": number($0.hypothesis.logProbability), "finished": $0.hypothesis.finished,
                 "stop": $0.hypothesis.stop.rawValue]
            }])
        }
    }

    func printJSON(_ object: [String: Any]) {
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
        print(String(decoding: data, as: UTF8.self))
    }
}

/// Runs option checks, turning a range error into a validation error (which prints the
/// subcommand's usage beside the message).
func validatingOptions(_ checks: () throws -> Void) throws {
    do { try checks() } catch let error as OptionRangeError {
        throw ValidationError(error.description)
    } catch let error as TensorError {
        throw ValidationError(error.description)
    }
}

/// `loom info`: what a file Loom wrote holds.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a file Loom wrote: a model's architecture, layers, shapes, parameter count and vocabularies; "
            + "a checkpoint's position; the tensors and facts of a weights-only file.")

    @Argument(help: "The file (.safetensors).") var file: String

    func validate() throws { try validatingOptions { try OptionRange.path("the model file", file) } }

    func run() throws {
        let url = URL(fileURLWithPath: file)
        let contents = try SafeTensors.read(url)
        let metadata = contents.metadata
        switch metadata["loom.format"] ?? metadata["format"] {
        case SequenceTransformer.fileFormat?, SequenceTransformer.previousFileFormat?:
            let (model, training) = try SequenceTransformer.load(from: contents, name: url.lastPathComponent)
            print("\(file): Loom SequenceTransformer (\(metadata["loom.format"] ?? ""))")
            print(model.summary)
            for (k, v) in training.sorted(by: { $0.key < $1.key }) { print("training \(k): \(v)") }
        case SequenceHead.fileFormat?:
            let (model, training) = try SequenceHead.load(from: contents, name: url.lastPathComponent)
            print("\(file): Loom sequence-to-one model (\(SequenceHead.fileFormat)); `loom decode` prints its \(model.configuration.labels == nil ? "number" : "class")")
            print(model.summary)
            for (k, v) in training.sorted(by: { $0.key < $1.key }) { print("training \(k): \(v)") }
        case "loom-checkpoint/1"?:
            print("\(file): Loom training checkpoint (resume it with --resume)")
            for key in ["epoch", "global_step", "next_batch", "learning_rate", "current_loss", "skipped_steps"] {
                if let value = metadata[key] { print("\(key): \(value)") }
            }
            if let identity = metadata["identity"] { print("run identity: \(identity)") }
            describeTensors(contents)
        default:
            // The recipes' weights-only files (compare-xy, addition-regression): tensors and facts.
            print("\(file): weights only (tensors and facts; not a SequenceTransformer, so `loom decode` does not run it)")
            for (k, v) in metadata.sorted(by: { $0.key < $1.key }) { print("\(k): \(v)") }
            describeTensors(contents)
        }
    }

    func describeTensors(_ contents: SafeTensors) {
        let total = contents.entries.values.reduce(0) { $0 + $1.shape.reduce(1, *) }
        print("tensors: \(contents.entries.count), \(total) values")
        for (name, entry) in contents.entries.sorted(by: { $0.key < $1.key }) { print("  \(name) \(entry.dtype) \(entry.shape)") }
    }
}
