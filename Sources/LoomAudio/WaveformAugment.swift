import Foundation
import LoomTensor

/// Waveform augmentation for training, drawn afresh for every utterance every time it is seen
/// (seeded: the draws come from the run's `RandomSource`, which checkpoints restore):
///
/// - **Speed** (Ko, Peddinti, Povey & Khudanpur 2015, Kaldi's factors 0.9, 1.0, 1.1): the
///   waveform resampled by 1 / factor with libsamplerate and played at the original rate, so
///   factor 1.1 is 10% shorter and 10% higher in pitch. One factor of `speeds`, uniformly.
/// - **Noise**: a noise scaled so that 10 log10(P_signal / P_noise) is an SNR uniform in
///   `noiseSNR` dB (P: mean square over the utterance): a random stretch of one of `noises`
///   (looped when shorter), or generated Gaussian noise (`noiseColors`) when there are none.
///   Skipped for silence.
/// - **Room** (`reverberation`, a probability): the waveform convolved with one of `rooms`, the
///   impulse responses of shoebox rooms by the image method (`RoomReverberation.bank`), drawn
///   uniformly; aligned on the direct path and kept at the utterance's length and power.
/// - **Silence** (`padding`): seconds of silence, uniform in the range, before and after the
///   speech (drawn apart), as a microphone left open; the noise below covers it.
/// - **Noise colours** (`noiseColors`, for generated noise): white, pink (-3 dB per octave) or
///   brown (-6 dB per octave), one drawn per utterance.
/// - **Telephone channel** (`telephone`, a probability): the waveform through 8 kHz sampling and
///   back (nothing above 4 kHz survives), then second-order Butterworth high-pass at 300 Hz and
///   low-pass at 3,400 Hz (the telephone band).
/// - **Gain**: every sample times 10^(g / 20), g uniform in `gainDecibels` (applied after the
///   noise and channel, as a microphone's level applies to speech and noise alike).
/// - **DC offset** (`dcOffset`): a constant uniform in ±dcOffset times the peak, added.
/// - **Clipping** (`clipping`, a probability): samples limited to ±(0.3 ... 0.9 of the peak), as
///   an overdriven input stage.
///
/// ```swift
/// let augment = WaveformAugment(speeds: [0.9, 1, 1.1], gainDecibels: -6...6, noiseSNR: 10...20)
/// let variant = try source.withGenerator { try augment.apply(to: samples, sampleRate: 16_000, using: &$0) }
/// ```
public struct WaveformAugment: Equatable, Sendable {
    public var speeds: [Double]
    public var gainDecibels: ClosedRange<Double>?
    public var noiseSNR: ClosedRange<Double>?
    /// Noise recordings at the utterances' sample rate (empty: generated noise of `noiseColors`).
    public var noises: [[Float]]
    /// Colours of generated noise, one drawn per utterance.
    public var noiseColors: [NoiseColor] = [.white]
    /// Seconds of silence before and after the speech (each drawn apart).
    public var padding: ClosedRange<Double>?
    /// Probability that an utterance passes through the telephone channel.
    public var telephone = 0.0
    /// Largest DC offset, as a fraction of the peak.
    public var dcOffset = 0.0
    /// Probability that an utterance is clipped.
    public var clipping = 0.0
    /// Probability that an utterance is heard in one of `rooms`.
    public var reverberation = 0.0
    /// Room impulse responses at the utterances' sample rate (`RoomReverberation.bank`).
    public var rooms: [[Float]] = []

    /// The spectrum of generated noise: flat, -3 dB per octave, -6 dB per octave.
    public enum NoiseColor: String, CaseIterable, Codable, Sendable { case white, pink, brown }

    public init(speeds: [Double] = [1], gainDecibels: ClosedRange<Double>? = nil, noiseSNR: ClosedRange<Double>? = nil,
                noises: [[Float]] = []) {
        (self.speeds, self.gainDecibels, self.noiseSNR, self.noises) = (speeds, gainDecibels, noiseSNR, noises)
    }

    /// libsamplerate's fastest sinc converter (documented: 97 dB SNR, 80% of the band kept):
    /// augmentation runs for every utterance of every batch, and the medium converter took
    /// about half the training thread's time on spoken-digits `--microphone` (38 examples/s).
    static let resampling = Resampler.Quality.fastest

    /// Kaldi's speed factors.
    public static let kaldiSpeeds: [Double] = [0.9, 1, 1.1]

    /// Whether anything changes a waveform.
    public var isActive: Bool {
        speeds.contains { $0 != 1 } || gainDecibels != nil || noiseSNR != nil || padding != nil || telephone > 0 || dcOffset > 0 || clipping > 0
            || reverberation > 0
    }

    public func validate() throws {
        guard !speeds.isEmpty, speeds.allSatisfy({ $0.isFinite && $0 >= 0.5 && $0 <= 2 }) else {
            throw AudioError.invalidParameter("speed factors must be in 0.5...2, got \(speeds)")
        }
        if let gainDecibels, !(gainDecibels.lowerBound.isFinite && gainDecibels.upperBound.isFinite) {
            throw AudioError.invalidParameter("the gain range must be finite, got \(gainDecibels)")
        }
        if let noiseSNR, !(noiseSNR.lowerBound.isFinite && noiseSNR.upperBound.isFinite) {
            throw AudioError.invalidParameter("the SNR range must be finite, got \(noiseSNR)")
        }
        for (name, p) in [("telephone probability", telephone), ("clipping probability", clipping), ("DC offset", dcOffset),
                          ("reverberation probability", reverberation)] {
            guard p.isFinite, (0...1).contains(p) else { throw AudioError.invalidParameter("the \(name) must be in 0...1, got \(p)") }
        }
        if let padding, !(padding.lowerBound >= 0 && padding.upperBound <= 10) {
            throw AudioError.invalidParameter("silence padding must be in 0...10 seconds, got \(padding)")
        }
        if reverberation > 0 && (rooms.isEmpty || rooms.contains { $0.isEmpty || !$0.allSatisfy(\.isFinite) }) {
            throw AudioError.invalidParameter("reverberation needs room impulse responses (RoomReverberation.bank), none empty or not finite")
        }
        guard !noiseColors.isEmpty else { throw AudioError.invalidParameter("noise colours: name at least one") }
        if let bad = noises.firstIndex(where: { $0.isEmpty || !$0.allSatisfy(\.isFinite) || Self.power($0) == 0 }) {
            throw AudioError.invalidParameter("noise recording \(bad) is empty, silent or not finite")
        }
    }

    /// One variant of `samples` (at `sampleRate`), drawn with `generator`: always the same
    /// number of draws for a given configuration, so that the stream stays aligned.
    @_specialize(where G == SeededGenerator)
    public func apply<G: RandomNumberGenerator>(to samples: [Float], sampleRate: Int, using generator: inout G) throws -> [Float] {
        var out = samples
        let speed = speeds[Int.random(in: 0..<speeds.count, using: &generator)]
        if speed != 1, !out.isEmpty {
            let rate = Int((Double(sampleRate) / speed).rounded())
            out = try Resampler(from: sampleRate, to: rate, quality: Self.resampling).process(out, isLast: true)
        }
        if reverberation > 0 {
            let heard = Double.random(in: 0..<1, using: &generator) < reverberation
            let room = Int.random(in: 0..<Swift.max(rooms.count, 1), using: &generator)
            if heard, room < rooms.count { out = try RoomReverberation.reverberate(out, response: rooms[room]) }
        }
        if let padding {
            let before = Int(Double.random(in: padding, using: &generator) * Double(sampleRate))
            let after = Int(Double.random(in: padding, using: &generator) * Double(sampleRate))
            out = [Float](repeating: 0, count: before) + out + [Float](repeating: 0, count: after)
        }
        if let noiseSNR {
            let snr = Double.random(in: noiseSNR, using: &generator)
            let noise = self.noise(count: out.count, using: &generator)
            let signalPower = Self.power(out), noisePower = Self.power(noise)
            if signalPower > 0, noisePower > 0 {
                // P_signal / (s^2 P_noise) = 10^(snr / 10).
                let scale = Float((signalPower / (noisePower * pow(10, snr / 10))).squareRoot())
                for i in out.indices { out[i] += scale * noise[i] }
            }
        }
        if telephone > 0, Double.random(in: 0..<1, using: &generator) < telephone, !out.isEmpty {
            out = try Self.telephoneChannel(out, sampleRate: sampleRate)
        }
        if let gainDecibels {
            let gain = Float(pow(10, Double.random(in: gainDecibels, using: &generator) / 20))
            for i in out.indices { out[i] *= gain }
        }
        // DC offset and clipping are relative to the peak before either.
        let peak = dcOffset > 0 || clipping > 0 ? out.reduce(Float(0)) { Swift.max($0, abs($1)) } : 0
        if dcOffset > 0 {
            let offset = Float(Double.random(in: -dcOffset...dcOffset, using: &generator)) * peak
            for i in out.indices { out[i] += offset }
        }
        if clipping > 0 {
            let clips = Double.random(in: 0..<1, using: &generator) < clipping
            let level = Float(Double.random(in: 0.3...0.9, using: &generator)) * peak
            if clips { for i in out.indices { out[i] = Swift.min(Swift.max(out[i], -level), level) } }
        }
        return out
    }

    /// Through 8 kHz sampling and back, then the telephone band: Butterworth (Q = 1/sqrt(2))
    /// high-pass at 300 Hz and low-pass at 3,400 Hz.
    static func telephoneChannel(_ x: [Float], sampleRate: Int) throws -> [Float] {
        var y = x
        if sampleRate > 8000 {
            let narrow = try Resampler(from: sampleRate, to: 8000, quality: resampling).process(x, isLast: true)
            y = try Resampler(from: 8000, to: sampleRate, quality: resampling).process(narrow, isLast: true)
        }
        y = Biquad(highPass: 300, sampleRate: sampleRate).filter(y)
        if 3400 < Double(sampleRate) / 2 { y = Biquad(lowPass: 3400, sampleRate: sampleRate).filter(y) }
        return y
    }

    /// The noise recordings a list names (one audio path per line, relative to the list; blank
    /// lines and `#` comments skipped), each read at `sampleRate` (any format libsndfile reads,
    /// downmixed). Files that cannot be read, or hold only silence, are an error naming every
    /// one of them (the first ten) with the reason.
    public static func readNoises(list url: URL, sampleRate: Int) throws -> [[Float]] {
        let data: Data
        do { data = try UserFile.read(url.path, what: "noise list", limit: 1 << 24) } catch {
            throw AudioError.invalidParameter("cannot read the noise list \(url.path): \(error)")
        }
        guard let text = String(data: data, encoding: .utf8) else { throw AudioError.invalidParameter("\(url.path) is not UTF-8 text") }
        let directory = url.deletingLastPathComponent()
        let paths = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
            .map { ($0.hasPrefix("/") ? URL(fileURLWithPath: $0) : directory.appendingPathComponent($0)).standardizedFileURL.path }
        guard !paths.isEmpty else { throw AudioError.invalidParameter("the noise list \(url.path) names no file") }
        var noises: [[Float]] = [], bad: [String] = []
        for path in paths {
            do {
                let samples = try Audio.read(path: path, sampleRate: sampleRate).samples
                if samples.isEmpty || power(samples) == 0 || !samples.allSatisfy(\.isFinite) { bad.append("\(path): empty or silent") } else { noises.append(samples) }
            } catch {
                bad.append("\(path): \(error)")
            }
        }
        guard bad.isEmpty else {
            throw AudioError.invalidParameter("noise list \(url.path): \(bad.count) of \(paths.count) files unusable: "
                                              + bad.prefix(10).joined(separator: "; ") + (bad.count > 10 ? "; ..." : ""))
        }
        return noises
    }

    /// `count` samples of noise: a stretch of a recording from a random start (looped), or
    /// Gaussian noise (Box-Muller) of a drawn colour.
    @_specialize(where G == SeededGenerator)
    func noise<G: RandomNumberGenerator>(count: Int, using generator: inout G) -> [Float] {
        if !noises.isEmpty {
            let recording = noises[Int.random(in: 0..<noises.count, using: &generator)]
            let start = Int.random(in: 0..<recording.count, using: &generator)
            return (0..<count).map { recording[(start + $0) % recording.count] }
        }
        let color = noiseColors.count == 1 ? noiseColors[0] : noiseColors[Int.random(in: 0..<noiseColors.count, using: &generator)]
        return Self.colored(Self.gaussianNoise(count: count, using: &generator), color)
    }

    /// White noise shaped: pink by Paul Kellet's three-pole filter (an approximation of the
    /// -3 dB per octave slope over the speech band); brown by a leaky integrator, 1 / f^2 above
    /// its corner (f_s / (2 pi 51), about 50 Hz at 16 kHz).
    static func colored(_ white: [Float], _ color: NoiseColor) -> [Float] {
        switch color {
        case .white: return white
        case .pink:
            var b0: Float = 0, b1: Float = 0, b2: Float = 0
            return white.map { w in
                b0 = 0.99765 * b0 + w * 0.0990460
                b1 = 0.96300 * b1 + w * 0.2965164
                b2 = 0.57000 * b2 + w * 1.0526913
                return b0 + b1 + b2 + w * 0.1848
            }
        case .brown:
            var y: Float = 0
            return white.map { w in
                y = (y + 0.02 * w) / 1.02
                return y
            }
        }
    }

    /// `count` samples of white Gaussian noise of standard deviation `deviation` (Box-Muller: two
    /// normals from each pair of uniforms).
    @_specialize(where G == SeededGenerator)
    public static func gaussianNoise<G: RandomNumberGenerator>(count: Int, deviation: Double = 1, using generator: inout G) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        var i = 0
        while i < count {
            let u = Double.random(in: Double.leastNonzeroMagnitude..<1, using: &generator), v = Double.random(in: 0..<1, using: &generator)
            let r = (-2 * log(u)).squareRoot() * deviation
            out[i] = Float(r * cos(2 * .pi * v))
            if i + 1 < count { out[i + 1] = Float(r * sin(2 * .pi * v)) }
            i += 2
        }
        return out
    }

    /// Mean square.
    static func power(_ x: [Float]) -> Double {
        x.isEmpty ? 0 : x.reduce(0) { $0 + Double($1) * Double($1) } / Double(x.count)
    }
}

/// A second-order section (the biquad of Robert Bristow-Johnson's audio-EQ cookbook), direct
/// form I, in Double.
struct Biquad {
    let b0: Double, b1: Double, b2: Double, a1: Double, a2: Double

    init(lowPass frequency: Double, sampleRate: Int, q: Double = 1 / 2.0.squareRoot()) {
        let w = 2 * Double.pi * frequency / Double(sampleRate), alpha = sin(w) / (2 * q), a0 = 1 + alpha
        (b0, b1, b2) = ((1 - cos(w)) / 2 / a0, (1 - cos(w)) / a0, (1 - cos(w)) / 2 / a0)
        (a1, a2) = (-2 * cos(w) / a0, (1 - alpha) / a0)
    }

    init(highPass frequency: Double, sampleRate: Int, q: Double = 1 / 2.0.squareRoot()) {
        let w = 2 * Double.pi * frequency / Double(sampleRate), alpha = sin(w) / (2 * q), a0 = 1 + alpha
        (b0, b1, b2) = ((1 + cos(w)) / 2 / a0, -(1 + cos(w)) / a0, (1 + cos(w)) / 2 / a0)
        (a1, a2) = (-2 * cos(w) / a0, (1 - alpha) / a0)
    }

    func filter(_ x: [Float]) -> [Float] {
        var (x1, x2, y1, y2) = (0.0, 0.0, 0.0, 0.0)
        return x.map { v in
            let x0 = Double(v)
            let y0 = b0 * x0 + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2
            (x2, x1, y2, y1) = (x1, x0, y1, y0)
            return Float(y0)
        }
    }
}
