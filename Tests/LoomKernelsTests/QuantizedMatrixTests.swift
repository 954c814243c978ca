@testable import LoomKernels
import XCTest

/// The int8 products: every kernel this CPU runs against the plain loop (bit for bit: the int32
/// sums are exact and every kernel scales them in the same order), and the quantized product
/// against the Float one within the bound the rounding of both operands allows.
final class QuantizedMatrixTests: XCTestCase {
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return state ^ (state >> 29)
        }
    }

    func values(_ count: Int, _ g: inout Generator, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in Float.random(in: -scale...scale, using: &g) }
    }

    /// C for every kernel this CPU runs, the plain loop's first.
    func products(_ w: [Float], n: Int, k: Int, a: [Float], m: Int, beta: Float, c0: [Float]) -> [(kernel: Int, c: [Float])] {
        let reference = QuantizedMatrix(quantizing: w, rows: n, columns: k, kernel: 0)
        return ([0] + QuantizedMatrix.kernels.filter { $0 != 0 }).map { kernel in
            var c = c0
            a.withUnsafeBufferPointer { reference.packed(for: kernel).multiply(m: m, a: $0.baseAddress!, lda: k, beta: beta, c: &c, ldc: n) }
            return (kernel, c)
        }
    }

    func testKernelsMatchThePlainLoopBitForBit() {
        XCTAssertGreaterThanOrEqual(QuantizedMatrix.kernel, 1, "an x86-64 CPU with AVX2 runs the AVX2 kernel; the plain loop alone would hide it")
        var g = Generator(state: 7)
        // Tails of every kind: n not a multiple of 16, k not a multiple of 2 or 4, m past the
        // 6- and 8-row tiles; the last shapes are large enough to be cut over the team.
        for (m, n, k) in [(1, 1, 1), (2, 3, 3), (5, 17, 5), (7, 33, 64), (9, 16, 7), (13, 100, 31), (17, 40, 130), (64, 1024, 256),
                          (256, 512, 320)] {
            for beta: Float in [0, 1] {
                let w = values(n * k, &g), a = values(m * k, &g, scale: 3), c0 = values(m * n, &g)
                let results = products(w, n: n, k: k, a: a, m: m, beta: beta, c0: c0)
                for (kernel, c) in results.dropFirst() {
                    let differing = zip(c, results[0].c).filter { $0.bitPattern != $1.bitPattern }.count
                    XCTAssertEqual(differing, 0, "kernel \(kernel), m \(m) n \(n) k \(k) beta \(beta): outputs differing from the plain loop")
                }
            }
        }
    }

    /// |x w - x' w'| for x = x' + dx, w = w' + dw with |dx| <= s_x / 2, |dw| <= s_w / 2 is at
    /// most |dx| |w| + |x| |dw| + |dx| |dw|; summed over k, plus Float rounding of the result.
    func testErrorWithinTheRoundingBound() {
        var g = Generator(state: 11)
        let (m, n, k) = (9, 40, 77)
        let w = values(n * k, &g, scale: 0.3), a = values(m * k, &g, scale: 2)
        let q = QuantizedMatrix(quantizing: w, rows: n, columns: k)
        var c = [Float](repeating: .nan, count: m * n)
        a.withUnsafeBufferPointer { q.multiply(m: m, a: $0.baseAddress!, lda: k, beta: 0, c: &c, ldc: n) }
        var worstShare = 0.0
        for r in 0..<m {
            let sx = Double(a[(r * k)..<((r + 1) * k)].map { abs($0) }.max()!) / 127
            for o in 0..<n {
                let sw = Double(q.scales[o])
                var exact = 0.0, bound = 0.0, magnitude = 0.0
                for i in 0..<k {
                    let x = Double(a[r * k + i]), v = Double(w[o * k + i])
                    exact += x * v
                    bound += sx / 2 * abs(v) + abs(x) * sw / 2 + sx * sw / 4
                    magnitude += abs(x * v)
                }
                bound += 4 * Double(Float.ulpOfOne) * (magnitude + bound)
                let error = abs(Double(c[r * n + o]) - exact)
                XCTAssertLessThanOrEqual(error, bound, "row \(r) output \(o)")
                worstShare = max(worstShare, error / bound)
            }
        }
        // The bound is the worst case; typical errors sit well inside it (a check that it is not loose by design).
        XCTAssertLessThan(worstShare, 0.5)
    }

    func testQuantizationCodesAndScales() throws {
        var g = Generator(state: 3)
        var w = values(4 * 10, &g)
        for j in 0..<10 { w[10 + j] = 0 }  // row 1 all zero
        let q = QuantizedMatrix(quantizing: w, rows: 4, columns: 10)
        XCTAssertEqual(q.scales[1], 0)
        XCTAssertTrue(q.values[10..<20].allSatisfy { $0 == 0 })
        for r in [0, 2, 3] {
            let row = q.values[(r * 10)..<((r + 1) * 10)]
            XCTAssertEqual(row.map { abs(Int($0)) }.max(), 127, "the largest weight of a row takes the largest code")
            XCTAssertEqual(q.scales[r], w[(r * 10)..<((r + 1) * 10)].map { abs($0) }.max()! / 127)
        }
        let back = q.dequantized()
        for i in 0..<w.count { XCTAssertEqual(back[i], w[i], accuracy: q.scales[i / 10] / 2 * 1.0001) }
        // Stored codes round-trip and pack alike.
        let again = try QuantizedMatrix(values: q.values, scales: q.scales, rows: 4, columns: 10)
        XCTAssertEqual(again.dequantized(), back)
    }

    func testNonFiniteActivationsGiveNaNRows() {
        let q = QuantizedMatrix(quantizing: [Float](repeating: 0.5, count: 3 * 5), rows: 3, columns: 5)
        let a: [Float] = [1, 2, .nan, 4, 5, 1, 1, 1, 1, 1, .infinity, 0, 0, 0, 0]
        for kernel in QuantizedMatrix.kernels {
            var c = [Float](repeating: 7, count: 9)
            a.withUnsafeBufferPointer { q.packed(for: kernel).multiply(m: 3, a: $0.baseAddress!, lda: 5, beta: 0, c: &c, ldc: 3) }
            XCTAssertTrue(c[0..<3].allSatisfy(\.isNaN) && c[6..<9].allSatisfy(\.isNaN), "kernel \(kernel)")
            XCTAssertEqual(Array(c[3..<6]), [2.5, 2.5, 2.5], "kernel \(kernel): codes of all-equal values are exact")
        }
    }

    func testStoredValuesAreChecked() {
        XCTAssertThrowsError(try QuantizedMatrix(values: [1, -128], scales: [0.1], rows: 1, columns: 2))
        XCTAssertThrowsError(try QuantizedMatrix(values: [1, 2], scales: [-0.1], rows: 1, columns: 2))
        XCTAssertThrowsError(try QuantizedMatrix(values: [1, 2], scales: [.nan], rows: 1, columns: 2))
        XCTAssertThrowsError(try QuantizedMatrix(values: [1, 2, 3], scales: [0.1], rows: 1, columns: 2))
        XCTAssertNoThrow(try QuantizedMatrix(values: [1, -127], scales: [0.1], rows: 1, columns: 2))
    }
}
