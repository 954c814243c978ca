import Foundation
import LoomAudio
import LoomSeq2Seq

/// Fuzz targets for the hostile-input readers: the audio path (libsndfile through AudioReader
/// and the feature front end), the .npy reader, the safetensors model loader and the manifest
/// reader, plus the .npy writer/reader and manifest write/read round trips.
///
/// Built with libFuzzer by scripts/fuzz.sh (`-sanitize=fuzzer,address -DLIBFUZZER`); built
/// normally, it is a replayer: `LoomFuzz audio|npy FILE...` runs the same checks on saved inputs
/// (a crash found by the fuzzer becomes a regression input).
enum FuzzTargets {
    static let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("loom-fuzz-\(getpid())")

    /// Any bytes as an audio file: a clear error or finite features, never a crash.
    static func audio(_ data: Data) {
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let path = scratch.appendingPathComponent("input.wav").path
        guard FileManager.default.createFile(atPath: path, contents: data) else { return }
        guard let reader = try? AudioReader(path: path, maximumFrames: 1 << 20) else { return }
        guard let extractor = try? FeatureExtractor(.preset(.speech, kind: .mfcc)) else { fatalError("preset must be valid") }
        var values: [Float] = []
        while let block = try? reader.read(frames: 4096) { values += extractor.push(block.map { $0.isFinite ? $0 : 0 }) }
        if reader.framesRead > 0, let rest = try? extractor.finish() { values += rest }
        // Samples are clamped to finite values above, so every feature must be finite.
        precondition(values.allSatisfy(\.isFinite), "non-finite feature from finite samples")
    }

    /// Any bytes as a safetensors model file: a clear error or a model, never a crash; a file that
    /// parses has tensors readable within its bounds.
    static func safetensors(_ data: Data) {
        if let file = try? SafeTensors(data: data) {
            for name in file.entries.keys { _ = try? file.tensor(name, as: Float.self) }
        }
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let url = scratch.appendingPathComponent("model.safetensors")
        guard FileManager.default.createFile(atPath: url.path, contents: data) else { return }
        if let (model, _) = try? SequenceTransformer.load(from: url) {
            _ = try? model.decode(model.sourceBatch(texts: ["1"]), options: DecodingOptions(maximumLength: 3))
        }
    }

    /// Any bytes as a manifest: a clear error or entries that each have a path and a transcript
    /// without tabs or line ends, and that read back the same from the manifest text they give.
    static func manifest(_ data: Data) {
        guard let text = String(data: data, encoding: .utf8) else { return }
        let directory = URL(fileURLWithPath: "/corpus")
        guard let manifest = try? AudioManifest(text: text, directory: directory) else { return }
        for entry in manifest.entries {
            precondition(!entry.path.isEmpty && !entry.transcript.isEmpty, "empty field accepted")
            precondition(!entry.transcript.contains("\t") && !entry.transcript.contains(where: \.isNewline), "tab or newline in a transcript")
        }
        guard let written = try? manifest.text(relativeTo: directory) else { return }
        let back = try? AudioManifest(text: written, directory: directory)
        precondition(back == manifest, "the manifest changed in a write/read round trip")
    }

    /// Any bytes as .npy: a clear error or a matrix; and any floats written then read back equal.
    static func npy(_ data: Data) {
        if let (shape, values) = try? Numpy.parse(data) {
            precondition(values.count == shape.reduce(1, *), "shape and values disagree")
        }
        let floats = data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) } }
        let columns = floats.isEmpty ? 1 : Swift.max(1, Int(data.first ?? 1) % 7 + 1)
        let rows = floats.count / columns
        try? FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        let url = scratch.appendingPathComponent("roundtrip.npy")
        do {
            let writer = try FeatureFileWriter(destination: url, format: .npy, columns: columns)
            try writer.append(Array(floats.prefix(rows * columns)))
            try writer.commit()
            let (shape, back) = try Numpy.read(url)
            precondition(shape == [rows, columns], "shape \(shape) after writing [\(rows), \(columns)]")
            precondition(zip(back, floats).allSatisfy { $0.bitPattern == $1.bitPattern }, "values changed in the round trip")
        } catch {
            preconditionFailure("round trip failed: \(error)")
        }
    }
}

#if LIBFUZZER
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    guard let bytes else { return 0 }
    let data = Data(bytes: bytes, count: count)
    switch ProcessInfo.processInfo.environment["LOOM_FUZZ_TARGET"] ?? "audio" {
    case "npy": FuzzTargets.npy(data)
    case "safetensors": FuzzTargets.safetensors(data)
    case "manifest": FuzzTargets.manifest(data)
    default: FuzzTargets.audio(data)
    }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

/// SwiftPM links an executable's entry point under `<module>_main`; hand control to libFuzzer.
@_cdecl("LoomFuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc, vector = argv
    return LLVMFuzzerRunDriver(&count, &vector) { fuzz($0, $1) }
}
#else
@main
struct Replayer {
    static func main() {
        let arguments = CommandLine.arguments.dropFirst()
        if arguments.first == "make-seed", let path = arguments.dropFirst().first {
            // A small valid model file, a seed that lets the fuzzer reach the model loader.
            do {
                let model = try SequenceTransformer(SequenceTransformerConfiguration(
                    source: .text(.characters(CharacterEncoder(alphabet: Array("12+"))), embeddingSize: 2), encoderLayers: [2],
                    target: .characters(CharacterEncoder(alphabet: Array("12"))), targetEmbeddingSize: 2, decoderHidden: 2, attention: .general))
                try model.save(to: URL(fileURLWithPath: path))
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                exit(1)
            }
            return
        }
        guard let target = arguments.first, ["audio", "npy", "safetensors", "manifest"].contains(target) else {
            FileHandle.standardError.write(Data("usage: LoomFuzz audio|npy|safetensors|manifest FILE...\n".utf8))
            exit(2)
        }
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else { continue }
            switch target {
            case "npy": FuzzTargets.npy(data)
            case "safetensors": FuzzTargets.safetensors(data)
            case "manifest": FuzzTargets.manifest(data)
            default: FuzzTargets.audio(data)
            }
        }
        print("replayed \(arguments.count - 1) inputs")
    }
}
#endif
