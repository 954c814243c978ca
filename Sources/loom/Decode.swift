import ArgumentParser
import Foundation
import Loom

/// `loom decode`: a saved SequenceTransformer turns inputs into text.
struct Decode: ParsableCommand {
    enum Format: String, ExpressibleByArgument { case txt, tsv, json }

    static let configuration = CommandConfiguration(
        abstract: "Decode text or audio inputs with a saved model, one output line per input, in input order.",
        discussion: """
            Inputs are the arguments, or one per line on standard input when there are none: text for text \
            models, audio file paths for audio models. --format tsv prints input, rank, score and output \
            (one line per n-best hypothesis); json prints one JSON object per input.
            """)

    @Option(help: "The model file (.safetensors written by Loom).") var model: String
    @Option(help: "Beam width (1: greedy).") var beam = 1
    @Option(help: "Hypotheses per input (<= beam).") var nbest = 1
    @Option(help: "Maximum output length; decoding always stops there.") var maxLength = 100
    @Option(help: "Minimum output length.") var minLength = 0
    @Option(help: "GNMT length penalty alpha (0: none).") var lengthPenalty = 0.0
    @Option(help: "txt, tsv or json.") var format: Format = .txt
    @Option(help: "Inputs decoded together.") var batchSize = 64
    @Argument(help: "Inputs (default: lines of standard input).") var inputs: [String] = []

    func validate() throws {
        guard beam >= 1, nbest >= 1, nbest <= beam || beam == 1 && nbest == 1, maxLength >= 1, minLength >= 0, batchSize >= 1 else {
            throw ValidationError("need --beam >= 1, 1 <= --nbest <= --beam, --max-length >= 1, --batch-size >= 1")
        }
    }

    func run() throws {
        let (transformer, _) = try SequenceTransformer.load(from: URL(fileURLWithPath: model))
        var items = inputs
        if items.isEmpty {
            while let line = readLine() { items.append(line) }
        }
        let options = DecodingOptions(maximumLength: maxLength, minimumLength: minLength, beamWidth: beam, nBest: nbest, lengthPenalty: lengthPenalty)
        var failed = 0
        for start in stride(from: 0, to: items.count, by: batchSize) {
            let chunk = Array(items[start..<min(start + batchSize, items.count)])
            // A bad input (unknown character, unreadable audio) is reported on its own line; the others still decode.
            var sources: [(index: Int, value: Any)] = []
            for (i, item) in chunk.enumerated() {
                do {
                    switch transformer.configuration.source {
                    case .text: _ = try transformer.sourceBatch(texts: [item]); sources.append((i, item))
                    case let .audio(features, _):
                        let f = try AudioEncoder(configuration: features).features(path: item)
                        sources.append((i, f))
                    }
                } catch {
                    failed += 1
                    FileHandle.standardError.write(Data("error: input \(start + i + 1) (\(item)): \(error)\n".utf8))
                }
            }
            var results = [[(text: String, hypothesis: Hypothesis)]?](repeating: nil, count: chunk.count)
            if !sources.isEmpty {
                let batch: SequenceTransformer.SourceBatch
                switch transformer.configuration.source {
                case .text: batch = try transformer.sourceBatch(texts: sources.map { $0.value as! String })
                case .audio: batch = try transformer.sourceBatch(features: sources.map { $0.value as! (values: [Float], frames: Int) })
                }
                for (s, decoded) in zip(sources, try transformer.decode(batch, options: options)) { results[s.index] = decoded }
            }
            for (i, result) in results.enumerated() { emit(chunk[i], result) }
        }
        if failed > 0 { throw ExitCode(1) }
    }

    func emit(_ input: String, _ result: [(text: String, hypothesis: Hypothesis)]?) {
        guard let result else {
            if format == .txt { print("") }
            return
        }
        switch format {
        case .txt: print(result.first?.text ?? "")
        case .tsv:
            for (rank, r) in result.enumerated() { print("\(input)\t\(rank + 1)\t\(String(format: "%.4f", r.hypothesis.score))\t\(r.text)") }
        case .json:
            // JSON has no NaN or infinity: such scores are written as strings, so every input keeps its line.
            func number(_ x: Double) -> Any { x.isFinite ? x : (x.isNaN ? "NaN" : x > 0 ? "Infinity" : "-Infinity") }
            let object: [String: Any] = ["input": input, "outputs": result.map {
                ["text": $0.text, "score": number($0.hypothesis.score), "log_probability": number($0.hypothesis.logProbability), "finished": $0.hypothesis.finished]
            }]
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
            print(String(decoding: data, as: UTF8.self))
        }
    }
}

/// `loom info`: what a model file holds.
struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show a model file's architecture, layers, shapes, parameter count and vocabularies.")

    @Argument(help: "The model file.") var file: String

    func run() throws {
        let (model, training) = try SequenceTransformer.load(from: URL(fileURLWithPath: file))
        print("\(file): Loom SequenceTransformer")
        print(model.summary)
        for (k, v) in training.sorted(by: { $0.key < $1.key }) { print("training \(k): \(v)") }
    }
}
