import Foundation
import LoomAudio
import LoomTensor
import XCTest

/// SpecAugment's masks: where they fall, what they write, their limits, and that they come from
/// the run's seeded source (so a restored source replays them) and only in training.
final class SpecAugmentTests: XCTestCase {
    /// Features [frames, features] with distinct values, none equal to a column mean.
    func ramp(frames: Int, features: Int) -> [Float] {
        (0..<(frames * features)).map { i in Float(i % features) * 10 + Float((i / features) * (i / features)) * 0.01 + 0.5 }
    }

    func testMasksReplaceWholeBandsAndSpansByTheMeanWithinTheirLimits() {
        let (frames, features) = (60, 20)
        let policy = SpecAugment(frequencyMasks: 2, frequencyWidth: 5, timeMasks: 2, timeWidth: 30, timeRatio: 0.2)
        let original = ramp(frames: frames, features: features)
        let mean = (0..<features).map { k in (0..<frames).reduce(Float(0)) { $0 + original[$1 * features + k] } / Float(frames) }
        var generator = SeededGenerator(seed: 3)
        var sawMask = false
        for _ in 0..<200 {
            var values = original
            policy.apply(to: &values, frames: frames, features: features, using: &generator)
            // A value changes only to its feature's mean; masked cells form whole bands or whole frames.
            var bands = Set<Int>(), spans = Set<Int>()
            for t in 0..<frames {
                for k in 0..<features where values[t * features + k] != original[t * features + k] {
                    XCTAssertEqual(values[t * features + k], mean[k], accuracy: 1e-4)
                    let wholeBand = (0..<frames).allSatisfy { abs(values[$0 * features + k] - mean[k]) < 1e-4 }
                    let wholeFrame = (0..<features).allSatisfy { abs(values[t * features + $0] - mean[$0]) < 1e-4 }
                    XCTAssertTrue(wholeBand || wholeFrame, "cell (\(t), \(k)) masked alone")
                    if wholeBand { bands.insert(k) }
                    if wholeFrame && !wholeBand { spans.insert(t) }
                }
            }
            // Two bands of at most 5, two spans of at most min(30, 0.2 x 60) = 12 frames.
            XCTAssertLessThanOrEqual(bands.count, 10)
            XCTAssertLessThanOrEqual(spans.count, 24)
            sawMask = sawMask || !bands.isEmpty || !spans.isEmpty
        }
        XCTAssertTrue(sawMask)
        // No masks, or no room: unchanged.
        var values = original
        SpecAugment(frequencyMasks: 0, frequencyWidth: 5, timeMasks: 0, timeWidth: 5).apply(to: &values, frames: frames, features: features, using: &generator)
        XCTAssertEqual(values, original)
    }

    /// Widths are uniform over 0...limit: over many draws every width appears, none beyond.
    func testWidthsCoverTheirWholeRange() {
        var generator = SeededGenerator(seed: 11)
        var seen = Set<Int>()
        for _ in 0..<2000 {
            // Feature k's mean is 36 + k, a value no frame holds: masked cells show.
            var masked = (0..<(10 * 8)).map { Float($0) }
            SpecAugment(frequencyMasks: 1, frequencyWidth: 4, timeMasks: 0, timeWidth: 0).apply(to: &masked, frames: 10, features: 8, using: &generator)
            let width = (0..<8).filter { k in masked[k] != Float(k) }.count
            seen.insert(width)
        }
        XCTAssertEqual(seen, Set(0...4))
    }

    func testPoliciesAndScaling() throws {
        XCTAssertEqual(SpecAugment.librispeechDouble.scaled(toFeatures: 80), SpecAugment.librispeechDouble)
        XCTAssertEqual(SpecAugment.librispeechDouble.scaled(toFeatures: 40).frequencyWidth, 14)
        XCTAssertEqual(SpecAugment.librispeechBasic.timeRatio, 1)
        XCTAssertEqual(SpecAugment.librispeechBasic.timeWarp, 0)
        XCTAssertEqual(SpecAugment.librispeechBasic.withTimeWarp(80).timeWarp, 80)
        XCTAssertThrowsError(try SpecAugment(frequencyMasks: 1, frequencyWidth: 2, timeMasks: 1, timeWidth: 2, timeWarp: -1).validate())
        XCTAssertEqual(Set(SpecAugment.named.keys), ["none", "lb", "ld"])
        XCTAssertThrowsError(try SpecAugment(frequencyMasks: -1, frequencyWidth: 2, timeMasks: 1, timeWidth: 2).validate())
        XCTAssertThrowsError(try SpecAugment(frequencyMasks: 1, frequencyWidth: 2, timeMasks: 1, timeWidth: 2, timeRatio: 1.5).validate())
        XCTAssertNoThrow(try SpecAugment.librispeechBasic.validate())
    }

    /// Time warping on a ramp (frame t holds t + 100 k in feature k): every feature moves with
    /// the same warp, time stays in order, no frame moves by more than W, and an utterance of at most 2 W frames is left
    /// as it is without a draw.
    func testTimeWarpStretchesTimeMonotonicallyWithinW() {
        let (frames, features, w) = (50, 3, 5)
        let original = (0..<(frames * features)).map { Float($0 / features) + 100 * Float($0 % features) }
        let policy = SpecAugment(frequencyMasks: 0, frequencyWidth: 0, timeMasks: 0, timeWidth: 0, timeWarp: w)
        var generator = SeededGenerator(seed: 5)
        var largest = 0.0, changed = 0
        for _ in 0..<300 {
            var values = original
            policy.apply(to: &values, frames: frames, features: features, using: &generator)
            XCTAssertEqual(values.count, original.count)
            let time = (0..<frames).map { Double(values[$0 * features]) }
            for t in 0..<frames {
                for k in 1..<features { XCTAssertEqual(Double(values[t * features + k]) - 100 * Double(k), time[t], accuracy: 1e-3) }
                if t > 0 { XCTAssertGreaterThanOrEqual(time[t], time[t - 1] - 1e-4) }
                XCTAssertLessThanOrEqual(abs(time[t] - Double(t)), Double(w) + 1e-4, "frame \(t)")
                largest = max(largest, abs(time[t] - Double(t)))
            }
            if values != original { changed += 1 }
        }
        XCTAssertGreaterThan(changed, 200, "most draws move the centre")
        XCTAssertGreaterThan(largest, Double(w) - 1.5, "warps reach about W")
        var short = (0..<(10 * features)).map(Float.init)
        let before = generator.state
        policy.apply(to: &short, frames: 10, features: features, using: &generator)
        XCTAssertEqual(short, (0..<(10 * features)).map(Float.init))
        XCTAssertEqual(generator.state, before)
    }

    struct Example { var features: [Float]; var frames: Int }

    /// Masks come only in training and only from `source`: the same generator state gives the
    /// same masks (a checkpoint restores it), and each draw moves it on (each step new masks).
    func testMaskingDrawsFromTheSourceOnlyInTraining() {
        let examples = [Example(features: ramp(frames: 40, features: 16), frames: 40), Example(features: ramp(frames: 25, features: 16), frames: 25)]
        let source = RandomSource(seed: 9)
        let saved = source.generatorState
        XCTAssertEqual(SpecAugment.masking(examples, policy: .librispeechDouble, training: false, source: source, features: \.features,
                                           frames: \.frames).map(\.features), examples.map(\.features))
        XCTAssertEqual(SpecAugment.masking(examples, policy: nil, training: true, source: source, features: \.features, frames: \.frames)
            .map(\.features), examples.map(\.features))
        XCTAssertEqual(source.generatorState, saved, "nothing drawn outside training")
        let policy = SpecAugment(frequencyMasks: 2, frequencyWidth: 6, timeMasks: 2, timeWidth: 10, timeRatio: 0.5)
        let first = SpecAugment.masking(examples, policy: policy, training: true, source: source, features: \.features, frames: \.frames)
        let second = SpecAugment.masking(examples, policy: policy, training: true, source: source, features: \.features, frames: \.frames)
        XCTAssertNotEqual(first.map(\.features), second.map(\.features), "each step draws new masks")
        source.withGenerator { $0 = saved }
        let replayed = SpecAugment.masking(examples, policy: policy, training: true, source: source, features: \.features, frames: \.frames)
        XCTAssertEqual(replayed.map(\.features), first.map(\.features), "a restored source replays the masks")
    }
}
