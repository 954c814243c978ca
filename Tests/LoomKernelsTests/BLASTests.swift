import CFFTW
import CSampleRate
import CSndFile
import LoomKernels
import XCTest

/// The gemm wrapper against a naive triple loop, and the system-library module maps.
final class BLASTests: XCTestCase {
    func naive(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ a: [Double], _ b: [Double]) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var s = 0.0
                for p in 0..<k {
                    let x = transA ? a[p * m + i] : a[i * k + p]
                    let y = transB ? b[j * k + p] : b[p * n + j]
                    s += x * y
                }
                c[i * n + j] = s
            }
        }
        return c
    }

    /// Products above the split threshold run in two halves (rows or 16-aligned columns) on the
    /// worker team; every transpose case must still equal the naive product.
    func testSplitSgemmMatchesNaive() {
        var g = SystemRandomNumberGenerator()
        for (m, n, k) in [(301, 70, 11), (20, 301, 41), (64, 64, 64)] {
            XCTAssertGreaterThanOrEqual(m * n * k, 1 << 17, "shape must be large enough to split")
            for transA in [false, true] {
                for transB in [false, true] {
                    let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &g) }
                    let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &g) }
                    var c = [Float](repeating: 1, count: m * n)
                    Float.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 2, a: a, lda: transA ? m : k,
                               b: b, ldb: transB ? k : n, beta: 1, c: &c, ldc: n)
                    let expected = naive(transA, transB, m, n, k, a.map(Double.init), b.map(Double.init))
                    // 2 * (k products in [-1, 1]) + 1: error <= (2k + 1) eps.
                    let tolerance = Double(2 * k + 1) * Double(Float.ulpOfOne)
                    for (x, y) in zip(c, expected) {
                        XCTAssertEqual(Double(x), 2 * y + 1, accuracy: tolerance, "m \(m) n \(n) k \(k) tA \(transA) tB \(transB)")
                    }
                }
            }
        }
    }

    func testSgemmMatchesNaiveOnOddShapes() {
        var g = SystemRandomNumberGenerator()
        for (m, n, k) in [(1, 1, 1), (3, 5, 7), (17, 1, 33), (1, 29, 2), (65, 31, 19)] {
            for transA in [false, true] {
                for transB in [false, true] {
                    let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &g) }
                    let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &g) }
                    var c = [Float](repeating: 0, count: m * n)
                    Float.gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: 1, a: a, lda: transA ? m : k,
                               b: b, ldb: transB ? k : n, beta: 0, c: &c, ldc: n)
                    let expected = naive(transA, transB, m, n, k, a.map(Double.init), b.map(Double.init))
                    // Each element sums k products of values in [-1, 1] in Float: error <= k * eps.
                    let tolerance = Double(k) * Double(Float.ulpOfOne)
                    for (x, y) in zip(c, expected) {
                        XCTAssertEqual(Double(x), y, accuracy: tolerance, "m \(m) n \(n) k \(k) tA \(transA) tB \(transB)")
                    }
                }
            }
        }
    }

    /// At beta = 0 the product never reads C: NaN there does not leak into the result (the
    /// recurrent kernels write input gradients into uninitialized arrays), on the gemv path
    /// (m = 1) and the gemm paths (split and not).
    func testBetaZeroIgnoresC() {
        var g = SystemRandomNumberGenerator()
        for (m, n, k) in [(1, 7, 5), (3, 4, 5), (301, 70, 11)] {
            let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &g) }
            let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &g) }
            var c = [Float](repeating: .nan, count: m * n)
            Float.gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: &c, ldc: n)
            let expected = naive(false, false, m, n, k, a.map(Double.init), b.map(Double.init))
            XCTAssertFalse(c.contains { $0.isNaN }, "m \(m) n \(n) k \(k): NaN from C")
            let worst = zip(c, expected).map { abs(Double($0) - $1) }.max() ?? .nan
            XCTAssertLessThanOrEqual(worst, Double(k) * Double(Float.ulpOfOne), "m \(m) n \(n) k \(k)")
        }
    }

    /// Every thread count gives correct products: one thread (OpenBLAS's idle pool stopped),
    /// three (OpenBLAS's pool started again) and two (the worker team, the default, restored last).
    func testThreadCountCanBeSet() {
        var g = SystemRandomNumberGenerator()
        let (m, n, k) = (150, 130, 70)
        let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &g) }
        let b = (0..<(k * n)).map { _ in Float.random(in: -1...1, using: &g) }
        let expected = naive(false, false, m, n, k, a.map(Double.init), b.map(Double.init))
        for count in [1, 3, 1, 2] {
            BLAS.setThreadCount(count)
            XCTAssertEqual(BLAS.threadCount, count)
            // Loom's team takes jobs from two threads up; at one, its jobs run here.
            XCTAssertEqual(WorkerTeam.shared.tryRun { _ in }, count >= 2, "\(count) threads")
            var c = [Float](repeating: 0, count: m * n)
            Float.gemm(transA: false, transB: false, m: m, n: n, k: k, alpha: 1, a: a, lda: k, b: b, ldb: n, beta: 0, c: &c, ldc: n)
            // k products of values in [-1, 1] summed in Float: error <= k eps.
            let worst = zip(c, expected).map { abs(Double($0) - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, Double(k) * Double(Float.ulpOfOne), "\(count) threads")
        }
        XCTAssertFalse(BLAS.configuration.isEmpty)
    }

    /// The FFTW, libsndfile and libsamplerate module maps link and answer.
    func testSystemLibrariesLink() {
        XCTAssertTrue(String(cString: sf_version_string()).contains("libsndfile"))
        XCTAssertNotNil(src_get_name(0))
        let n: Int32 = 8
        let input = fftwf_alloc_real(Int(n))!
        let output = fftwf_alloc_complex(Int(n / 2 + 1))!
        defer { fftwf_free(input); fftwf_free(output) }
        let plan = fftwf_plan_dft_r2c_1d(n, input, output, UInt32(FFTW_ESTIMATE))
        for i in 0..<Int(n) { input[i] = 1 }
        fftwf_execute(plan)
        fftwf_destroy_plan(plan)
        XCTAssertEqual(output[0].0, 8, accuracy: 1e-6)  // the DC bin sums the eight ones
        XCTAssertEqual(output[1].0, 0, accuracy: 1e-6)
    }
}
