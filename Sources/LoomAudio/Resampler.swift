import CSampleRate

/// Sample-rate conversion with libsamplerate (band-limited sinc interpolation), streaming: feed
/// blocks in order, the last one with `isLast`.
public final class Resampler {
    /// libsamplerate's sinc converters (SRC_SINC_BEST_QUALITY, MEDIUM_QUALITY, FASTEST).
    public enum Quality: Int32, Sendable {
        case best = 0, medium = 1, fastest = 2
    }

    public let sourceRate: Int, targetRate: Int
    private let state: OpaquePointer
    private let ratio: Double

    public init(from sourceRate: Int, to targetRate: Int, quality: Quality = .medium) throws {
        guard sourceRate > 0, targetRate > 0 else {
            throw AudioError.invalidParameter("sample rates must be positive (from \(sourceRate) to \(targetRate))")
        }
        ratio = Double(targetRate) / Double(sourceRate)
        guard ratio >= 1.0 / 256, ratio <= 256 else {
            throw AudioError.invalidParameter("resampling ratio \(ratio) is outside libsamplerate's 1/256...256")
        }
        var error: Int32 = 0
        guard let state = src_new(quality.rawValue, 1, &error) else {
            throw AudioError.invalidParameter("libsamplerate: \(String(cString: src_strerror(error)))")
        }
        self.state = state
        self.sourceRate = sourceRate
        self.targetRate = targetRate
    }

    deinit { src_delete(state) }

    /// Converts the next block; returns the samples produced so far (the converter keeps a
    /// short history, flushed by the last call).
    public func process(_ input: [Float], isLast: Bool) throws -> [Float] {
        var output: [Float] = []
        var chunk = [Float](repeating: 0, count: Int(Double(Swift.max(input.count, 1024)) * ratio) + 256)
        var offset = 0
        while true {
            var data = SRC_DATA()
            let produced: Int, used: Int
            let remaining = input.count - offset
            let status: Int32 = input.withUnsafeBufferPointer { inp in
                chunk.withUnsafeMutableBufferPointer { out in
                    data.data_in = remaining > 0 ? inp.baseAddress.map { $0 + offset } : nil
                    data.input_frames = remaining
                    data.data_out = out.baseAddress
                    data.output_frames = out.count
                    data.end_of_input = isLast ? 1 : 0
                    data.src_ratio = ratio
                    return src_process(state, &data)
                }
            }
            guard status == 0 else { throw AudioError.invalidParameter("libsamplerate: \(String(cString: src_strerror(status)))") }
            produced = data.output_frames_gen
            used = data.input_frames_used
            output += chunk[0..<produced]
            offset += used
            // Done when all input is consumed and, at the end, nothing more comes out.
            if offset >= input.count && (produced == 0 || !isLast) { break }
        }
        return output
    }
}
