// Loom's benchmark executable: one JSON line per workload,
// {"workload": NAME, "impl": "loom", "median": X, "min": X, "max": X, "unit": U},
// each the median of at least 5 timed repetitions after a warm-up. Run a release build:
//     swift run -c release Benchmarks [WORKLOAD...]
// Workload definitions are in the foundation issue's table and the README.
import Foundation
import Loom

/// Seconds taken by `body`, on the monotonic clock.
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// Times `body` `repetitions` times after `warmup` untimed runs and prints one line, converting
/// each time to the reported figure with `figure` (e.g. GFLOP/s from seconds).
func report(_ workload: String?, unit: String, extra: [String: Any] = [:], repetitions: Int = 7, warmup: Int = 2,
            figure: (Double) -> Double, _ body: () throws -> Void) rethrows -> [Double] {
    for _ in 0..<warmup { try body() }
    let figures = try (0..<max(repetitions, 5)).map { _ in figure(try seconds(body)) }.sorted()
    let median = figures[figures.count / 2]
    guard let workload else { return figures }
    let line: [String: Any] = ["workload": workload, "impl": "loom", "median": median, "min": figures.first ?? 0,
                               "max": figures.last ?? 0, "unit": unit].merging(extra) { a, _ in a }
    if let data = try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]),
       let text = String(data: data, encoding: .utf8) {
        print(text)
    }
    return figures
}

/// sgemm-peak: C = A B for square float32 matrices, GFLOP/s = 2 n^3 / time.
@discardableResult
func sgemmPeak(n: Int, quiet: Bool = false) throws -> Double {
    let source = RandomSource(seed: 1)
    let a = try Tensor<Float>.randomUniform([n, n], lower: -1, upper: 1, using: source)
    let b = try Tensor<Float>.randomUniform([n, n], lower: -1, upper: 1, using: source)
    var c = try Tensor<Float>.zeros([n, n])
    let flops = 2 * Double(n) * Double(n) * Double(n)
    let figures = try report(quiet ? nil : "sgemm-peak", unit: "GFLOP/s", extra: ["n": n, "core": BLAS.coreName, "threads": BLAS.threadCount], figure: { flops / $0 / 1e9 }) {
        a.scalars.withUnsafeBufferPointer { pa in
            b.scalars.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableScalars { pc in
                    guard let ra = pa.baseAddress, let rb = pb.baseAddress, let rc = pc.baseAddress else { return }
                    Float.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: ra, lda: n, b: rb, ldb: n,
                               beta: 0, c: rc, ldc: n)
                }
            }
        }
    }
    return figures[figures.count / 2]
}

/// One "-train" step as the foundation issue defines it: forward over the whole batch, loss =
/// sum(output * R) for a fixed random R, backward to every parameter, one Adam update.
/// Returns a closure running one step (or a forward only, with no tape, when `train` is false).
func recurrentStep<K: RecurrentCellKind>(
    _ kind: K.Type, input: Int, hidden: Int, layers: Int, bidirectional: Bool, batch: Int, steps: Int, train: Bool, int8: Bool = false
) throws -> () throws -> Void {
    let source = RandomSource(seed: 7)
    let layer = try Recurrent<Float, K>(inputSize: input, hiddenSize: hidden, numLayers: layers, bidirectional: bidirectional, using: source)
    // int8: every input and recurrent weight in int8, as `loom quantize` stores them.
    for p in layer.parameters where int8 && p.shape.count == 2 {
        p.quantized = QuantizedMatrix(quantizing: p.data.scalars, rows: p.shape[0], columns: p.shape[1])
    }
    let x = try SequenceBatch(values: Tensor<Float>.randomUniform([steps, batch, input], lower: -1, upper: 1, using: source))
    let r = try Tensor<Float>.randomUniform([steps, batch, layer.outputSize], lower: -1, upper: 1, using: source)
    let adam = Adam<Float>(learningRate: 1e-3)
    if !train {
        return { _ = try withoutGradients { try layer(x) } }
    }
    return {
        let loss = try (layer(x).output.values * r).sum()
        try adam.update(layer.parameters, gradients: loss.gradients(for: layer.parameters))
    }
}

let mediumFrames = 32.0 * 200
/// FLOPs of lstm-large-train: 3 * 2 (in + hidden) 4 hidden batch len, forward and the two backward products.
let largeFlops = 3 * 2 * Double(512 + 1024) * 4 * 1024 * 64 * 50

func medium<K: RecurrentCellKind>(_ kind: K.Type, train: Bool, int8: Bool = false) throws -> () throws -> Void {
    try recurrentStep(kind, input: 80, hidden: 256, layers: 2, bidirectional: true, batch: 32, steps: 200, train: train, int8: int8)
}

/// One training step of an LSTM (input 16, hidden 128, batch 1) over a 100,000-step sequence,
/// with gradient checkpointing every `every` steps or none; returns the peak resident memory
/// of this process in MB (`peakResidentMegabytes`).
func longSequenceStep(every: Int?) throws -> Double {
    let source = RandomSource(seed: 3)
    var lstm = try LSTM<Float>(inputSize: 16, hiddenSize: 128, using: source)
    lstm.checkpointEvery = every
    let x = try SequenceBatch(values: Tensor<Float>.randomUniform([100_000, 1, 16], lower: -1, upper: 1, using: source))
    let (output, _) = try lstm(x)
    let gradients = try output.values.sum().gradients(for: lstm.parameters)
    precondition(gradients.allSatisfy { $0.scalars.allSatisfy(\.isFinite) })
    return peakResidentMegabytes()
}

/// This process's peak resident memory in MB: VmHWM of /proc/self/status, the high-water mark
/// of its own address space. (getrusage's ru_maxrss is not that in a child process: Linux
/// carries the largest RSS of the address space exec replaced, here the parent's, into it.)
func peakResidentMegabytes() -> Double {
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
       let kilobytes = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) }) {
        return kilobytes / 1024
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024
}

/// Runs the memory workload in a child process (peak RSS is per process) and reports its figure.
func memoryWorkload(_ name: String, mode: String) throws {
    let child = Process()
    child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
    child.arguments = ["--memory-child", mode]
    let pipe = Pipe()
    child.standardOutput = pipe
    let start = DispatchTime.now().uptimeNanoseconds
    try child.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    child.waitUntilExit()
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    guard child.terminationStatus == 0, let text = String(data: data, encoding: .utf8),
          let megabytes = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw TensorError.invalidArgument(op: name, message: "child process failed (status \(child.terminationStatus))")
    }
    let line: [String: Any] = ["workload": name, "impl": "loom", "median": megabytes, "min": megabytes, "max": megabytes,
                               "unit": "MB peak RSS", "seconds": elapsed, "repetitions": 1]
    if let json = try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]) { print(String(decoding: json, as: UTF8.self)) }
}

BLAS.selectOptimizedCoreAndRelaunchIfNeeded()
if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "--memory-child" {
    let every = CommandLine.arguments[2] == "checkpoint" ? 316 : nil
    do { print(try longSequenceStep(every: every)) } catch { FileHandle.standardError.write(Data("\(error)\n".utf8)); exit(1) }
    exit(0)
}
let threads = ProcessInfo.processInfo.environment["LOOM_THREADS"].flatMap(Int.init) ?? 2
BLAS.setThreadCount(threads)
/// seq2seq-decode (and, with `int8`, the same model after `quantizeWeights`).
func seq2seqDecode(int8: Bool) throws {
    let prefix = int8 ? "seq2seq-decode-int8" : "seq2seq-decode"
    // Encoder LSTM 16 -> 128 over 7 steps; decoder embedding 13 -> 16, LSTM 16 -> 128, linear
    // 128 -> 13; greedy, exactly 4 steps (minimum = maximum length 4).
    let model = try SequenceTransformer(SequenceTransformerConfiguration(
        source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 16), encoderLayers: [128],
        target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 16, decoderHidden: 128),
        using: RandomSource(seed: 1))
    if int8 { model.quantizeWeights() }
    let options = DecodingOptions(maximumLength: 4, minimumLength: 4)
    let one = try model.sourceBatch(texts: ["123+456"])
    _ = try report("\(prefix)-batch1", unit: "ms per sequence", repetitions: 7, figure: { $0 * 1000 / 200 }) {
        for _ in 0..<200 { _ = try model.decode(one, options: options) }
    }
    var g = SeededGenerator(seed: 2)
    let many = try model.sourceBatch(texts: (0..<256).map { _ in "\(Int.random(in: 100...999, using: &g))+\(Int.random(in: 100...999, using: &g))" })
    _ = try report("\(prefix)-batch256", unit: "sequences/s", repetitions: 7, figure: { 256 * 10 / $0 }) {
        for _ in 0..<10 { _ = try model.decode(many, options: options) }
    }
    // Batch 64, and beam search (width 5) at batch 1, 64 and 256: sequences/s.
    let sixtyFour = try model.sourceBatch(texts: (0..<64).map { _ in "\(Int.random(in: 100...999, using: &g))+\(Int.random(in: 100...999, using: &g))" })
    let beam = DecodingOptions(maximumLength: 4, minimumLength: 4, beamWidth: 5)
    for (name, batch, count, decoding, rounds) in [("\(prefix)-batch64", sixtyFour, 64, options, 40), ("\(prefix)-beam5-batch1", one, 1, beam, 100),
                                                    ("\(prefix)-beam5-batch64", sixtyFour, 64, beam, 10), ("\(prefix)-beam5-batch256", many, 256, beam, 3)] {
        _ = try report(name, unit: "sequences/s", repetitions: 7, figure: { Double(count * rounds) / $0 }) {
            for _ in 0..<rounds { _ = try model.decode(batch, options: decoding) }
        }
    }
}

let requested = Set(CommandLine.arguments.dropFirst())
let workloads: [(String, () throws -> Void)] = [
    ("sgemm-peak", { try sgemmPeak(n: 1024); try sgemmPeak(n: 2048) }),
    ("lstm-small-train", {
        let step = try recurrentStep(LSTMCell.self, input: 16, hidden: 128, layers: 1, bidirectional: false, batch: 128, steps: 8, train: true)
        _ = try report("lstm-small-train", unit: "steps/s", repetitions: 30, figure: { 1 / $0 }, step)
    }),
    ("lstm-medium-train", { _ = try report("lstm-medium-train", unit: "frames/s", figure: { mediumFrames / $0 }, medium(LSTMCell.self, train: true)) }),
    ("gru-medium-train", { _ = try report("gru-medium-train", unit: "frames/s", figure: { mediumFrames / $0 }, medium(GRUCell.self, train: true)) }),
    ("lstm-medium-infer", { _ = try report("lstm-medium-infer", unit: "frames/s", figure: { mediumFrames / $0 }, medium(LSTMCell.self, train: false)) }),
    ("lstm-medium-infer-int8", {
        _ = try report("lstm-medium-infer-int8", unit: "frames/s", figure: { mediumFrames / $0 }, medium(LSTMCell.self, train: false, int8: true))
    }),
    ("lstm-large-train", {
        let step = try recurrentStep(LSTMCell.self, input: 512, hidden: 1024, layers: 1, bidirectional: false, batch: 64, steps: 50, train: true)
        // The fraction of this machine's sgemm peak, measured here in the same run.
        let peak = try sgemmPeak(n: 2048, quiet: true)
        let figures = try report("lstm-large-train", unit: "GFLOP/s", extra: ["sgemm_peak": peak], repetitions: 5,
                                 figure: { largeFlops / $0 / 1e9 }, step)
        print("{\"workload\": \"lstm-large-train\", \"fraction_of_sgemm_peak\": \(figures[figures.count / 2] / peak)}")
    }),
    ("spectrogram", {
        // 60 s of 16 kHz mono audio (tones, a chirp and noise) to log-mel with the speech front end.
        let rate = 16_000, count = 60 * rate
        var generator = SeededGenerator(seed: 11)
        let signal = (0..<count).map { k -> Float in
            let t = Double(k) / Double(rate)
            return Float(0.3 * sin(2 * Double.pi * 440 * t) + 0.2 * sin(2 * Double.pi * (200 * t + 60 * t * t))
                         + 0.05 * (generator.nextUnit() - 0.5))
        }
        let configuration = FeatureConfiguration.preset(.speech, kind: .mel)
        var frames = 0
        _ = try report("spectrogram", unit: "ms per 60 s", extra: ["frames": 6001, "features": 80], figure: { $0 * 1000 }) {
            frames = try FeatureExtractor(configuration).features(of: signal).frames
        }
        precondition(frames == 1 + count / 160)
    }),
    ("seq2seq-decode", { try seq2seqDecode(int8: false) }),
    ("seq2seq-decode-int8", { try seq2seqDecode(int8: true) }),
    ("seq2seq-decode-beam-vocabulary", {
        // Beam search (width 5) over a 5,000-word target vocabulary: decoder LSTM 128, 8 steps, batch 64.
        let words = (0..<5000).map { "w\($0)" }
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 16), encoderLayers: [128],
            target: .words(try WordTokenizer(vocabulary: words)), targetEmbeddingSize: 16, decoderHidden: 128),
            using: RandomSource(seed: 1))
        var g = SeededGenerator(seed: 2)
        let batch = try model.sourceBatch(texts: (0..<64).map { _ in "\(Int.random(in: 100...999, using: &g))+\(Int.random(in: 100...999, using: &g))" })
        let options = DecodingOptions(maximumLength: 8, minimumLength: 8, beamWidth: 5)
        _ = try report("seq2seq-decode-beam-vocabulary", unit: "sequences/s", repetitions: 7, figure: { 64 * 3 / $0 }) {
            for _ in 0..<3 { _ = try model.decode(batch, options: options) }
        }
    }),
    ("bucketing", {
        // One epoch of an LSTM (16 -> 64) over 2,000 sequences of lengths 1...100, batches of 32:
        // bucketed (the Trainer's default) against plain shuffling.
        let lengths = (0..<2000).map { 1 + $0 % 100 }
        for order in [TrainerOptions().order, .shuffled] {
            let source = RandomSource(seed: 4)
            let lstm = try LSTM<Float>(inputSize: 16, hiddenSize: 64, using: source)
            var options = TrainerOptions()
            options.order = order
            options.showProgress = false
            let trainer = Trainer<Float, Int, SequenceBatch<Float>>(
                parameters: lstm.parameters, optimizer: Adam<Float>(), options: options, randomSource: source, length: { lengths[$0] },
                collate: { items in
                    let batchLengths = items.map { lengths[$0] }
                    return try SequenceBatch(values: Tensor<Float>.randomUniform([batchLengths.max()!, items.count, 16], using: source), lengths: batchLengths)
                },
                loss: { batch in try lstm(batch).output.values.squared().mean() })
            var g = SeededGenerator(seed: 0)
            let padded = BatchPlan.paddedFraction(BatchPlan.batches(lengths: lengths, batchSize: 32, order: order, using: &g), lengths: lengths)
            _ = try report("bucketing-\(order == .shuffled ? "shuffled" : "bucketed")", unit: "examples/s", extra: ["padded_fraction": padded],
                           repetitions: 5, warmup: 1, figure: { Double(lengths.count) / $0 }) {
                _ = try trainer.fit(train: Array(lengths.indices), epochs: trainer.epoch + 1)
            }
        }
    }),
    ("adam-subnormal", {
        // Adam over 1M weights whose gradients are ~1e-22 (their squares, Adam's second moment,
        // are subnormal in Float32, as late in training for rarely-used weights): updates/s
        // with subnormals flushed to zero (Loom's default) and without.
        let source = RandomSource(seed: 5)
        for flush in [true, false] {
            BLAS.setFlushSubnormals(flush)
            let parameter = Parameter(try Tensor<Float>.randomUniform([1024, 1024], using: source), name: "w")
            let gradient = try Tensor<Float>.randomUniform([1024, 1024], lower: 1e-22, upper: 2e-22, using: source)
            let adam = Adam<Float>(learningRate: 1e-3)
            _ = try report("adam-subnormal-\(flush ? "flushed" : "kept")", unit: "updates/s", repetitions: 7, figure: { 20 / $0 }) {
                for _ in 0..<20 { try adam.update([parameter], gradients: [gradient]) }
            }
        }
        BLAS.setFlushSubnormals(true)
    }),
    ("lstm-100k-memory-checkpointed", { try memoryWorkload("lstm-100k-memory-checkpointed", mode: "checkpoint") }),
    ("lstm-100k-memory-plain", { try memoryWorkload("lstm-100k-memory-plain", mode: "plain") }),
    // Diagnostics, run only when named.
    ("gemm-shapes", {
        // The per-step recurrent product shapes: (m, n, k) = (batch, gates * hidden, hidden).
        for (m, n, k) in [(32, 1024, 256), (128, 512, 128), (64, 4096, 1024), (32, 768, 256), (6400, 1024, 512)] {
            let source = RandomSource(seed: 1)
            let a = try Tensor<Float>.randomUniform([m, k], using: source), b = try Tensor<Float>.randomUniform([n, k], using: source)
            var c = try Tensor<Float>.zeros([m, n])
            let flops = 2.0 * Double(m * n * k)
            let reps = max(1, 200_000_000 / (m * n * k))
            _ = try report("gemm-\(m)x\(n)x\(k)", unit: "GFLOP/s", extra: ["threads": BLAS.threadCount], figure: { flops * Double(reps) / $0 / 1e9 }) {
                a.withBase { pa in b.withBase { pb in c.withUnsafeMutableScalars { pc in
                    for _ in 0..<reps {
                        Float.gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: pa, lda: k, b: pb, ldb: k, beta: 1, c: pc.baseAddress.unsafelyUnwrapped, ldc: n)
                    }
                } } }
            }
            let packed = b.withBase { PackedWeights(transposed: true, n: n, k: k, weights: $0, ldw: k) }
            _ = try report("packed-\(m)x\(n)x\(k)", unit: "GFLOP/s", extra: ["threads": 1], figure: { flops * Double(reps) / $0 / 1e9 }) {
                a.withBase { pa in c.withUnsafeMutableScalars { pc in
                    for _ in 0..<reps { packed.multiply(m: m, a: pa, lda: k, beta: 1, c: pc.baseAddress.unsafelyUnwrapped, ldc: n) }
                } }
            }
        }
    }),
    ("ctc-joint-train", {
        // The spoken-digits model (40 log-mel bands stacked 4 to an encoder step, 2 x 128
        // bidirectional LSTM encoder, LSTM 128 decoder with general attention) on a batch of 64
        // random utterances of 1-3 s with 1-7 digit targets: one training step's forward and
        // backward with the attention loss alone, and with joint CTC (weight 0.3), alternating
        // pair by pair so that slow phases of the machine hit both.
        let digits = try TextCodec.characters(CharacterEncoder(alphabet: Array("0123456789 ")))
        let front = FeatureConfiguration(kind: .mel, sampleRate: 16_000, fftLength: 400, hop: 160, melBands: 40, maximumFrequency: 8000,
                                         log: .offset(1e-6))
        func model(_ ctc: Double?) throws -> SequenceTransformer {
            var c = SequenceTransformerConfiguration(source: .audio(front, frameStacking: 4), encoderLayers: [128, 128], encoderBidirectional: [true, true],
                                                     target: digits, targetEmbeddingSize: 32, decoderHidden: 128, attention: .general)
            c.featureNormalization = .utterance
            c.ctcWeight = ctc
            return try SequenceTransformer(c, using: RandomSource(seed: 3))
        }
        let (plain, joint) = (try model(nil), try model(0.3))
        var g = SeededGenerator(seed: 5)
        let utterances = (0..<64).map { _ -> (features: [Float], frames: Int, text: String) in
            let frames = 100 + Int(g.nextUnit() * 200)
            let text = (0..<(1 + Int(g.nextUnit() * 7))).map { _ in String(Int(g.nextUnit() * 10)) }.joined(separator: " ")
            return ((0..<(frames * 40)).map { _ in Float(g.nextUnit() * 4 - 2) }, frames, text)
        }
        func step(_ m: SequenceTransformer) throws {
            try withLearningPhase(.training) {
                let loss = try m.loss(sources: m.sourceBatch(features: utterances.map { ($0.features, $0.frames) }), targets: utterances.map(\.text))
                _ = try loss.gradients(for: m.parameters)
            }
        }
        var ratios: [Double] = [], times: [[Double]] = [[], []]
        for _ in 0..<2 { try step(plain); try step(joint) }
        for _ in 0..<9 {
            let a = try seconds { try step(plain) }, b = try seconds { try step(joint) }
            times[0].append(a)
            times[1].append(b)
            ratios.append(b / a)
        }
        func median(_ x: [Double]) -> Double { x.sorted()[x.count / 2] }
        print("{\"workload\": \"ctc-joint-train\", \"attention_ms\": \(median(times[0]) * 1000), \"joint_ms\": \(median(times[1]) * 1000), "
              + "\"paired_ratio\": \(median(ratios))}")
    }),
    ("int8-gemm", {
        // The int8 product (QuantizedMatrix, activations quantized per call) against the Float
        // ones at inference shapes: a decoder step at batch 256 (k = 16 + 128 input, 4 x 128
        // gates), a medium recurrent step (32 rows, k 256, 1024 gates) and the large one.
        var g = SeededGenerator(seed: 5)
        for (m, n, k) in [(256, 512, 144), (256, 512, 128), (32, 1024, 256), (64, 4096, 1024), (1280, 512, 16), (1280, 512, 32), (1280, 512, 128), (1280, 13, 128)] {
            let w = (0..<(n * k)).map { _ in Float(g.nextUnit() - 0.5) }, a = (0..<(m * k)).map { _ in Float(g.nextUnit() - 0.5) }
            var c = [Float](repeating: 0, count: m * n)
            let q = QuantizedMatrix(quantizing: w, rows: n, columns: k)
            let packed = w.withUnsafeBufferPointer { PackedWeights(transposed: true, n: n, k: k, weights: $0.baseAddress!, ldw: k) }
            let rounds = max(1, 200_000_000 / (m * n * k))
            let gops = { (t: Double) in 2 * Double(m * n * k * rounds) / t / 1e9 }
            let shape: [String: Any] = ["m": m, "n": n, "k": k]
            _ = report("int8-gemm-float-blas", unit: "GFLOP/s", extra: shape, figure: gops) {
                for _ in 0..<rounds {
                    Float.gemm(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: w, ldb: k, beta: 0, c: &c, ldc: n)
                }
            }
            _ = report("int8-gemm-float-packed", unit: "GFLOP/s", extra: shape, figure: gops) {
                for _ in 0..<rounds { packed.multiply(m: m, a: a, lda: k, beta: 0, c: &c, ldc: n) }
            }
            _ = report("int8-gemm-int8", unit: "GOP/s", extra: shape, figure: gops) {
                for _ in 0..<rounds { q.multiply(m: m, a: a, lda: k, beta: 0, c: &c, ldc: n) }
            }
        }
    }),
    ("profile-decode", {
        // seq2seq-decode's batch of 256 alone, for a profiler.
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 16), encoderLayers: [128],
            target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 16, decoderHidden: 128),
            using: RandomSource(seed: 1))
        var g = SeededGenerator(seed: 2)
        let many = try model.sourceBatch(texts: (0..<256).map { _ in "\(Int.random(in: 100...999, using: &g))+\(Int.random(in: 100...999, using: &g))" })
        for _ in 0..<400 { _ = try model.decode(many, options: DecodingOptions(maximumLength: 4, minimumLength: 4)) }
    }),
    ("profile-beam", {
        // seq2seq-decode-beam5-batch256 alone (int8 with PROFILE_INT8=1), for a profiler.
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 16), encoderLayers: [128],
            target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 16, decoderHidden: 128),
            using: RandomSource(seed: 1))
        if ProcessInfo.processInfo.environment["PROFILE_INT8"] == "1" { model.quantizeWeights() }
        var g = SeededGenerator(seed: 2)
        let many = try model.sourceBatch(texts: (0..<256).map { _ in "\(Int.random(in: 100...999, using: &g))+\(Int.random(in: 100...999, using: &g))" })
        for _ in 0..<60 { _ = try model.decode(many, options: DecodingOptions(maximumLength: 4, minimumLength: 4, beamWidth: 5)) }
    }),
    ("profile-small", {
        let step = try recurrentStep(LSTMCell.self, input: 16, hidden: 128, layers: 1, bidirectional: false, batch: 128, steps: 8, train: true)
        for _ in 0..<200 { try step() }
    }),
]
let diagnostics: Set = ["gemm-shapes", "profile-small", "profile-decode", "profile-beam", "int8-gemm"]
if let unknown = requested.first(where: { name in !workloads.contains { $0.0 == name } }) {
    FileHandle.standardError.write(Data("unknown workload \(unknown); known: \(workloads.map(\.0).joined(separator: ", "))\n".utf8))
    exit(2)
}
for (name, run) in workloads where requested.isEmpty ? !diagnostics.contains(name) : requested.contains(name) {
    do { try run() } catch { FileHandle.standardError.write(Data("\(name): \(error)\n".utf8)) }
}
