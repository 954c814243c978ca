import ArgumentParser
import Foundation
import Loom

extension FeatureConfiguration.Kind: ExpressibleByArgument {}
extension FeatureConfiguration.Preset: ExpressibleByArgument {}
extension FeatureConfiguration.Window: ExpressibleByArgument {}
extension FeatureConfiguration.MelScale: ExpressibleByArgument {}
extension FeatureConfiguration.MelNorm: ExpressibleByArgument {}
extension FeatureConfiguration.Padding: ExpressibleByArgument {}
extension FeatureFileWriter.Format: ExpressibleByArgument {}

/// `loom encode-audio`: audio files to feature matrices, one file per input.
struct EncodeAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "encode-audio",
        abstract: "Encode audio files as spectrogram, mel or MFCC frame sequences (frames x features).",
        discussion: """
            Reads WAV, FLAC, OGG/Vorbis, Opus, MP3 (whatever the system's libsndfile reads), downmixes to mono \
            by the mean, resamples to the preset's rate with libsamplerate, and writes FILE.npy (float32, NumPy \
            .npy 1.0) or FILE.csv into --output. Unreadable files are reported by name; the others are still \
            encoded, and the exit status is non-zero at the end.
            """)

    @Argument(help: "Audio files.") var files: [String]
    @Option(help: "spectrogram, mel or mfcc.") var features: FeatureConfiguration.Kind = .mel
    @Option(help: ArgumentHelp("Whose defaults the other options start from.", discussion: """
        librosa: 22.05 kHz, n_fft 2048, hop 512, 128 Slaney mels, 20 MFCCs of dB; \
        torchaudio: 16 kHz, n_fft 400, hop 200, 128 HTK mels, 40 MFCCs of dB; \
        wolfram: 16 kHz, 25 ms symmetric Hamming, hop 134, 40 HTK mels 40 Hz-8 kHz, 13 MFCCs; \
        speech: 16 kHz, 25 ms Hann, 10 ms hop, 80 Slaney mels 0-8 kHz, ln(x+1e-6), 13 MFCCs.
        """))
    var preset: FeatureConfiguration.Preset = .speech
    @Option(help: "Sample rate the audio is resampled to.") var sampleRate: Int?
    @Option(help: "FFT length in samples.") var nFFT: Int?
    @Option(help: "Window length in samples (<= FFT length).") var winLength: Int?
    @Option(help: "Hop in samples.") var hop: Int?
    @Option(help: "hann or hamming.") var window: FeatureConfiguration.Window?
    @Flag(inversion: .prefixedNo, help: "Periodic window (else symmetric).") var periodic: Bool?
    @Flag(inversion: .prefixedNo, help: "Center frames with padding of n_fft/2.") var center: Bool?
    @Option(help: "reflect or constant padding when centered.") var pad: FeatureConfiguration.Padding?
    @Option(help: "2 for power, 1 for magnitude.") var power: Double?
    @Option(help: "Number of mel bands.") var mels: Int?
    @Option(help: "slaney or htk mel scale.") var melScale: FeatureConfiguration.MelScale?
    @Option(help: "slaney or none filter normalization.") var melNorm: FeatureConfiguration.MelNorm?
    @Option(help: "Lowest mel frequency, Hz.") var fmin: Double?
    @Option(help: "Highest mel frequency, Hz.") var fmax: Double?
    @Option(help: "Log: none, ln+OFFSET (ln(x+OFFSET)), floor+FLOOR (ln(max(x,FLOOR))), db or db+TOPDB.") var log: String?
    @Option(help: "Number of MFCCs.") var mfcc: Int?
    @Option(help: "Time derivatives appended to each frame (librosa's feature.delta, width 9): 0, 1 deltas, 2 deltas and delta-deltas.")
    var deltas: Int?
    @Option(help: "Output directory (created if missing).") var output: String
    @Option(help: "npy or csv.") var format: FeatureFileWriter.Format = .npy

    func parseLog(_ text: String) throws -> FeatureConfiguration.Log {
        let parts = text.split(separator: "+", maxSplits: 1).map(String.init)
        let number = parts.count == 2 ? Double(parts[1]) : nil
        switch parts[0] {
        case "none" where parts.count == 1: return .none
        case "ln" where number != nil: return .offset(number!)
        case "floor" where number != nil: return .floor(number!)
        case "db": return .decibels(amin: 1e-10, topDB: number)
        default: throw ValidationError("--log \(text): expected none, ln+OFFSET, floor+FLOOR, db or db+TOPDB")
        }
    }

    func makeConfiguration() throws -> FeatureConfiguration {
        var c = FeatureConfiguration.preset(preset, kind: features)
        if let v = sampleRate { c.sampleRate = v }
        if let v = nFFT { c.fftLength = v; if winLength == nil { c.windowLength = v } }
        if let v = winLength { c.windowLength = v }
        if let v = hop { c.hop = v }
        if let v = window { c.window = v }
        if let v = periodic { c.periodic = v }
        if let v = center { c.center = v }
        if let v = pad { c.padding = v }
        if let v = power { c.power = v }
        if let v = mels { c.melBands = v }
        if let v = melScale { c.melScale = v }
        if let v = melNorm { c.melNorm = v }
        if let v = fmin { c.minimumFrequency = v }
        if let v = fmax { c.maximumFrequency = v }
        if let v = log { c.log = try parseLog(v) }
        if let v = mfcc { c.coefficients = v }
        if let v = deltas { c.deltas = v }
        do { try c.validate() } catch { throw ValidationError("\(error)") }
        return c
    }

    /// One distinct output name per input: the base name, or for a base name already taken (the
    /// same name in another folder, or a name like `s-2` that a numbering would produce) the
    /// first free `base-N`, N from 2.
    static func outputNames(_ files: [String]) -> [String] {
        var taken = Set<String>()
        return files.map { file in
            let base = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
            var name = base, n = 1
            while taken.contains(name) {
                n += 1
                name = "\(base)-\(n)"
            }
            taken.insert(name)
            return name
        }
    }

    func validate() throws {
        try validatingOptions { try OptionRange.path("--output", output) }
        guard !files.isEmpty else { throw ValidationError("give at least one audio file") }
        // Checked here, not in run: a bad --log or window shows this subcommand's usage.
        _ = try makeConfiguration()
    }

    func run() throws {
        let encoder = try AudioEncoder(configuration: makeConfiguration())
        let directory = URL(fileURLWithPath: output)
        try UserFile.makeDirectory(directory)
        let progress = ProgressLine(logEvery: max(files.count / 20, 1), toStandardError: true)
        let start = Date()
        var failures: [String] = []
        let names = Self.outputNames(files)
        for (i, file) in files.enumerated() {
            let destination = directory.appendingPathComponent("\(names[i]).\(format.rawValue)")
            do {
                let frames = try encoder.encode(path: file, to: destination, format: format)
                if files.count == 1 { FileHandle.standardError.write(Data("\(file): \(frames) frames -> \(destination.path)\n".utf8)) }
            } catch {
                failures.append(file)
                FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            }
            if files.count > 1 {
                let done = i + 1, eta = Date().timeIntervalSince(start) / Double(done) * Double(files.count - done)
                progress.show("\(done)/\(files.count)  failed \(failures.count)  eta \(ProgressLine.duration(eta))", count: done, final: done == files.count)
            }
        }
        if !failures.isEmpty {
            FileHandle.standardError.write(Data("\(failures.count) of \(files.count) files failed: \(failures.joined(separator: ", "))\n".utf8))
            throw ExitCode(1)
        }
    }
}
