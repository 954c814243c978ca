import Foundation

/// Audio files to feature matrices: read with libsndfile in blocks, downmix, resample to the
/// configuration's rate, normalize, and run the streaming front end, so memory stays bounded
/// however long the file is.
public struct AudioEncoder: Sendable {
    public var configuration: FeatureConfiguration
    public var downmix: Downmix
    /// Peak or RMS normalization needs the whole signal, so it turns off streaming.
    public var normalization: Audio.Normalization
    public var blockFrames: Int

    public init(configuration: FeatureConfiguration, downmix: Downmix = .mean, normalization: Audio.Normalization = .none,
                blockFrames: Int = 65_536) throws {
        try configuration.validate()
        self.configuration = configuration
        self.downmix = downmix
        self.normalization = normalization
        self.blockFrames = blockFrames
    }

    /// Runs the file through the front end, handing each block of finished frames to `sink`.
    /// Returns the maximum dB value (for a final top-dB clamp) when the log is in decibels. With
    /// deltas, which need the whole file, `sink` gets one block of its final (clamped) features
    /// and the value returned is -infinity: nothing is left to clamp.
    @discardableResult
    public func stream(path: String, into output: ([Float]) throws -> Void) throws -> Double {
        guard (configuration.deltas ?? 0) > 0 else { return try checked(path: path, limit: nil, sink: output) }
        try output(features(path: path).values)
        return -.infinity
    }

    func tooManyValues(path: String, limit: Int) -> AudioError {
        AudioError.unsupported(path: path, reason: "its features would exceed \(limit) values "
                               + "(\(configuration.featureCount) features per frame, hop \(configuration.hop) at \(configuration.sampleRate) Hz)")
    }

    /// The front end's blocks of static features, each refused when a feature is not finite (the
    /// log of a zero power with no offset): an error, never a file of NaN written with success.
    private func checked(path: String, limit: Int?, sink: ([Float]) throws -> Void) throws -> Double {
        let featureCount = configuration.staticFeatureCount
        return try unchecked(path: path, limit: limit) { block in
            if let bad = block.firstIndex(where: { !$0.isFinite }) {
                throw AudioError.unsupported(path: path, reason: "feature \(bad % featureCount) of a frame is \(block[bad]) "
                                             + "(a log of zero power? give the log an offset or floor)")
            }
            try sink(block)
        }
    }

    private func unchecked(path: String, limit: Int?, sink: ([Float]) throws -> Void) throws -> Double {
        let reader = try AudioReader(path: path, downmix: downmix)
        if let limit {
            // Refused at once when the header's length already implies too many values (the
            // running count in `features(path:)` still holds if the header understates it).
            let frames = Double(reader.declaredFrames) * Double(configuration.sampleRate) / Double(reader.sampleRate) / Double(configuration.hop)
            if frames * Double(configuration.featureCount) > Double(limit) { throw tooManyValues(path: path, limit: limit) }
        }
        let extractor = try FeatureExtractor(configuration)
        let resampler = reader.sampleRate == configuration.sampleRate ? nil
            : try Resampler(from: reader.sampleRate, to: configuration.sampleRate)
        if normalization != .none {
            var audio = Audio(samples: try reader.readAll(), sampleRate: reader.sampleRate)
            if let resampler { audio.samples = try resampler.process(audio.samples, isLast: true) }
            try sink(extractor.push(audio.normalized(normalization).samples))
        } else {
            while let block = try reader.read(frames: blockFrames) {
                try sink(extractor.push(resampler.map { try $0.process(block, isLast: false) } ?? block))
            }
            if let resampler { try sink(extractor.push(resampler.process([], isLast: true))) }
        }
        guard extractor.samplesSeen > 0 else {
            throw AudioError.unsupported(path: path, reason: "the file holds no samples")
        }
        try sink(extractor.finish())
        return extractor.maximumDecibels
    }

    /// The most feature values `features(path:)` holds in memory (512 MiB of Float32): a long
    /// file with a tiny hop (a model file's front end is not trusted) is refused, not swapped.
    public static let maximumValuesInMemory = 1 << 27

    /// The features of a file in memory, clamped and with their deltas: [frames, featureCount].
    public func features(path: String) throws -> (values: [Float], frames: Int) {
        let limit = Self.maximumValuesInMemory
        var values: [Float] = []
        let maximum = try checked(path: path, limit: limit) { block in
            guard values.count + block.count <= limit else { throw tooManyValues(path: path, limit: limit) }
            values += block
        }
        if let topDB = configuration.topDBAfterward { FeatureExtractor.clampDecibels(&values, maximum: maximum, topDB: topDB) }
        let featureCount = configuration.staticFeatureCount, frames = values.count / featureCount
        return (Deltas.appended(values, frames: frames, features: featureCount, order: configuration.deltas ?? 0), frames)
    }

    /// A file's samples as the front end takes them: downmixed, resampled to the configuration's
    /// rate, normalized as set. With `features(samples:)`, the waveform can be changed in
    /// between (`WaveformAugment`).
    public func samples(path: String) throws -> [Float] {
        let reader = try AudioReader(path: path, downmix: downmix)
        var audio = Audio(samples: try reader.readAll(), sampleRate: reader.sampleRate)
        guard !audio.samples.isEmpty else { throw AudioError.unsupported(path: path, reason: "the file holds no samples") }
        if reader.sampleRate != configuration.sampleRate {
            audio.samples = try Resampler(from: reader.sampleRate, to: configuration.sampleRate).process(audio.samples, isLast: true)
        }
        return normalization == .none ? audio.samples : audio.normalized(normalization).samples
    }

    /// The features of samples at the configuration's rate, clamped and with their deltas:
    /// [frames, featureCount], as `features(path:)` gives them for a file.
    public func features(samples: [Float]) throws -> (values: [Float], frames: Int) {
        guard !samples.isEmpty else { throw AudioError.invalidParameter("no samples to encode") }
        let extractor = try FeatureExtractor(configuration)
        var values = extractor.push(samples)
        values += try extractor.finish()
        if let bad = values.firstIndex(where: { !$0.isFinite }) {
            throw AudioError.invalidParameter("feature \(bad % configuration.staticFeatureCount) of a frame is \(values[bad]) (a log of zero power?)")
        }
        if let topDB = configuration.topDBAfterward { FeatureExtractor.clampDecibels(&values, maximum: extractor.maximumDecibels, topDB: topDB) }
        let featureCount = configuration.staticFeatureCount, frames = values.count / featureCount
        return (Deltas.appended(values, frames: frames, features: featureCount, order: configuration.deltas ?? 0), frames)
    }

    /// Encodes a file into `destination` (.npy or .csv), atomically. Streams it, unless deltas
    /// need the whole file in memory.
    public func encode(path: String, to destination: URL, format: FeatureFileWriter.Format) throws -> Int {
        let writer = try FeatureFileWriter(destination: destination, format: format, columns: configuration.featureCount)
        if (configuration.deltas ?? 0) > 0 {
            try writer.append(features(path: path).values)
        } else {
            let maximum = try checked(path: path, limit: nil) { try writer.append($0) }
            if let topDB = configuration.topDBAfterward {
                guard format == .npy else {
                    throw AudioError.invalidParameter("a top-dB clamp needs .npy output (it rewrites the file once the maximum is known)")
                }
                try writer.rewrite { FeatureExtractor.clampDecibels(&$0, maximum: maximum, topDB: topDB) }
            }
        }
        try writer.commit()
        return writer.rows
    }
}
