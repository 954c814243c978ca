/// Vectorized exp, sigmoid and tanh for `Float` buffers, accurate to a few ULP of libm.
///
/// Each function works on `SIMD8<Float>` lanes; the tail of a buffer is padded into one more
/// vector, so no element ever goes through a scalar libm call.
public enum Activations {
    public typealias Vector = SIMD8<Float>

    // exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2].
    // ln 2 is split in a high part with 9 significant bits (so n * ln2High is exact for
    // |n| <= 2^15) and the rest, as in Cody and Waite's reduction.
    @usableFromInline static let ln2High: Float = 0.693_359_375
    @usableFromInline static let ln2Low: Float = -2.121_944_400_5e-4
    @usableFromInline static let log2e: Float = 1.442_695_040_9
    // Beyond these, exp overflows to +inf or falls below the smallest normal float.
    @usableFromInline static let expMax: Float = 88.722_839
    @usableFromInline static let expMin: Float = -87.336_544
    @usableFromInline static let roundingShift: Float = 12_582_912
    @usableFromInline static let roundingShiftBits = SIMD8<Int32>(repeating: 0x4B40_0000)

    /// exp on 8 lanes. On |r| <= ln2/2 the Taylor polynomial of degree 7 has remainder below
    /// 0.347^8 / 8! = 5.2e-9, a tenth of an ULP at 1; the result is within 2 ULP of exp(x).
    @inlinable @inline(__always)
    public static func exp(_ x: Vector) -> Vector {
        // (Selects rather than SIMD `clamped`, which compiles to out-of-line pointwiseMin/Max calls.)
        let clamped = x.replacing(with: expMin, where: .!(x .>= expMin)).replacing(with: expMax, where: x .> expMax)
        // Adding 1.5 * 2^23 rounds to the nearest integer and leaves it in the low mantissa bits.
        let shifted = clamped * log2e + roundingShift
        let n = shifted - roundingShift
        let r = (clamped - n * ln2High) - n * ln2Low
        var p = Vector(repeating: 1.0 / 5040)
        p = p * r + 1.0 / 720
        p = p * r + 1.0 / 120
        p = p * r + 1.0 / 24
        p = p * r + 1.0 / 6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        // 2^n in two halves, so neither half leaves the normal exponent range at n = 128 or -126.
        let ni = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- roundingShiftBits
        let half = ni &>> 1
        let scaleA = unsafeBitCast((half &+ 127) &<< 23, to: Vector.self)
        let scaleB = unsafeBitCast((ni &- half &+ 127) &<< 23, to: Vector.self)
        var result = p * scaleA * scaleB
        result.replace(with: Float.infinity, where: x .> expMax)
        result.replace(with: 0, where: x .< expMin)
        result.replace(with: x, where: x .!= x)
        return result
    }

    /// sigmoid(x) = 1 / (1 + exp(-x)) on 8 lanes; exp's error of 2 ULP plus one rounding each
    /// for the sum and the quotient.
    @inlinable @inline(__always)
    public static func sigmoid(_ x: Vector) -> Vector {
        1 / (1 + exp(-x))
    }

    /// tanh on 8 lanes. For |x| >= 0.5: 1 - 2 / (exp(2|x|) + 1), with the sign restored; there
    /// the cancellation in the subtraction costs at most a factor 1.2. For |x| < 0.5: the odd
    /// Taylor series through x^15, whose next term is below 5e-9 (0.1 ULP of tanh(0.5)).
    @inlinable @inline(__always)
    public static func tanh(_ x: Vector) -> Vector {
        let ax = x.replacing(with: -x, where: x .< 0)
        var large = 1 - 2 / (exp(2 * ax) + 1)
        large.replace(with: -large, where: x .< 0)
        let x2 = x * x
        var p = Vector(repeating: -929_569.0 / 638_512_875)
        p = p * x2 + 21_844.0 / 6_081_075
        p = p * x2 - 1_382.0 / 155_925
        p = p * x2 + 62.0 / 2_835
        p = p * x2 - 17.0 / 315
        p = p * x2 + 2.0 / 15
        p = p * x2 - 1.0 / 3
        let small = x + x * x2 * p
        var result = large
        result.replace(with: small, where: ax .< 0.5)
        result.replace(with: x, where: x .!= x)
        return result
    }

    /// Applies a lane function over a buffer: whole vectors first, then the tail padded with 0.
    @inlinable @inline(__always)
    static func apply(
        _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int,
        _ f: (Vector) -> Vector
    ) {
        let width = Vector.scalarCount
        var i = 0
        while i + width <= count {
            let v = UnsafeRawPointer(x + i).loadUnaligned(as: Vector.self)
            UnsafeMutableRawPointer(out + i).storeBytes(of: f(v), as: Vector.self)
            i += width
        }
        if i < count {
            var v = Vector()
            for j in 0..<(count - i) { v[j] = x[i + j] }
            let y = f(v)
            for j in 0..<(count - i) { out[i + j] = y[j] }
        }
    }

    /// `out[i] = exp(x[i])`; `out` may alias `x`.
    public static func exp(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        apply(x, out, count: count, exp)
    }

    /// `out[i] = 1 / (1 + exp(-x[i]))`; `out` may alias `x`.
    public static func sigmoid(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        apply(x, out, count: count, sigmoid)
    }

    /// `out[i] = tanh(x[i])`; `out` may alias `x`.
    public static func tanh(_ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        apply(x, out, count: count, tanh)
    }
}
