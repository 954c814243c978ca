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
///   (looped when shorter), or white Gaussian noise when there are none. Skipped for silence.
/// - **Gain**: every sample times 10^(g / 20), g uniform in `gainDecibels` (applied last, as a
///   microphone's level applies to speech and noise alike).
///
/// ```swift
/// let augment = WaveformAugment(speeds: [0.9, 1, 1.1], gainDecibels: -6...6, noiseSNR: 10...20)
/// let variant = try source.withGenerator { try augment.apply(to: samples, sampleRate: 16_000, using: &$0) }
/// ```
public struct WaveformAugment: Equatable, Sendable {
    public var speeds: [Double]
    public var gainDecibels: ClosedRange<Double>?
    public var noiseSNR: ClosedRange<Double>?
    /// Noise recordings at the utterances' sample rate (empty: white noise).
    public var noises: [[Float]]

    public init(speeds: [Double] = [1], gainDecibels: ClosedRange<Double>? = nil, noiseSNR: ClosedRange<Double>? = nil,
                noises: [[Float]] = []) {
        (self.speeds, self.gainDecibels, self.noiseSNR, self.noises) = (speeds, gainDecibels, noiseSNR, noises)
    }

    /// Kaldi's speed factors.
    public static let kaldiSpeeds: [Double] = [0.9, 1, 1.1]

    /// Whether anything changes a waveform.
    public var isActive: Bool { speeds.contains { $0 != 1 } || gainDecibels != nil || noiseSNR != nil }

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
        if let bad = noises.firstIndex(where: { $0.isEmpty || !$0.allSatisfy(\.isFinite) || Self.power($0) == 0 }) {
            throw AudioError.invalidParameter("noise recording \(bad) is empty, silent or not finite")
        }
    }

    /// One variant of `samples` (at `sampleRate`), drawn with `generator`: always the same
    /// number of draws for a given configuration, so that the stream stays aligned.
    public func apply<G: RandomNumberGenerator>(to samples: [Float], sampleRate: Int, using generator: inout G) throws -> [Float] {
        var out = samples
        let speed = speeds[Int.random(in: 0..<speeds.count, using: &generator)]
        if speed != 1, !out.isEmpty {
            let rate = Int((Double(sampleRate) / speed).rounded())
            out = try Resampler(from: sampleRate, to: rate).process(out, isLast: true)
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
        if let gainDecibels {
            let gain = Float(pow(10, Double.random(in: gainDecibels, using: &generator) / 20))
            for i in out.indices { out[i] *= gain }
        }
        return out
    }

    /// `count` samples of noise: a stretch of a recording from a random start (looped), or
    /// white Gaussian noise (Box-Muller).
    func noise<G: RandomNumberGenerator>(count: Int, using generator: inout G) -> [Float] {
        if !noises.isEmpty {
            let recording = noises[Int.random(in: 0..<noises.count, using: &generator)]
            let start = Int.random(in: 0..<recording.count, using: &generator)
            return (0..<count).map { recording[(start + $0) % recording.count] }
        }
        var out = [Float](repeating: 0, count: count)
        var i = 0
        while i < count {
            let u = Double.random(in: Double.leastNonzeroMagnitude..<1, using: &generator), v = Double.random(in: 0..<1, using: &generator)
            let r = (-2 * log(u)).squareRoot()
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
