@testable import LoomKernels
import XCTest

/// Each packed micro-kernel this CPU runs (AVX-512, AVX2 + FMA) against the plain loop and
/// against a naive product of the unpacked weights.
final class PackedWeightsTests: XCTestCase {
    func testPackedProductMatchesNaiveAndReference() throws {
        try XCTSkipUnless(PackedWeights.isAvailable, "neither AVX-512 nor AVX2 on this CPU; callers use BLAS")
        var g = SystemRandomNumberGenerator()
        // Odd sizes exercise the tails: n not a multiple of 16, m not a multiple of the row block.
        for (m, n, k) in [(1, 1, 1), (3, 17, 5), (7, 33, 64), (32, 1024, 256), (13, 100, 31), (9, 48, 300), (17, 40, 1030)] {
            for transposed in [false, true] {
                for beta: Float in [0, 1] {
                    let w = (0..<(n * k)).map { _ in Float.random(in: -1...1, using: &g) }
                    let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &g) }
                    let c0 = (0..<(m * n)).map { _ in Float.random(in: -1...1, using: &g) }
                    let packed = w.withUnsafeBufferPointer {
                        PackedWeights(transposed: transposed, n: n, k: k, weights: $0.baseAddress!, ldw: transposed ? k : n)
                    }
                    var slow = c0
                    a.withUnsafeBufferPointer { ap in
                        packed.multiplyReference(m: m, a: ap.baseAddress!, lda: k, beta: beta, c: &slow, ldc: n)
                    }
                    let fast = PackedWeights.kernels.map { kernel in
                        var c = c0
                        a.withUnsafeBufferPointer { ap in
                            packed.multiply(kernel: kernel, m: m, a: ap.baseAddress!, lda: k, beta: beta, c: &c, ldc: n)
                        }
                        return c
                    }
                    // Float sums of k products of values in [-1, 1] (plus beta * c): error <= (k + 1) eps.
                    let tolerance = Float(k + 1) * Float.ulpOfOne
                    for i in 0..<m {
                        for j in 0..<n {
                            var exact = Double(beta) * Double(c0[i * n + j])
                            for p in 0..<k {
                                exact += Double(a[i * k + p]) * Double(transposed ? w[j * k + p] : w[p * n + j])
                            }
                            for (kernel, c) in zip(PackedWeights.kernels, fast) {
                                XCTAssertEqual(c[i * n + j], Float(exact), accuracy: tolerance, "kernel \(kernel) m \(m) n \(n) k \(k) t \(transposed)")
                            }
                            XCTAssertEqual(slow[i * n + j], Float(exact), accuracy: tolerance)
                        }
                    }
                    // Both kernels run each output's multiply-adds in the same order: the same bits.
                    for c in fast.dropFirst() { XCTAssertEqual(c, fast[0], "m \(m) n \(n) k \(k) t \(transposed)") }
                }
            }
        }
    }

    func testColumnRangesComposeToFullProduct() throws {
        try XCTSkipUnless(PackedWeights.isAvailable, "neither AVX-512 nor AVX2 on this CPU; callers use BLAS")
        let (m, n, k) = (5, 70, 9)
        let w = (0..<(n * k)).map { Float($0 % 13) - 6 }
        let a = (0..<(m * k)).map { Float($0 % 7) - 3 }
        let packed = w.withUnsafeBufferPointer { PackedWeights(transposed: false, n: n, k: k, weights: $0.baseAddress!, ldw: n) }
        for kernel in PackedWeights.kernels {
            var whole = [Float](repeating: 0, count: m * n), split = whole
            a.withUnsafeBufferPointer { ap in
                packed.multiply(kernel: kernel, m: m, a: ap.baseAddress!, lda: k, beta: 0, c: &whole, ldc: n)
                packed.multiply(kernel: kernel, m: m, a: ap.baseAddress!, lda: k, beta: 0, c: &split, ldc: n, columns: 0..<32)
                packed.multiply(kernel: kernel, m: m, a: ap.baseAddress!, lda: k, beta: 0, c: &split, ldc: n, columns: 32..<n)
            }
            // Small integers: every product and sum is exact in Float, so the two must agree bit for bit.
            XCTAssertEqual(whole, split, "kernel \(kernel)")
        }
    }
}
