import Foundation
@testable import LoomAudio
import LoomTensor
import XCTest

/// Room impulse responses by the image method and the FFT convolution that applies them:
/// the direct path and the first reflections where geometry puts them, the fractional delay,
/// the convolution against its plain sum, and the augmentation that uses them.
final class RoomReverberationTests: XCTestCase {
    /// Source and receiver 100 samples of sound apart at 16 kHz (2.14375 m).
    let apart = 100 * RoomReverberation.speedOfSound / 16_000

    /// Walls that absorb everything leave the direct path alone: 1 / (4 pi d) at d / c, on a whole
    /// sample here, where the windowed sinc is 1 at its centre and 0 at every other sample.
    func testDirectPathArrivesAtItsDelayWithSphericalSpreading() throws {
        let room = RoomReverberation(size: [6, 5, 3], source: [1, 1, 1.5], receiver: [1 + apart, 1, 1.5], absorption: 1)
        try room.validate()
        let h = room.response(sampleRate: 16_000, duration: 0.02)
        XCTAssertEqual(h.count, 320)
        let peak = 1 / (4 * Double.pi * apart)
        XCTAssertEqual(Double(h[100]), peak, accuracy: 1e-7)
        for (n, v) in h.enumerated() where n != 100 { XCTAssertLessThan(abs(Double(v)), 1e-9, "sample \(n)") }
    }

    /// In a large room, the first 25 m of sound hold the direct path and the six first-order
    /// images only (each wall's mirror of the source, one reflection: beta = sqrt(1 - alpha));
    /// the nearest second-order image is 27.8 m away. The response equals those seven arrivals
    /// listed by hand, each placed by the same fractional delay (to the rounding of the sums).
    func testFirstOrderImagesAreTheWallsMirrorsWithOneReflectionLoss() {
        let (size, s, r) = (SIMD3<Double>(20, 20, 20), SIMD3<Double>(9, 10, 10.5), SIMD3<Double>(11, 10.7, 9.6))
        let room = RoomReverberation(size: size, source: s, receiver: r, absorption: 0.36)
        let rate = 16_000.0, duration = 25 / RoomReverberation.speedOfSound
        let h = room.response(sampleRate: 16_000, duration: duration)
        var mirrors: [SIMD3<Double>] = []
        for axis in 0..<3 {
            var low = s, high = s
            low[axis] = -s[axis]
            high[axis] = 2 * size[axis] - s[axis]
            mirrors += [low, high]
        }
        var expected = [Double](repeating: 0, count: h.count + 2 * RoomReverberation.halfTaps)
        for (position, gain) in [(s, 1.0)] + mirrors.map({ ($0, 0.8) }) {
            let d = ((position - r) * (position - r)).sum().squareRoot()
            RoomReverberation.place(gain / (4 * Double.pi * d), at: d / RoomReverberation.speedOfSound * rate, into: &expected)
        }
        for n in h.indices { XCTAssertEqual(Double(h[n]), expected[n + RoomReverberation.halfTaps], accuracy: 1e-8, "sample \(n)") }
        // Not trivially equal: the direct path (1 / (4 pi 2.3 m) = 0.035, times at least 0.64, the
        // windowed sinc's peak half a sample off) and the reflections from 19.3 m on (880 samples;
        // 0.8 / (4 pi 20.7 m) = 0.0031, times 0.64).
        XCTAssertGreaterThan(h[..<200].map { abs($0) }.max()!, 0.02)
        XCTAssertGreaterThan(h[880...].map { abs($0) }.max()!, 0.0018)
    }

    /// The fractional delay: a Hann-windowed sinc whose taps sum to 1 within 6e-4 and whose
    /// centre of mass is the arrival time within 0.005 samples (computed for 2 x 8 taps).
    func testFractionalDelayKeepsAmplitudeAndTime() {
        for time in [40.0, 40.1, 40.3, 40.5, 40.77] {
            var h = [Double](repeating: 0, count: 100)
            RoomReverberation.place(2, at: time, into: &h)
            let total = h.reduce(0, +)
            let centre = h.indices.reduce(0.0) { $0 + Double($1 - RoomReverberation.halfTaps) * h[$1] } / total
            XCTAssertEqual(total, 2, accuracy: 2 * 6e-4)
            XCTAssertEqual(centre, time, accuracy: 0.005)
        }
    }

    /// The FFT convolution against the plain sum: float FFTs of 256 points err by about
    /// eps log2(n) relative to the output's size (5e-7); 1e-5 leaves a factor of 20.
    func testConvolutionEqualsThePlainSum() throws {
        var g = SeededGenerator(seed: 3)
        let x = (0..<150).map { _ in Float(Double.random(in: -1...1, using: &g)) }
        let h = (0..<37).map { _ in Float(Double.random(in: -1...1, using: &g)) }
        let fast = try RoomReverberation.convolve(x, h)
        XCTAssertEqual(fast.count, x.count + h.count - 1)
        var plain = [Double](repeating: 0, count: fast.count)
        for i in x.indices { for j in h.indices { plain[i + j] += Double(x[i]) * Double(h[j]) } }
        let size = plain.map(abs).max()!
        for (a, b) in zip(fast, plain) { XCTAssertEqual(Double(a), b, accuracy: 1e-5 * size) }
        XCTAssertEqual(try RoomReverberation.convolve([], h), [])
    }

    /// A room of the direct path only gives back the dry signal (aligned on the direct path, at
    /// its power); a reverberant one keeps length and power and smears the signal.
    func testReverberateAlignsOnTheDirectPathAndKeepsThePower() throws {
        let speech = (0..<4_000).map { Float(sin(Double($0) * 0.05) * exp(-Double($0) / 1500)) }
        let anechoic = RoomReverberation(size: [6, 5, 3], source: [1, 1, 1.5], receiver: [1 + apart, 1, 1.5], absorption: 1)
        let dry = try RoomReverberation.reverberate(speech, response: anechoic.response(sampleRate: 16_000, duration: 0.02))
        XCTAssertEqual(dry.count, speech.count)
        for (a, b) in zip(dry, speech) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        let room = RoomReverberation(size: [5, 4, 3], source: [1.2, 1.1, 1.4], receiver: [3.7, 2.6, 1.7], absorption: 0.3)
        let wet = try RoomReverberation.reverberate(speech, response: room.response(sampleRate: 16_000, duration: 0.3))
        XCTAssertEqual(wet.count, speech.count)
        XCTAssertEqual(WaveformAugment.power(wet), WaveformAugment.power(speech), accuracy: 1e-4 * WaveformAugment.power(speech))
        XCTAssertGreaterThan(zip(wet, speech).map { abs($0 - $1) }.max()!, 0.05)
    }

    /// Rooms drawn from a seed are the same rooms; every setting is checked.
    func testRoomsAreSeededAndCheckedAndTheAugmentationUsesThem() throws {
        let bank = RoomReverberation.bank(count: 3, sampleRate: 8_000, seed: 4, longest: 0.2)
        XCTAssertEqual(bank, RoomReverberation.bank(count: 3, sampleRate: 8_000, seed: 4, longest: 0.2))
        XCTAssertNotEqual(bank[0], bank[1])
        XCTAssertTrue(bank.allSatisfy { !$0.isEmpty && $0.count <= 1_600 && $0.allSatisfy(\.isFinite) })
        var g = SeededGenerator(seed: 1)
        for _ in 0..<20 {
            let r = RoomReverberation.random(using: &g)
            XCTAssertNoThrow(try r.validate())
            XCTAssertGreaterThanOrEqual(((r.source - r.receiver) * (r.source - r.receiver)).sum(), 1)
        }
        XCTAssertThrowsError(try RoomReverberation(size: [3, 3, 3], source: [4, 1, 1], receiver: [1, 1, 1], absorption: 0.5).validate())
        XCTAssertThrowsError(try RoomReverberation(size: [3, 3, 3], source: [2, 1, 1], receiver: [1, 1, 1], absorption: 0).validate())

        var augment = WaveformAugment()
        augment.reverberation = 1
        XCTAssertThrowsError(try augment.validate()) { XCTAssertTrue("\($0)".contains("reverberation"), "\($0)") }
        augment.rooms = bank
        try augment.validate()
        XCTAssertTrue(augment.isActive)
        let tone = (0..<8_000).map { Float(0.5 * sin(2 * Double.pi * 300 * Double($0) / 8_000)) * Float(exp(-Double($0) / 2_000)) }
        var a = SeededGenerator(seed: 9), b = SeededGenerator(seed: 9)
        let heard = try augment.apply(to: tone, sampleRate: 8_000, using: &a)
        XCTAssertEqual(heard, try augment.apply(to: tone, sampleRate: 8_000, using: &b))
        XCTAssertEqual(heard.count, tone.count)
        XCTAssertNotEqual(heard, tone)
        augment.reverberation = 1.5
        XCTAssertThrowsError(try augment.validate())
    }
}
