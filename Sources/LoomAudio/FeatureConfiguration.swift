import Foundation

/// Every parameter of the spectrogram / mel / MFCC front end, named, with presets that
/// reproduce librosa, torchaudio and Wolfram defaults and Loom's `speech` front end.
public struct FeatureConfiguration: Codable, Equatable, Sendable {
    /// The features per frame: the power (or magnitude) spectrum, mel bands, or MFCCs.
    public enum Kind: String, Codable, Sendable, CaseIterable { case spectrogram, mel, mfcc }
    /// The analysis window.
    public enum Window: String, Codable, Sendable { case hann, hamming }
    /// How a centered signal is extended at both ends.
    public enum Padding: String, Codable, Sendable { case reflect, constant }
    /// Hz to mel: Slaney (librosa's default) or HTK (2595 log10(1 + f/700)).
    public enum MelScale: String, Codable, Sendable { case slaney, htk }
    /// Filter normalization: Slaney (area 2 / bandwidth) or none (peak 1).
    public enum MelNorm: String, Codable, Sendable { case slaney, none }
    /// The compression applied to the spectrum or mel values.
    public enum Log: Codable, Equatable, Sendable {
        case none
        /// ln(x + offset) (the speech front end: 1e-6; torchaudio's log_mels).
        case offset(Double)
        /// ln(max(x, floor)).
        case floor(Double)
        /// 10 log10(max(x, amin)), clamped below at (maximum over the file - topDB) when given
        /// (librosa's power_to_db with ref 1, torchaudio's AmplitudeToDB("power")).
        case decibels(amin: Double, topDB: Double?)
    }
    /// Named defaults (see `preset(_:kind:)`).
    public enum Preset: String, Codable, Sendable, CaseIterable { case librosa, torchaudio, wolfram, speech }

    public var kind: Kind
    public var sampleRate: Int
    public var fftLength: Int
    public var windowLength: Int
    public var hop: Int
    public var window: Window
    /// Periodic (DFT-even, for spectral analysis) or symmetric window.
    public var periodic: Bool
    /// Frames centered on t * hop with `padding` of fftLength / 2 each side (librosa, torchaudio);
    /// otherwise frames start at t * hop and the last ones are zero-padded (Wolfram).
    public var center: Bool
    public var padding: Padding
    /// 2: power spectrum; 1: magnitude.
    public var power: Double
    public var melBands: Int
    public var melScale: MelScale
    public var melNorm: MelNorm
    public var minimumFrequency: Double
    /// nil: sampleRate / 2.
    public var maximumFrequency: Double?
    public var log: Log
    public var coefficients: Int
    /// Time derivatives appended to each frame (`Deltas`, librosa's `feature.delta`): nil or 0
    /// none, 1 deltas, 2 deltas and delta-deltas. They need the whole utterance: `AudioEncoder`
    /// and `FeatureExtractor.features(of:)` add them, the streaming `push` does not.
    public var deltas: Int?

    public var bins: Int { fftLength / 2 + 1 }
    /// Features per frame before any deltas: what the streaming extractor produces.
    public var staticFeatureCount: Int {
        switch kind {
        case .spectrogram: return bins
        case .mel: return melBands
        case .mfcc: return coefficients
        }
    }
    /// Features per frame, deltas included.
    public var featureCount: Int { staticFeatureCount * (1 + (deltas ?? 0)) }

    /// The top-dB clamp applied once a whole file's maximum is known: spectrogram and mel
    /// features in decibels with a top dB (MFCCs clamp before their DCT, frame by frame); nil
    /// when there is none.
    public var topDBAfterward: Double? {
        guard kind != .mfcc, case let .decibels(_, topDB?) = log else { return nil }
        return topDB
    }

    public init(kind: Kind, sampleRate: Int, fftLength: Int, windowLength: Int? = nil, hop: Int, window: Window = .hann,
                periodic: Bool = true, center: Bool = true, padding: Padding = .reflect, power: Double = 2, melBands: Int = 80,
                melScale: MelScale = .slaney, melNorm: MelNorm = .slaney, minimumFrequency: Double = 0, maximumFrequency: Double? = nil,
                log: Log = .none, coefficients: Int = 13) {
        self.kind = kind
        self.sampleRate = sampleRate
        self.fftLength = fftLength
        self.windowLength = windowLength ?? fftLength
        self.hop = hop
        self.window = window
        self.periodic = periodic
        self.center = center
        self.padding = padding
        self.power = power
        self.melBands = melBands
        self.melScale = melScale
        self.melNorm = melNorm
        self.minimumFrequency = minimumFrequency
        self.maximumFrequency = maximumFrequency
        self.log = log
        self.coefficients = coefficients
    }

    /// The defaults of a library for one kind of feature (see ../reference/features.md (d)).
    public static func preset(_ preset: Preset, kind: Kind) -> FeatureConfiguration {
        switch preset {
        case .librosa:
            // librosa 0.11: stft(n_fft 2048, hop 512, hann, center, pad_mode 'constant'),
            // filters.mel(128, htk=False, norm='slaney'); mfcc = dct(power_to_db(mel)), 20 coefficients.
            return FeatureConfiguration(kind: kind, sampleRate: 22_050, fftLength: 2048, hop: 512, padding: .constant, melBands: 128,
                                        log: kind == .mfcc ? .decibels(amin: 1e-10, topDB: 80) : .none, coefficients: 20)
        case .torchaudio:
            // torchaudio: n_fft 400, hop 200, hann, center reflect, power 2, 128 HTK mels, no norm;
            // MFCC: 40 coefficients of AmplitudeToDB("power", top_db=80).
            return FeatureConfiguration(kind: kind, sampleRate: 16_000, fftLength: 400, hop: 200, melBands: 128, melScale: .htk,
                                        melNorm: .none, log: kind == .mfcc ? .decibels(amin: 1e-10, topDB: 80) : .none, coefficients: 40)
        case .wolfram:
            // Wolfram NetEncoder: 25 ms symmetric Hamming, offset 25/3 ms (134 samples), no centering,
            // 40 filters from 40 Hz to 8 kHz, 13 coefficients of the log mel.
            return FeatureConfiguration(kind: kind, sampleRate: 16_000, fftLength: 400, hop: 134, window: .hamming, periodic: false,
                                        center: false, padding: .constant, power: 1, melBands: 40, melScale: .htk, melNorm: .none,
                                        minimumFrequency: 40, maximumFrequency: 8000, log: kind == .spectrogram ? .none : .floor(1e-10),
                                        coefficients: 13)
        case .speech:
            // The spectrogram workload: 16 kHz, 25 ms periodic Hann, 10 ms hop, centered reflect,
            // power, 80 Slaney mels 0-8 kHz, ln(x + 1e-6).
            return FeatureConfiguration(kind: kind, sampleRate: 16_000, fftLength: 400, hop: 160, melBands: 80, maximumFrequency: 8000,
                                        log: .offset(1e-6), coefficients: 13)
        }
    }

    /// Throws on parameters the front end cannot use, naming them.
    public func validate() throws {
        func fail(_ m: String) -> AudioError { .invalidParameter(m) }
        // The bounds keep what a model file can ask for (its front end is read from the file)
        // within memory: the filter tables grow with the FFT length times the mel bands.
        guard sampleRate > 0, sampleRate <= 768_000 else { throw fail("sample rate \(sampleRate) (1 to 768000 Hz)") }
        guard fftLength >= 2, fftLength <= 1 << 15 else { throw fail("FFT length \(fftLength) (2 to 32768)") }
        guard windowLength >= 1, windowLength <= fftLength else { throw fail("window length \(windowLength) must be in 1...\(fftLength) (the FFT length)") }
        guard hop >= 1 else { throw fail("hop \(hop)") }
        guard power == 1 || power == 2 else { throw fail("power \(power) (1 magnitude or 2 power)") }
        if kind != .spectrogram {
            let top = maximumFrequency ?? Double(sampleRate) / 2
            guard melBands >= 1, melBands <= 1024 else { throw fail("mel bands \(melBands)") }
            guard minimumFrequency >= 0, top > minimumFrequency, top <= Double(sampleRate) / 2 + 1e-9 else {
                throw fail("mel range \(minimumFrequency)...\(top) Hz at \(sampleRate) Hz")
            }
        }
        if let d = deltas, !(0...2).contains(d) { throw fail("deltas \(d) (0 none, 1 deltas, 2 deltas and delta-deltas)") }
        if kind == .mfcc {
            guard coefficients >= 1, coefficients <= melBands else { throw fail("\(coefficients) MFCCs from \(melBands) mel bands") }
            if log == .none { throw fail("MFCCs need a log (e.g. .decibels or .offset)") }
        }
    }

    // MARK: - Tables

    /// The analysis window, zero-padded on both sides to `fftLength` (as librosa does).
    public func windowTable() -> [Double] {
        let n = windowLength
        let denominator = Double(periodic ? n : Swift.max(n - 1, 1))
        let (a, b) = window == .hann ? (0.5, 0.5) : (0.54, 0.46)
        let w = (0..<n).map { a - b * Foundation.cos(2 * Double.pi * Double($0) / denominator) }
        let left = (fftLength - n) / 2
        return [Double](repeating: 0, count: left) + w + [Double](repeating: 0, count: fftLength - n - left)
    }

    func hzToMel(_ f: Double) -> Double {
        switch melScale {
        case .htk: return 2595 * Foundation.log10(1 + f / 700)
        case .slaney:
            // Linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4).
            let fsp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fsp, step = Foundation.log(6.4) / 27
            return f >= minLogHz ? minLogMel + Foundation.log(f / minLogHz) / step : f / fsp
        }
    }

    func melToHz(_ m: Double) -> Double {
        switch melScale {
        case .htk: return 700 * (Foundation.pow(10, m / 2595) - 1)
        case .slaney:
            let fsp = 200.0 / 3, minLogHz = 1000.0, minLogMel = minLogHz / fsp, step = Foundation.log(6.4) / 27
            return m >= minLogMel ? minLogHz * Foundation.exp(step * (m - minLogMel)) : fsp * m
        }
    }

    /// The mel filterbank [melBands, bins]: triangles between mel-spaced edge frequencies over
    /// the FFT bin frequencies, each scaled by 2 / (f_high - f_low) with Slaney norm.
    public func melFilterbank() -> [[Double]] {
        let top = maximumFrequency ?? Double(sampleRate) / 2
        let low = hzToMel(minimumFrequency), high = hzToMel(top)
        let edges = (0..<(melBands + 2)).map { melToHz(low + (high - low) * Double($0) / Double(melBands + 1)) }
        let frequencies = (0..<bins).map { Double(sampleRate) / 2 * Double($0) / Double(bins - 1) }
        return (0..<melBands).map { m in
            let scale = melNorm == .slaney ? 2 / (edges[m + 2] - edges[m]) : 1
            return frequencies.map { f in
                let rising = (f - edges[m]) / (edges[m + 1] - edges[m])
                let falling = (edges[m + 2] - f) / (edges[m + 2] - edges[m + 1])
                return Swift.max(0, Swift.min(rising, falling)) * scale
            }
        }
    }

    /// The orthonormal DCT-II [coefficients, melBands]: c_k = s_k sum_n x_n cos(pi k (2n + 1) / 2N),
    /// s_0 = sqrt(1/N), s_k = sqrt(2/N).
    public func dctMatrix() -> [[Double]] {
        let n = Double(melBands)
        return (0..<coefficients).map { k in
            let s = k == 0 ? (1 / n).squareRoot() : (2 / n).squareRoot()
            return (0..<melBands).map { i in s * Foundation.cos(Double.pi * Double(k) * (2 * Double(i) + 1) / (2 * n)) }
        }
    }
}
