import CFFTW
import Foundation
import LoomTensor

/// A shoebox room's impulse response by the image method (Allen & Berkley 1979): every wall
/// mirrors the source, the mirrors mirror again, and each image source at distance d that took
/// k reflections adds beta^k / (4 pi d) at delay d / c, where beta = sqrt(1 - alpha) is the
/// walls' pressure reflection coefficient for energy absorption alpha (the same for all six).
/// Each arrival is placed with its fractional delay by a Hann-windowed sinc of 2 x 8 taps
/// (Peterson 1986) rather than rounded to a sample.
///
/// Along one axis, image (m, p) for integer m and p in {0, 1} sits at (1 - 2p) s + 2 m L and took
/// |m - p| + |m| reflections; the response keeps every image closer than c x duration.
///
/// ```swift
/// let room = RoomReverberation(size: [5, 4, 3], source: [1, 1.5, 1.6], receiver: [3.5, 2, 1.2], absorption: 0.3)
/// let response = room.response(sampleRate: 16_000, duration: 0.4)
/// let wet = try RoomReverberation.convolve(speech, response)
/// ```
public struct RoomReverberation: Equatable, Sendable {
    /// Width, depth and height in metres.
    public var size: SIMD3<Double>
    public var source: SIMD3<Double>
    public var receiver: SIMD3<Double>
    /// The share of sound energy each wall absorbs, in (0, 1].
    public var absorption: Double

    /// Metres per second in air at about 20 degrees C.
    public static let speedOfSound = 343.0
    /// Half the taps of the fractional-delay filter.
    static let halfTaps = 8

    public init(size: SIMD3<Double>, source: SIMD3<Double>, receiver: SIMD3<Double>, absorption: Double) {
        (self.size, self.source, self.receiver, self.absorption) = (size, source, receiver, absorption)
    }

    /// Source and receiver inside the room, absorption in (0, 1].
    public func validate() throws {
        let inside = { (p: SIMD3<Double>) in (0..<3).allSatisfy { p[$0] > 0 && p[$0] < self.size[$0] } }
        guard (0..<3).allSatisfy({ size[$0].isFinite && size[$0] > 0 }) else { throw AudioError.invalidParameter("room size must be positive, got \(size)") }
        guard inside(source), inside(receiver) else { throw AudioError.invalidParameter("source and receiver must be inside the room") }
        guard absorption > 0 && absorption <= 1 else { throw AudioError.invalidParameter("absorption must be in (0, 1], got \(absorption)") }
    }

    /// Sabine's reverberation time, 0.161 V / (S alpha) seconds: the length of a room's responses
    /// in `bank`. (With specular walls of one absorption, a shoebox's late decay runs longer than
    /// this or Eyring's diffuse-field time: the images along the longest side lose least; 0.44 s
    /// against Sabine's 0.34 s for 5 x 4 x 3 m and alpha 0.3.)
    public var sabineReverberationTime: Double {
        let (x, y, z) = (size.x, size.y, size.z)
        return 0.161 * x * y * z / (2 * (x * y + x * z + y * z) * absorption)
    }

    /// The response, `duration` seconds at `sampleRate` (sample n is time n / sampleRate).
    public func response(sampleRate: Int, duration: Double) -> [Float] {
        let rate = Double(sampleRate), count = Swift.max(1, Int(duration * rate))
        let reach = Double(count) / rate * Self.speedOfSound
        let beta = (1 - absorption).squareRoot()
        var h = [Double](repeating: 0, count: count + 2 * Self.halfTaps)
        // Images per axis: positions and reflection counts, those within reach of the receiver.
        func axis(_ a: Int) -> [(offset: Double, reflections: Int)] {
            let l = size[a], s = source[a], r = receiver[a]
            let m = Int((reach / (2 * l)).rounded(.up)) + 1
            var out: [(Double, Int)] = []
            for i in -m...m {
                for p in 0...1 {
                    let position = (p == 0 ? s : -s) + 2 * Double(i) * l
                    if abs(position - r) <= reach { out.append((position - r, abs(i - p) + abs(i))) }
                }
            }
            return out
        }
        let (xs, ys, zs) = (axis(0), axis(1), axis(2))
        for x in xs {
            for y in ys where x.offset * x.offset + y.offset * y.offset <= reach * reach {
                for z in zs {
                    let d = (x.offset * x.offset + y.offset * y.offset + z.offset * z.offset).squareRoot()
                    guard d <= reach else { continue }
                    let k = x.reflections + y.reflections + z.reflections
                    let amplitude = Foundation.pow(beta, Double(k)) / (4 * Double.pi * Swift.max(d, 1e-3))
                    guard amplitude > 0 else { continue }
                    Self.place(amplitude, at: d / Self.speedOfSound * rate, into: &h)
                }
            }
        }
        // h[j] holds time j - halfTaps.
        return (0..<count).map { Float(h[$0 + Self.halfTaps]) }
    }

    /// cos and sin of pi t / (halfTaps + 1) for t in -halfTaps...halfTaps (the window's angles).
    static let windowAngles: [(cos: Double, sin: Double)] = (-halfTaps...halfTaps).map { t in
        let angle = Double.pi * Double(t) / Double(halfTaps + 1)
        return (Foundation.cos(angle), Foundation.sin(angle))
    }

    /// Adds `amplitude` at fractional sample `time` through the windowed sinc: tap t (offset
    /// x = t - f from the arrival, f its fraction) gets sin(pi x) / (pi x) x (1 + cos(pi x / 9)) / 2.
    /// Three sines and cosines per arrival instead of two per tap: sin(pi (t - f)) is
    /// (-1)^(t+1) sin(pi f), and the window's cosine comes from the angle-difference formula.
    static func place(_ amplitude: Double, at time: Double, into h: inout [Double]) {
        let whole = Int(time.rounded(.down)), fraction = time - Double(whole)
        let sinPiF = Foundation.sin(Double.pi * fraction)
        let angle = Double.pi * fraction / Double(halfTaps + 1)
        let (cosF, sinF) = (Foundation.cos(angle), Foundation.sin(angle))
        for t in -halfTaps...halfTaps {
            let j = whole + t + halfTaps
            guard j >= 0 && j < h.count else { continue }
            let x = Double(t) - fraction
            let sinc = abs(x) < 1e-12 ? 1 : (t & 1 == 0 ? -sinPiF : sinPiF) / (Double.pi * x)
            let w = windowAngles[t + halfTaps]
            let window = abs(x) >= Double(halfTaps + 1) ? 0 : 0.5 * (1 + w.cos * cosF + w.sin * sinF)
            h[j] += amplitude * sinc * window
        }
    }

    /// A room drawn with `generator`: sides uniform in `sides` metres (height within 2.4...4),
    /// absorption uniform in `absorption`, source and receiver at least 0.5 m from every wall
    /// and 1 m apart.
    public static func random<G: RandomNumberGenerator>(sides: ClosedRange<Double> = 3...10, absorption: ClosedRange<Double> = 0.2...0.8,
                                                        using generator: inout G) -> RoomReverberation {
        let size = SIMD3(Double.random(in: sides, using: &generator), Double.random(in: sides, using: &generator),
                         Double.random(in: Swift.max(2.4, Swift.min(sides.lowerBound, 4))...4, using: &generator))
        func point() -> SIMD3<Double> {
            SIMD3((0..<3).map { Double.random(in: 0.5...(size[$0] - 0.5), using: &generator) })
        }
        var source = point(), receiver = point()
        for _ in 0..<100 where ((source - receiver) * (source - receiver)).sum() < 1 {
            (source, receiver) = (point(), point())
        }
        return RoomReverberation(size: size, source: source, receiver: receiver, absorption: Double.random(in: absorption, using: &generator))
    }

    /// The rooms of a training run's bank (`WaveformAugment.rooms`).
    public static let bankSize = 64

    /// Responses of `count` rooms drawn from `seed`, each as long as its Sabine time (at most
    /// `longest` seconds): a bank to draw from per utterance, since a response takes
    /// milliseconds to tens of milliseconds to build.
    public static func bank(count: Int, sampleRate: Int, seed: UInt64, longest: Double = 0.6) -> [[Float]] {
        var generator = SeededGenerator(seed: seed)
        return (0..<count).map { _ in
            let room = random(using: &generator)
            return room.response(sampleRate: sampleRate, duration: Swift.min(room.sabineReverberationTime, longest))
        }
    }

    /// The full linear convolution of `x` and `h` (x.count + h.count - 1 samples) through FFTW.
    public static func convolve(_ x: [Float], _ h: [Float]) throws -> [Float] {
        guard !x.isEmpty, !h.isEmpty else { return [] }
        let length = x.count + h.count - 1
        var n = 1
        while n < length { n <<= 1 }
        let bins = n / 2 + 1
        guard let a = fftwf_malloc(MemoryLayout<Float>.stride * n)?.assumingMemoryBound(to: Float.self),
              let b = fftwf_malloc(MemoryLayout<Float>.stride * n)?.assumingMemoryBound(to: Float.self),
              let fa = fftwf_malloc(MemoryLayout<fftwf_complex>.stride * bins)?.assumingMemoryBound(to: fftwf_complex.self),
              let fb = fftwf_malloc(MemoryLayout<fftwf_complex>.stride * bins)?.assumingMemoryBound(to: fftwf_complex.self) else {
            throw AudioError.invalidParameter("FFTW could not allocate buffers for a convolution of \(length) samples")
        }
        defer { fftwf_free(a); fftwf_free(b); fftwf_free(fa); fftwf_free(fb) }
        fftwPlanLock.lock()
        let forwardA = fftwf_plan_dft_r2c_1d(Int32(n), a, fa, UInt32(FFTW_ESTIMATE))
        let forwardB = fftwf_plan_dft_r2c_1d(Int32(n), b, fb, UInt32(FFTW_ESTIMATE))
        let backward = fftwf_plan_dft_c2r_1d(Int32(n), fa, a, UInt32(FFTW_ESTIMATE))
        fftwPlanLock.unlock()
        defer {
            fftwPlanLock.lock()
            for plan in [forwardA, forwardB, backward] { if let plan { fftwf_destroy_plan(plan) } }
            fftwPlanLock.unlock()
        }
        guard forwardA != nil, forwardB != nil, backward != nil else {
            throw AudioError.invalidParameter("FFTW could not plan a real FFT of length \(n)")
        }
        Memory.zero(a, count: n)
        Memory.zero(b, count: n)
        x.withUnsafeBufferPointer { Memory.copy($0.baseAddress!, to: a, count: x.count) }
        h.withUnsafeBufferPointer { Memory.copy($0.baseAddress!, to: b, count: h.count) }
        fftwf_execute(forwardA)
        fftwf_execute(forwardB)
        // Product of the spectra, scaled by 1/n for the unnormalized inverse.
        let scale = 1 / Float(n)
        for k in 0..<bins {
            let (re, im) = (fa[k].0 * fb[k].0 - fa[k].1 * fb[k].1, fa[k].0 * fb[k].1 + fa[k].1 * fb[k].0)
            fa[k] = (re * scale, im * scale)
        }
        fftwf_execute(backward)
        return Array(UnsafeBufferPointer(start: a, count: length))
    }

    /// `x` in the room of `response`: convolved, the direct path's delay taken off (the output
    /// starts with the sound's first arrival, as the dry input did) and cut to x's length, at
    /// x's mean square power.
    public static func reverberate(_ x: [Float], response: [Float]) throws -> [Float] {
        guard !x.isEmpty, let peak = response.indices.max(by: { abs(response[$0]) < abs(response[$1]) }) else { return x }
        let wet = try convolve(x, response)
        // The direct path is the strongest arrival (the nearest image, with no reflection loss).
        var out = Array(wet[peak..<Swift.min(peak + x.count, wet.count)])
        let dry = WaveformAugment.power(x), power = WaveformAugment.power(out)
        if power > 0 {
            let gain = Float((dry / power).squareRoot())
            for i in out.indices { out[i] *= gain }
        }
        return out
    }
}
