import CSndFile
import Foundation

/// Writes mono audio with libsndfile, atomically: the samples go to a hidden sibling file that is
/// renamed over the destination only once complete, so a failure leaves nothing behind.
public enum AudioWriter {
    /// Container and sample encoding of a written file.
    public enum Format: Sendable {
        /// WAV with 16-bit integer samples (what most tools read).
        case wav16
        /// WAV with 32-bit float samples (lossless for Loom's Float32 audio).
        case wavFloat
        /// FLAC, 16-bit.
        case flac16

        var code: Int32 {
            switch self {
            case .wav16: return Int32(SF_FORMAT_WAV | SF_FORMAT_PCM_16)
            case .wavFloat: return Int32(SF_FORMAT_WAV | SF_FORMAT_FLOAT)
            case .flac16: return Int32(SF_FORMAT_FLAC | SF_FORMAT_PCM_16)
            }
        }
    }

    /// Writes `audio` to `url`. Samples outside [-1, 1] are clipped in integer formats.
    public static func write(_ audio: Audio, to url: URL, format: Format = .wav16) throws {
        guard audio.sampleRate >= 1, audio.sampleRate <= AudioReader.maximumSampleRate else {
            throw AudioError.invalidParameter("sample rate \(audio.sampleRate) Hz")
        }
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).partial")
        var info = SF_INFO()
        info.samplerate = Int32(audio.sampleRate)
        info.channels = 1
        info.format = format.code
        guard let file = sf_open(temporary.path, Int32(SFM_WRITE), &info) else {
            throw AudioError.writeFailed(path: url.path, message: String(cString: sf_strerror(nil)))
        }
        var complete = false
        defer { if !complete { unlink(temporary.path) } }
        sf_command(file, Int32(SFC_SET_CLIPPING), nil, Int32(SF_TRUE))
        let written = audio.samples.withUnsafeBufferPointer { sf_writef_float(file, $0.baseAddress, sf_count_t($0.count)) }
        let message = String(cString: sf_strerror(file))
        guard sf_close(file) == 0, Int(written) == audio.samples.count else {
            throw AudioError.writeFailed(path: url.path, message: "stopped after \(written) of \(audio.samples.count) samples: \(message)")
        }
        guard rename(temporary.path, url.path) == 0 else {
            throw AudioError.writeFailed(path: url.path, message: "renaming the finished file failed: \(String(cString: strerror(errno)))")
        }
        complete = true
    }
}
