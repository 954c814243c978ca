import CLoomKernels
import LoomKernels
import XCTest

/// The sigmoid, tanh and LSTM forward row this CPU runs (AVX-512: reciprocal estimate plus a
/// Newton step; AVX2: exact division, clamped ranges), and the AVX2 versions wherever they run,
/// against the portable versions (lane by lane, plain division).
final class CellRowTests: XCTestCase {
    func testVectorVersionsMatchPortableOnes() {
        var generator = SystemRandomNumberGenerator()
        let avx2 = loom_gemm_kernel() >= 1
        // Both versions are within 4 ULP of the exact value (ActivationsTests), so they differ
        // by at most 8 ULP of the result.
        let x = (0..<1_003).map { _ in Float.random(in: -12...12, using: &generator) } + [0, -0.0, .infinity, -.infinity]
        var pairs = [(loom_sigmoid, loom_sigmoid_portable), (loom_tanh, loom_tanh_portable)]
        if avx2 { pairs += [(loom_sigmoid_avx2, loom_sigmoid_portable), (loom_tanh_avx2, loom_tanh_portable)] }
        for (fast, portable) in pairs {
            var a = [Float](repeating: 0, count: x.count), b = a
            fast(x, &a, x.count)
            portable(x, &b, x.count)
            for i in x.indices {
                XCTAssertEqual(a[i], b[i], accuracy: 8 * b[i].ulp, "x = \(x[i])")
            }
        }
        // The LSTM row, h = 37 (full vectors of 16 or 8 lanes and a tail), with and without an update mask.
        // Gates in [-3, 3], previous cell in [-1, 1]: each activation differs by at most 8 ULP
        // (< 1e-6 at values up to 1), so c = f cp + i g by at most 3e-6 and tanh(c), o tanh(c)
        // by about as much again; 1e-5 leaves a margin of ~2.
        let h = 37
        let gates = (0..<(4 * h)).map { _ in Float.random(in: -3...3, using: &generator) }
        let bias = (0..<(4 * h)).map { _ in Float.random(in: -0.5...0.5, using: &generator) }
        let cp = (0..<h).map { _ in Float.random(in: -1...1, using: &generator) }
        let mask = (0..<h).map { _ in Float.random(in: 0...2, using: &generator) }
        for update in [nil, mask] {
            var results: [[Float]] = []
            var rows = [loom_lstm_forward_row, loom_lstm_forward_row_portable]
            if avx2 {
                rows.append { gate, bias, cp, c, tc, out, update, h in
                    loom_lstm_forward_row_split_avx2(gate, nil, gate, bias, cp, c, tc, out, update, h)
                }
            }
            for row in rows {
                var g = gates, c = [Float](repeating: 0, count: h), tc = c, out = c
                if let update {
                    update.withUnsafeBufferPointer { row(&g, bias, cp, &c, &tc, &out, $0.baseAddress, h) }
                } else {
                    row(&g, bias, cp, &c, &tc, &out, nil, h)
                }
                results.append(g + c + tc + out)
            }
            for (index, fast) in results.enumerated() where index != 1 {
                for (a, b) in zip(fast, results[1]) { XCTAssertEqual(a, b, accuracy: 1e-5, "row \(index)") }
            }
        }
        // The split row (x side and h side apart, activations into the h side's buffer) equals
        // the in-place row run on x side + h side, bit for bit: the same sums in the same order.
        let hSide = (0..<(4 * h)).map { _ in Float.random(in: -2...2, using: &generator) }
        var versions = [(loom_lstm_forward_row, loom_lstm_forward_row_split),
                        (loom_lstm_forward_row_portable, loom_lstm_forward_row_split_portable)]
        if avx2 {
            versions.append(({ gate, bias, cp, c, tc, out, update, h in
                loom_lstm_forward_row_split_avx2(gate, nil, gate, bias, cp, c, tc, out, update, h)
            }, loom_lstm_forward_row_split_avx2))
        }
        for (inPlace, split) in versions {
            var g = zip(gates, hSide).map { $0 + $1 }, c = [Float](repeating: 0, count: h), tc = c, out = c
            inPlace(&g, bias, cp, &c, &tc, &out, nil, h)
            var act = hSide, c2 = [Float](repeating: 0, count: h), tc2 = c2, out2 = c2
            act.withUnsafeMutableBufferPointer { a in split(gates, a.baseAddress, a.baseAddress, bias, cp, &c2, &tc2, &out2, nil, h) }
            XCTAssertEqual(g + c + tc + out, act + c2 + tc2 + out2)
        }
    }
}
