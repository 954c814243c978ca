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
    /// Returns the maximum dB value (for a final top-dB clamp) when the log is in decibels.
    @discardableResult
    public func stream(path: String, into sink: ([Float]) throws -> Void) throws -> Double {
        let reader = try AudioReader(path: path, downmix: downmix)
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

    /// The features of a file in memory: [frames, featureCount].
    public func features(path: String) throws -> (values: [Float], frames: Int) {
        var values: [Float] = []
        let maximum = try stream(path: path) { values += $0 }
        if configuration.kind != .mfcc, case let .decibels(_, topDB?) = configuration.log {
            FeatureExtractor.clampDecibels(&values, maximum: maximum, topDB: topDB)
        }
        return (values, values.count / configuration.featureCount)
    }

    /// Encodes a file into `destination` (.npy or .csv), atomically.
    public func encode(path: String, to destination: URL, format: FeatureFileWriter.Format) throws -> Int {
        let writer = try FeatureFileWriter(destination: destination, format: format, columns: configuration.featureCount)
        let maximum = try stream(path: path) { try writer.append($0) }
        if configuration.kind != .mfcc, case let .decibels(_, topDB?) = configuration.log {
            if format == .npy {
                try writer.rewrite { FeatureExtractor.clampDecibels(&$0, maximum: maximum, topDB: topDB) }
            } else {
                throw AudioError.invalidParameter("a top-dB clamp needs .npy output (it rewrites the file once the maximum is known)")
            }
        }
        try writer.commit()
        return writer.rows
    }
}
