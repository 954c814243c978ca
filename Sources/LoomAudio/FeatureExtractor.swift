import CFFTW
import Foundation
import LoomTensor

/// FFTW's planner is not thread-safe; every plan is made and destroyed under this lock.
let fftwPlanLock = NSLock()

/// Audio samples to frames of spectrogram, mel or MFCC features, streaming: `push` blocks of
/// samples as they are read, then `finish`; each returns the frames completed so far,
/// [frames, featureCount] row-major. Memory stays bounded by one FFT length plus a block.
///
/// Per frame: window, FFTW real-to-complex transform (one plan, made once, reused), |X|^2 or |X|;
/// then, for mel and MFCC, the filterbank product; the log; and, for MFCC, the orthonormal DCT-II
/// (both products through BLAS over all frames of a block).
///
/// With `.decibels(topDB:)` the clamp at (maximum - topDB) needs the maximum over the whole
/// file: frames come out unclamped, `maximumDecibels` tracks the maximum, and
/// `clampDecibels(_:maximum:)` applies it at the end (`features(of:)` does this itself).
public final class FeatureExtractor {
    public let configuration: FeatureConfiguration
    let window: [Float]
    /// [bins, melBands], the transposed filterbank, for frames [F, bins] x this.
    let filterbankT: [Float]
    /// [melBands, coefficients], the transposed DCT matrix.
    let dctT: [Float]
    /// One FFTW plan transforms `blockSize` frames at a time (rows of fftInput / fftOutput).
    let plan: fftwf_plan
    /// Two sets of buffers, one per thread of the worker team (executing one plan on different
    /// arrays of the same alignment from two threads is allowed by FFTW).
    let fftInputs: [UnsafeMutablePointer<Float>]
    let fftOutputs: [UnsafeMutablePointer<fftwf_complex>]
    static let blockSize = 64

    // Streaming state, in padded-signal positions.
    private var head: [Float] = []
    private var started = false
    private var pending: [Float] = []
    private var pendingStart = 0
    private var nextFrame = 0
    private var tail: [Float] = []
    public private(set) var samplesSeen = 0
    public private(set) var framesProduced = 0
    /// The largest dB value produced so far (with `.decibels`).
    public private(set) var maximumDecibels = -Double.infinity

    var pad: Int { configuration.fftLength / 2 }

    public init(_ configuration: FeatureConfiguration) throws {
        try configuration.validate()
        self.configuration = configuration
        window = configuration.windowTable().map(Float.init)
        let bins = configuration.bins
        if configuration.kind != .spectrogram {
            let fb = configuration.melFilterbank()
            var t = [Float](repeating: 0, count: bins * configuration.melBands)
            for m in 0..<configuration.melBands { for b in 0..<bins { t[b * configuration.melBands + m] = Float(fb[m][b]) } }
            filterbankT = t
        } else {
            filterbankT = []
        }
        if configuration.kind == .mfcc {
            let d = configuration.dctMatrix()
            var t = [Float](repeating: 0, count: configuration.melBands * configuration.coefficients)
            for k in 0..<configuration.coefficients { for m in 0..<configuration.melBands { t[m * configuration.coefficients + k] = Float(d[k][m]) } }
            dctT = t
        } else {
            dctT = []
        }
        let n = configuration.fftLength
        fftwPlanLock.lock()
        defer { fftwPlanLock.unlock() }
        let block = Self.blockSize
        var inputs: [UnsafeMutablePointer<Float>] = [], outputs: [UnsafeMutablePointer<fftwf_complex>] = []
        for _ in 0..<2 {
            guard let input = fftwf_malloc(MemoryLayout<Float>.stride * n * block)?.assumingMemoryBound(to: Float.self),
                  let output = fftwf_malloc(MemoryLayout<fftwf_complex>.stride * bins * block)?.assumingMemoryBound(to: fftwf_complex.self) else {
                for p in inputs { fftwf_free(p) }
                for p in outputs { fftwf_free(p) }
                throw AudioError.invalidParameter("FFTW could not allocate buffers for FFT length \(n)")
            }
            inputs.append(input)
            outputs.append(output)
        }
        var length = Int32(n)
        guard let plan = fftwf_plan_many_dft_r2c(1, &length, Int32(block), inputs[0], nil, 1, Int32(n), outputs[0], nil, 1, Int32(bins),
                                                 UInt32(FFTW_ESTIMATE)) else {
            for p in inputs { fftwf_free(p) }
            for p in outputs { fftwf_free(p) }
            throw AudioError.invalidParameter("FFTW could not plan a real FFT of length \(n)")
        }
        (fftInputs, fftOutputs, self.plan) = (inputs, outputs, plan)
    }

    deinit {
        fftwPlanLock.lock()
        fftwf_destroy_plan(plan)
        fftwPlanLock.unlock()
        for p in fftInputs { fftwf_free(p) }
        for p in fftOutputs { fftwf_free(p) }
    }

    /// Feeds samples; returns the frames they complete.
    public func push(_ samples: [Float]) -> [Float] {
        guard !samples.isEmpty else { return [] }
        samplesSeen += samples.count
        // The last pad + 1 samples, for the reflection at the end.
        tail = samples.count > pad ? Array(samples.suffix(pad + 1)) : Array((tail + samples).suffix(pad + 1))
        if configuration.center && !started {
            if head.isEmpty && samples.count > pad {
                pending = leftPadding(of: samples)
                pending += samples
            } else {
                head += samples
                guard head.count > pad else { return [] }
                pending = leftPadding(of: head) + head
                head = []
            }
            started = true
        } else {
            if !configuration.center { started = true }
            pending += samples
        }
        return emit(until: pendingStart + pending.count)
    }

    /// Ends the stream: pads the end and returns the last frames. Throws on an empty stream.
    public func finish() throws -> [Float] {
        let n = samplesSeen
        guard n > 0 else { throw AudioError.invalidParameter("no samples to analyse") }
        let hop = configuration.hop, length = configuration.fftLength
        let frameCount: Int
        if configuration.center {
            if !started {
                // Shorter than the padding: pad the whole signal at once.
                pending = leftPadding(of: head) + head + rightPadding(signal: head)
                pendingStart = 0
                started = true
            } else {
                pending += rightPadding(signal: tail)
            }
            frameCount = 1 + n / hop
        } else {
            frameCount = (n + hop - 1) / hop
            let needed = (frameCount - 1) * hop + length
            if pendingStart + pending.count < needed { pending += [Float](repeating: 0, count: needed - pendingStart - pending.count) }
        }
        return emit(until: pendingStart + pending.count, limit: frameCount)
    }

    /// The padding before a centered signal whose first samples are `x`.
    private func leftPadding(of x: [Float]) -> [Float] {
        guard configuration.padding == .reflect else { return [Float](repeating: 0, count: pad) }
        // p[i] for i < pad is x at distance pad - i from the first sample, mirrored.
        return (0..<pad).map { x[reflect(pad - $0, count: x.count)] }
    }

    /// The padding after a centered signal ending with `x` (its last samples).
    private func rightPadding(signal x: [Float]) -> [Float] {
        guard configuration.padding == .reflect else { return [Float](repeating: 0, count: pad) }
        return (1...Swift.max(pad, 1)).prefix(pad).map { x[x.count - 1 - reflect($0, count: x.count)] }
    }

    /// NumPy's reflect padding index for distance `d` from an edge of `count` samples (repeated
    /// mirroring when the signal is shorter than the padding).
    private func reflect(_ d: Int, count: Int) -> Int {
        guard count > 1 else { return 0 }
        let period = 2 * (count - 1)
        let r = d % period
        return r < count ? r : period - r
    }

    /// Computes every frame that lies inside padded positions [pendingStart, end).
    private func emit(until end: Int, limit: Int = .max) -> [Float] {
        let hop = configuration.hop, length = configuration.fftLength, bins = configuration.bins
        let available = end >= length ? (end - length) / hop + 1 : 0
        let frames = Swift.max(0, Swift.min(available, limit) - nextFrame)
        guard frames > 0 else { return [] }
        // Every element is written below.
        var spectra = [Float](unsafeUninitializedCapacity: frames * bins) { _, initialized in initialized = frames * bins }
        spectra.withUnsafeMutableBufferPointer { out in
            pending.withUnsafeBufferPointer { p in
                window.withUnsafeBufferPointer { w in
                    guard let spectraBase = out.baseAddress, let samples = p.baseAddress, let windowBase = w.baseAddress else { return }
                    // Frames first..<last of this call, in blocks, with buffer set `part`.
                    let (first, origin, plan, power) = (nextFrame, pendingStart, plan, Int32(configuration.power == 2 ? 2 : 1))
                    let (inputs, outputs) = (fftInputs, fftOutputs)
                    let transform = { (range: Range<Int>, part: Int) in
                        let input = inputs[part], output = outputs[part]
                        var done = range.lowerBound
                        while done < range.upperBound {
                            let count = Swift.min(Self.blockSize, range.upperBound - done)
                            for j in 0..<count {
                                let source = samples + ((first + done + j) * hop - origin)
                                let row = input + j * length
                                for i in 0..<length { row[i] = source[i] * windowBase[i] }
                            }
                            // Rows past `count` hold earlier frames; their transforms are ignored.
                            fftwf_execute_dft_r2c(plan, input, output)
                            UnsafeRawPointer(output).withMemoryRebound(to: Float.self, capacity: 2 * count * bins) { z in
                                Activations.complexPower(z, spectraBase + done * bins, count: count * bins, power: Int(power))
                            }
                            done += count
                        }
                    }
                    // Frames are independent: the two halves on the two threads of the team.
                    let split = frames >= 2 * Self.blockSize && BLAS.threadCount >= 2
                        && WorkerTeam.shared.tryRun(parts: 2, { part in transform(WorkerTeam.share(frames, part: part, of: 2), part) })
                    if !split { transform(0..<frames, 0) }
                }
            }
        }
        nextFrame += frames
        // Drop samples no later frame reads.
        let keepFrom = Swift.min(nextFrame * hop - pendingStart, pending.count)
        if keepFrom > 0 {
            pending.removeFirst(keepFrom)
            pendingStart += keepFrom
        }
        framesProduced += frames
        return features(fromSpectra: spectra, frames: frames)
    }

    /// Spectra [frames, bins] to the configured features [frames, featureCount].
    func features(fromSpectra spectra: [Float], frames: Int) -> [Float] {
        let c = configuration
        var values = spectra
        if c.kind != .spectrogram {
            var mel = [Float](repeating: 0, count: frames * c.melBands)
            Float.gemm(transA: false, transB: false, m: frames, n: c.melBands, k: c.bins, alpha: 1, a: spectra, lda: c.bins,
                       b: filterbankT, ldb: c.melBands, beta: 0, c: &mel, ldc: c.melBands)
            values = mel
        }
        switch c.log {
        case .none: break
        case let .offset(offset):
            values.withUnsafeMutableBufferPointer { v in
                if let base = v.baseAddress { Activations.log(base, base, count: v.count, offset: Float(offset)) }
            }
        case let .floor(floor):
            for i in values.indices { values[i] = Swift.max(values[i], Float(floor)) }
            values.withUnsafeMutableBufferPointer { v in
                if let base = v.baseAddress { Activations.log(base, base, count: v.count) }
            }
        case let .decibels(amin, _):
            for i in values.indices {
                values[i] = 10 * Foundation.log10(Swift.max(values[i], Float(amin)))
                maximumDecibels = Swift.max(maximumDecibels, Double(values[i]))
            }
        }
        if c.kind == .mfcc {
            if case let .decibels(_, topDB?) = c.log {
                // The DCT mixes bands, so the top-dB clamp must come first: it is applied here
                // with the maximum so far (exact for in-memory use through features(of:)).
                let floor = Float(maximumDecibels - topDB)
                for i in values.indices { values[i] = Swift.max(values[i], floor) }
            }
            var out = [Float](repeating: 0, count: frames * c.coefficients)
            Float.gemm(transA: false, transB: false, m: frames, n: c.coefficients, k: c.melBands, alpha: 1, a: values, lda: c.melBands,
                       b: dctT, ldb: c.coefficients, beta: 0, c: &out, ldc: c.coefficients)
            return out
        }
        return values
    }

    /// Applies the top-dB clamp to finished frames (spectrogram and mel features).
    public static func clampDecibels(_ values: inout [Float], maximum: Double, topDB: Double) {
        let floor = Float(maximum - topDB)
        for i in values.indices { values[i] = Swift.max(values[i], floor) }
    }

    /// All features of a signal in memory, deltas included: [frames, featureCount] and the frame
    /// count.
    public func features(of samples: [Float]) throws -> (values: [Float], frames: Int) {
        var values = push(samples)
        values += try finish()
        if let topDB = configuration.topDBAfterward { Self.clampDecibels(&values, maximum: maximumDecibels, topDB: topDB) }
        let frames = values.count / configuration.staticFeatureCount
        return (Deltas.appended(values, frames: frames, features: configuration.staticFeatureCount, order: configuration.deltas ?? 0), frames)
    }
}
