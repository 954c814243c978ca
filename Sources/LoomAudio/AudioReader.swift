import CSndFile
import Foundation
import LoomTensor

/// Why audio could not be read or encoded; every case names the file.
public enum AudioError: Error, CustomStringConvertible, Equatable {
    /// libsndfile could not open the file: `code` is its error class, `message` its text.
    case unreadable(path: String, code: Int, message: String)
    /// The header is readable but outside what Loom accepts (channels, rate, length).
    case unsupported(path: String, reason: String)
    /// Reading failed partway.
    case readFailed(path: String, message: String)
    /// Writing a file failed (nothing is left at the destination).
    case writeFailed(path: String, message: String)
    case invalidParameter(String)

    public var description: String {
        switch self {
        case let .unreadable(path, code, message):
            let kind = [1: "format not recognised", 2: "system error", 3: "malformed file", 4: "unsupported encoding"][code] ?? "error \(code)"
            return "\(path): cannot read audio (\(kind)): \(message)"
        case let .unsupported(path, reason): return "\(path): unsupported audio: \(reason)"
        case let .readFailed(path, message): return "\(path): reading audio failed: \(message)"
        case let .writeFailed(path, message): return "\(path): writing audio failed: \(message)"
        case let .invalidParameter(message): return "invalid audio parameter: \(message)"
        }
    }
}

/// How several channels become one.
public enum Downmix: Equatable, Sendable {
    /// The arithmetic mean of the channels (librosa's and Essentia's convention).
    case mean
    /// One channel, counted from 0.
    case channel(Int)
}

/// An audio file opened with libsndfile and read block by block as mono Float32 (WAV, FLAC,
/// OGG/Vorbis, Opus, MP3 and the other formats of the system's libsndfile; MP3 needs 1.1.0+).
///
/// The header is checked before anything is allocated: 1 to `maximumChannels` channels, a sample
/// rate of 1 Hz to 768 kHz; the length in the header is not trusted (a truncated file reports
/// fewer frames, and reading simply ends early), but reading stops with an error past
/// `maximumFrames`.
public final class AudioReader {
    public static let maximumChannels = 64
    public static let maximumSampleRate = 768_000
    /// The largest sample magnitude accepted (float files are normally within -1...1; a power
    /// spectrum of samples near 1e19 overflows Float32).
    public static let maximumSample: Float = 65_536

    /// libsndfile's message, with the cause spelled out where its words are cryptic: a WAV header
    /// with a rate or channel count of 0 is reported as "SF_INFO struct incomplete".
    static func explain(_ message: String, path: String) -> String {
        guard message.contains("SF_INFO"), let header = try? UserFile.prefix(path, count: 4096) else { return message }
        let bytes = [UInt8](header)
        guard bytes.count >= 12, bytes[0..<4].elementsEqual("RIFF".utf8), bytes[8..<12].elementsEqual("WAVE".utf8) else { return message }
        var at = 12
        while at + 8 <= bytes.count {
            let size = Int(bytes[at + 4]) | Int(bytes[at + 5]) << 8 | Int(bytes[at + 6]) << 16 | Int(bytes[at + 7]) << 24
            if bytes[at..<(at + 4)].elementsEqual("fmt ".utf8), at + 16 <= bytes.count {
                let channels = Int(bytes[at + 10]) | Int(bytes[at + 11]) << 8
                let rate = at + 16 <= bytes.count ? Int(bytes[at + 12]) | Int(bytes[at + 13]) << 8 | Int(bytes[at + 14]) << 16 | Int(bytes[at + 15]) << 24 : -1
                if rate == 0 { return "the WAV header gives a sample rate of 0 Hz" }
                if channels == 0 { return "the WAV header gives 0 channels" }
                return message
            }
            at += 8 + size + (size & 1)
        }
        return message
    }

    public let path: String
    public let sampleRate: Int
    public let channels: Int
    /// The frame count the header claims (a hint, not trusted).
    public let declaredFrames: Int
    public let downmix: Downmix
    public let maximumFrames: Int
    public private(set) var framesRead = 0
    private var file: OpaquePointer?
    private var interleaved: [Float] = []

    /// Opens `path`. `maximumFrames` defaults to 4 hours at the file's rate.
    public init(path: String, downmix: Downmix = .mean, maximumFrames: Int? = nil) throws {
        self.path = path
        var info = SF_INFO()
        // Regular files only, checked on the open descriptor: a FIFO or a device never blocks here.
        let descriptor: Int32
        do { descriptor = try UserFile.open(path, what: "audio file").descriptor } catch {
            throw AudioError.unreadable(path: path, code: 2, message: "\(error)")
        }
        guard let handle = sf_open_fd(descriptor, Int32(SFM_READ), &info, 1) else {
            let code = Int(sf_error(nil)), message = String(cString: sf_strerror(nil))
            let explained = Self.explain(message, path: path)
            throw AudioError.unreadable(path: path, code: explained == message ? code : 3, message: explained)
        }
        func fail(_ reason: String) -> AudioError {
            sf_close(handle)
            return AudioError.unsupported(path: path, reason: reason)
        }
        guard info.channels >= 1, Int(info.channels) <= Self.maximumChannels else {
            throw fail("\(info.channels) channels (Loom reads 1 to \(Self.maximumChannels))")
        }
        guard info.samplerate >= 1, Int(info.samplerate) <= Self.maximumSampleRate else {
            throw fail("sample rate \(info.samplerate) Hz (Loom reads 1 Hz to \(Self.maximumSampleRate) Hz)")
        }
        if case let .channel(c) = downmix, !(0..<Int(info.channels)).contains(c) {
            throw fail("channel \(c) requested from a file with \(info.channels) channels")
        }
        sampleRate = Int(info.samplerate)
        channels = Int(info.channels)
        declaredFrames = Int(Swift.max(info.frames, 0))
        self.downmix = downmix
        self.maximumFrames = maximumFrames ?? 4 * 3600 * Int(info.samplerate)
        file = handle
    }

    deinit { if let file { sf_close(file) } }

    /// The next block of at most `frames` mono samples, or nil at the end of the file.
    public func read(frames: Int = 65_536) throws -> [Float]? {
        guard let file, frames > 0 else { return nil }
        if interleaved.count < frames * channels { interleaved = [Float](repeating: 0, count: frames * channels) }
        let got = Int(interleaved.withUnsafeMutableBufferPointer { sf_readf_float(file, $0.baseAddress, sf_count_t(frames)) })
        if got <= 0 {
            let code = sf_error(file)
            if code != 0 { throw AudioError.readFailed(path: path, message: String(cString: sf_strerror(file))) }
            return nil
        }
        guard framesRead + got <= maximumFrames else {
            throw AudioError.unsupported(path: path, reason: "longer than the limit of \(maximumFrames) frames")
        }
        // NaN, infinity or samples so large that their squares overflow Float32 would make every
        // feature NaN: refused, naming the frame.
        if let bad = interleaved[0..<(got * channels)].firstIndex(where: { !($0.magnitude <= Self.maximumSample) }) {
            throw AudioError.unsupported(path: path, reason: "sample \(interleaved[bad]) at frame \(framesRead + bad / channels) "
                                         + "(samples must be finite and at most \(Int(Self.maximumSample)) in magnitude; float audio is normally within -1...1)")
        }
        framesRead += got
        if channels == 1 { return Array(interleaved[0..<got]) }
        var mono = [Float](repeating: 0, count: got)
        switch downmix {
        case .mean:
            let scale = 1 / Float(channels)
            for i in 0..<got {
                var sum: Float = 0
                for c in 0..<channels { sum += interleaved[i * channels + c] }
                mono[i] = sum * scale
            }
        case let .channel(c):
            for i in 0..<got { mono[i] = interleaved[i * channels + c] }
        }
        return mono
    }

    /// Every remaining sample.
    public func readAll() throws -> [Float] {
        var out: [Float] = []
        out.reserveCapacity(Swift.min(declaredFrames, maximumFrames))
        while let block = try read() { out += block }
        return out
    }
}

/// Mono audio in memory.
public struct Audio: Equatable, Sendable {
    public var samples: [Float]
    public var sampleRate: Int

    public init(samples: [Float], sampleRate: Int) {
        self.samples = samples
        self.sampleRate = sampleRate
    }

    /// Reads a whole file as mono, resampled to `sampleRate` when given.
    public static func read(path: String, sampleRate: Int? = nil, downmix: Downmix = .mean) throws -> Audio {
        let reader = try AudioReader(path: path, downmix: downmix)
        var samples = try reader.readAll()
        if let rate = sampleRate, rate != reader.sampleRate {
            let resampler = try Resampler(from: reader.sampleRate, to: rate)
            samples = try resampler.process(samples, isLast: true)
        }
        return Audio(samples: samples, sampleRate: sampleRate ?? reader.sampleRate)
    }

    /// Loudness normalization applied to a whole signal.
    public enum Normalization: Equatable, Sendable {
        case none
        /// Scale so the largest |sample| is `level` (Wolfram's {"Max", v}).
        case peak(Float)
        /// Scale so the root mean square is `level` (Wolfram's {"RMS", v}; 0.1 is -20 dB).
        case rms(Float)
    }

    /// The audio scaled as asked; silence stays silence.
    public func normalized(_ normalization: Normalization) -> Audio {
        let current: Float
        let target: Float
        switch normalization {
        case .none: return self
        case let .peak(level): target = level; current = samples.reduce(0) { Swift.max($0, Swift.abs($1)) }
        case let .rms(level):
            target = level
            current = samples.isEmpty ? 0 : Float((samples.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(samples.count)).squareRoot())
        }
        guard current > 0 else { return self }
        let scale = target / current
        return Audio(samples: samples.map { $0 * scale }, sampleRate: sampleRate)
    }
}
