import LoomTensor

/// SpecAugment's masking (Park et al. 2019): during training, each utterance's features
/// [frames, features] get `frequencyMasks` bands of f ~ U[0, frequencyWidth] consecutive
/// features and `timeMasks` spans of t ~ U[0, min(timeWidth, timeRatio x frames)] consecutive
/// frames replaced by the utterance's mean of each feature (so that after per-utterance mean
/// normalization a masked value is 0, as in the paper, which masks normalized features with 0).
/// Each mask's start is uniform over the positions where it fits. Time warping (before the
/// masks, when `timeWarp` W > 0): a frame c uniform in [W, T - W) moves to c' uniform in
/// [c - W, c + W] (kept inside the utterance), and the frames before and after c are stretched
/// linearly onto [0, c') and [c', T); an utterance of at most 2 W frames is not warped (as in
/// ESPnet and Lhotse; the paper's W = 80 frames is for LibriSpeech's long utterances).
/// With deltas (`FeatureConfiguration.deltas`) a frame's derivative columns count as features too:
/// a frequency mask may fall on them.
///
/// The paper's LibriSpeech policies, for 80 mel bands of 10 ms frames: `librispeechBasic` (LB)
/// and `librispeechDouble` (LD); `scaled(toFeatures:)` keeps a policy's share of the bands for
/// another feature count.
///
/// ```swift
/// var generator = SeededGenerator(seed: 1)
/// SpecAugment.librispeechDouble.scaled(toFeatures: 40).apply(to: &features, frames: frames, features: 40, using: &generator)
/// ```
public struct SpecAugment: Codable, Equatable, Sendable {
    public var frequencyMasks: Int
    public var frequencyWidth: Int
    public var timeMasks: Int
    public var timeWidth: Int
    /// A time mask covers at most this share of the utterance's frames (the paper's p).
    public var timeRatio: Double
    /// The time warp parameter W in frames (0: no warping).
    public var timeWarp: Int

    public init(frequencyMasks: Int, frequencyWidth: Int, timeMasks: Int, timeWidth: Int, timeRatio: Double = 1, timeWarp: Int = 0) {
        (self.frequencyMasks, self.frequencyWidth, self.timeMasks, self.timeWidth, self.timeRatio, self.timeWarp) =
            (frequencyMasks, frequencyWidth, timeMasks, timeWidth, timeRatio, timeWarp)
    }

    /// LB's masks: one frequency mask of up to 27 bands, one time mask of up to 100 frames. The
    /// paper's policy also warps time with W = 80 (`withTimeWarp(80)`); warping is optional here.
    public static let librispeechBasic = SpecAugment(frequencyMasks: 1, frequencyWidth: 27, timeMasks: 1, timeWidth: 100, timeRatio: 1)
    /// LD's masks: two frequency masks of up to 27 bands, two time masks of up to 100 frames and a
    /// fifth of the utterance each (the paper's W is 80 here too).
    public static let librispeechDouble = SpecAugment(frequencyMasks: 2, frequencyWidth: 27, timeMasks: 2, timeWidth: 100, timeRatio: 0.2)

    /// The policy with time warping of parameter `frames` (0: none).
    public func withTimeWarp(_ frames: Int) -> SpecAugment {
        var policy = self
        policy.timeWarp = frames
        return policy
    }

    /// The policies by name, as configurations and command lines write them: "lb", "ld"; "none"
    /// is nil.
    public static let named: [String: SpecAugment?] = ["none": nil, "lb": librispeechBasic, "ld": librispeechDouble]

    /// Masks every example's features (`features` [frames, features] per example) with one
    /// draw each from `source`, when `policy` is set and layers are in the training phase
    /// (`LearningPhase.training`); otherwise returns the examples unchanged.
    public static func masking<Example>(_ examples: [Example], policy: SpecAugment?, training: Bool, source: RandomSource,
                                        features: WritableKeyPath<Example, [Float]>, frames: KeyPath<Example, Int>) -> [Example] {
        guard let policy, training else { return examples }
        return source.withGenerator { generator in
            examples.map { example in
                var masked = example
                let count = example[keyPath: frames]
                guard count > 0 else { return masked }
                let width = example[keyPath: features].count / count
                policy.scaled(toFeatures: width).apply(to: &masked[keyPath: features], frames: count, features: width, using: &generator)
                return masked
            }
        }
    }

    /// The policy with its frequency width scaled from the paper's 80 bands to `count` features.
    public func scaled(toFeatures count: Int) -> SpecAugment {
        var policy = self
        policy.frequencyWidth = Swift.max(1, (frequencyWidth * count + 40) / 80)
        return policy
    }

    /// Checks the settings: counts and widths at least 0, a ratio in [0, 1].
    public func validate() throws {
        func fail(_ message: String) -> TensorError { .invalidArgument(op: "SpecAugment", message: message) }
        for (name, value) in [("frequency masks", frequencyMasks), ("frequency width", frequencyWidth), ("time masks", timeMasks),
                              ("time width", timeWidth), ("time warp", timeWarp)] where !(0...10_000).contains(value) {
            throw fail("\(name) \(value) is not in 0...10000")
        }
        guard (0...1).contains(timeRatio) else { throw fail("time ratio \(timeRatio) is not in [0, 1]") }
    }

    /// Masks `values` ([frames, features], row-major) in place, drawing from `generator`.
    public func apply(to values: inout [Float], frames: Int, features: Int, using generator: inout SeededGenerator) {
        guard frames > 0, features > 0, values.count == frames * features else { return }
        if timeWarp > 0 && frames > 2 * timeWarp {
            let center = Self.uniform(timeWarp...(frames - timeWarp - 1), &generator)
            let moved = Swift.min(Swift.max(Self.uniform((center - timeWarp)...(center + timeWarp), &generator), 1), frames - 1)
            values = Self.stretched(values, rows: 0..<center, to: moved, features: features)
                + Self.stretched(values, rows: center..<frames, to: frames - moved, features: features)
        }
        var mean = [Float](repeating: 0, count: features)
        for t in 0..<frames { for k in 0..<features { mean[k] += values[t * features + k] } }
        for k in 0..<features { mean[k] /= Float(frames) }
        // A width uniform over 0...limit, then a start uniform over the places it fits.
        func span(limit: Int, within size: Int) -> Range<Int> {
            let width = Swift.min(Self.uniform(0...Swift.max(0, limit), &generator), size)
            let start = Self.uniform(0...(size - width), &generator)
            return start..<(start + width)
        }
        for _ in 0..<frequencyMasks {
            let band = span(limit: frequencyWidth, within: features)
            for t in 0..<frames { for k in band { values[t * features + k] = mean[k] } }
        }
        let longest = Swift.min(timeWidth, Int(timeRatio * Double(frames)))
        for _ in 0..<timeMasks {
            for t in span(limit: longest, within: frames) { for k in 0..<features { values[t * features + k] = mean[k] } }
        }
    }

    /// Rows `rows` of `values` ([rows, features]) resampled linearly to `count` rows, each output
    /// row i taken at source position (i + 1/2) n / count - 1/2 (pixel centres, as
    /// `torch.nn.functional.interpolate` without aligned corners), clamped to the rows.
    static func stretched(_ values: [Float], rows: Range<Int>, to count: Int, features: Int) -> [Float] {
        let n = rows.count, scale = Double(n) / Double(count)
        var out = [Float](repeating: 0, count: count * features)
        for i in 0..<count {
            let position = Swift.min(Swift.max((Double(i) + 0.5) * scale - 0.5, 0), Double(n - 1))
            let below = Int(position), above = Swift.min(below + 1, n - 1)
            let w = Float(position - Double(below))
            let a = (rows.lowerBound + below) * features, b = (rows.lowerBound + above) * features
            for k in 0..<features { out[i * features + k] = (1 - w) * values[a + k] + w * values[b + k] }
        }
        return out
    }

    /// A whole number uniform over `range`, from one draw of the generator's unit interval.
    static func uniform(_ range: ClosedRange<Int>, _ generator: inout SeededGenerator) -> Int {
        range.lowerBound + Swift.min(range.count - 1, Int(generator.nextUnit() * Double(range.count)))
    }
}
