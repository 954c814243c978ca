import ArgumentParser
import Foundation
import Loom

/// `loom quantize`: an int8 copy of a model file for faster inference.
struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an int8 copy of a model: the weight matrices of its products in int8, for faster decoding.",
        discussion: """
            Each weight matrix of a product (linear layers, recurrent input and recurrent weights) is stored \
            as int8 codes with one Float scale per output row (symmetric: the row's largest weight is 127); \
            embedding tables and biases stay Float. At run time each product quantizes its inputs per row \
            the same way and sums in int32. `loom decode`, `loom evaluate` and `loom serve` read the file as \
            any other model; training refuses it (train the Float model). Check the int8 model's accuracy \
            with `loom evaluate` before you use it: the error is usually well under a point of exact match.
            """)

    @Argument(help: "The model file (.safetensors written by Loom).") var model: String
    @Option(name: [.short, .long], help: "The int8 model file to write.") var output: String

    func validate() throws { try validatingOptions { try OptionRange.path("the model file", model) } }

    func run() throws {
        let url = URL(fileURLWithPath: model), out = URL(fileURLWithPath: output)
        let contents = try SafeTensors.read(url)
        let count: Int, total: Int
        switch contents.metadata["loom.format"] {
        case SequenceHead.fileFormat?:
            var (head, facts) = try SequenceHead.load(from: contents, name: url.lastPathComponent)
            head.quantizeWeights()
            facts["quantized_from"] = url.lastPathComponent
            try head.save(to: out, training: facts)
            (count, total) = (head.quantizedWeightCount, head.parameterCount)
        default:
            var (transformer, facts) = try SequenceTransformer.load(from: contents, name: url.lastPathComponent)
            transformer.quantizeWeights()
            facts["quantized_from"] = url.lastPathComponent
            try transformer.save(to: out, training: facts)
            (count, total) = (transformer.quantizedWeightCount, transformer.parameterCount)
        }
        let size = { (u: URL) in (try? FileManager.default.attributesOfItem(atPath: u.path)[.size] as? Int) ?? nil }
        let sizes = size(url).flatMap { b in size(out).map { " (\(b) -> \($0) bytes)" } } ?? ""
        print("\(output): \(count) weight matrices in int8, \(total) parameters\(sizes)")
    }
}
