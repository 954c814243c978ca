import CSndFile
import Foundation

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
        guard let handle = sf_open(path, Int32(SFM_READ), &info) else {
            let code = Int(sf_error(nil))
            throw AudioError.unreadable(path: path, code: code, message: String(cString: sf_strerror(nil)))
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
        framesRead += got
        guard framesRead <= maximumFrames else {
            throw AudioError.unsupported(path: path, reason: "longer than the limit of \(maximumFrames) frames")
        }
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
