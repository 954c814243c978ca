import XCTest
@testable import LoomKernels

final class RecurrentKernelTests: XCTestCase {
    /// The kernel's own state buffer (rows H apart) and memory the caller names (rows wider than
    /// H, as in a bidirectional layer's merged output) give the same states, final states and
    /// gradients, bit for bit: only where the state rows live differs.
    func testOwnBufferAndCallerOutputsAgree() {
        let lengths = [6, 6, 4, 3, 1], h = 7, i = 3, stride = 2 * h + 1
        let layout = PackedLayout(sortedLengths: lengths)
        let n = layout.rows, b = lengths.count
        var state: UInt64 = 12345
        func values(_ count: Int) -> UnsafeMutablePointer<Float> {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
            for j in 0..<count {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                p[j] = Float(Int(state >> 40) % 2001 - 1000) / 1000
            }
            return p
        }
        for cell in [RecurrentCell.rnn, .gru, .lstm] {
            let g = cell.gates * h
            let x = values(n * i), wih = values(g * i), whh = values(g * h), bih = values(g), bhh = values(g)
            let h0 = values(b * h), c0 = values(b * h), dOut = values(n * stride), dFinal = values(b * h), dFinalCell = values(b * h)
            defer { for p in [x, wih, whh, bih, bhh, h0, c0, dOut, dFinal, dFinalCell] { p.deallocate() } }
            let inputs = RecurrentKernel<Float>.Inputs(input: x, inputWeight: wih, recurrentWeight: whh, inputBias: bih,
                                                       recurrentBias: bhh, initialHidden: h0, initialCell: cell == .lstm ? c0 : nil)
            /// States, final states and every gradient, with the kernel's buffer or the caller's.
            func run(callerOutputs: Bool) -> [[Float]] {
                let kernel = RecurrentKernel<Float>(cell: cell, inputSize: i, hiddenSize: h, layout: layout,
                                                    outputStride: callerOutputs ? stride : nil, callerOutputs: callerOutputs)
                let outputs = UnsafeMutablePointer<Float>.allocate(capacity: n * stride)
                outputs.initialize(repeating: .nan, count: n * stride)
                defer { outputs.deallocate() }
                if callerOutputs { kernel.useOutputs(outputs) }
                kernel.forward(inputs)
                let rowStride = kernel.outputStride
                let states = (0..<n).flatMap { r in (0..<h).map { kernel.hidden[r * rowStride + $0] } }
                // The same output gradients, laid out at the kernel's row stride.
                let dHidden = UnsafeMutablePointer<Float>.allocate(capacity: n * rowStride)
                defer { dHidden.deallocate() }
                for r in 0..<n { for j in 0..<h { dHidden[r * rowStride + j] = dOut[r * stride + j] } }
                let sizes = [n * i, g * i, g * h, g, g, b * h, b * h]
                let buffers = sizes.map { count -> UnsafeMutablePointer<Float> in
                    let p = UnsafeMutablePointer<Float>.allocate(capacity: count)
                    p.initialize(repeating: 0, count: count)
                    return p
                }
                defer { for p in buffers { p.deallocate() } }
                let gradients = RecurrentKernel<Float>.Gradients(
                    input: buffers[0], inputWeight: buffers[1], recurrentWeight: buffers[2], inputBias: buffers[3],
                    recurrentBias: buffers[4], initialHidden: buffers[5], initialCell: cell == .lstm ? buffers[6] : nil)
                kernel.backward(inputs, dHidden: dHidden, dFinalHidden: dFinal, dFinalCell: cell == .lstm ? dFinalCell : nil,
                                into: gradients)
                let finals = [Array(UnsafeBufferPointer(start: kernel.finalHidden, count: b * h)),
                              cell == .lstm ? Array(UnsafeBufferPointer(start: kernel.finalCell, count: b * h)) : []]
                return [states] + finals + zip(buffers, sizes).map { Array(UnsafeBufferPointer(start: $0, count: $1)) }
            }
            let own = run(callerOutputs: false), caller = run(callerOutputs: true)
            XCTAssertEqual(own.count, caller.count)
            for (index, (a, c)) in zip(own, caller).enumerated() {
                XCTAssertFalse(a.contains { !$0.isFinite }, "\(cell) result \(index) is not finite")
                XCTAssertEqual(a, c, "\(cell) result \(index) differs between the kernel's buffer and the caller's")
            }
        }
    }

    /// The weight gradients' two halves: cut at a multiple of 16, covering every row once, with
    /// costs (a stored row 2, another 1) as equal as a 16-row step allows, wherever the first
    /// step's unstored rows are (at the start, or at the end when steps are stored in reverse).
    func testBalancedHalvesEvenOutTheirCost() {
        typealias Passes = RecurrentPasses<Float>
        for (count, stored) in [(1024, 128..<1024), (1024, 0..<896), (1024, 0..<1024), (96, 32..<96), (200, 0..<0)] {
            let halves = Passes.balancedHalves(count, stored: stored)
            XCTAssertEqual(halves.count, 2, "\(count) \(stored)")
            guard halves.count == 2 else { continue }
            XCTAssertEqual(halves[0].lowerBound, 0)
            XCTAssertEqual(halves[0].upperBound, halves[1].lowerBound)
            XCTAssertEqual(halves[1].upperBound, count)
            XCTAssertEqual(halves[0].upperBound % 16, 0)
            func cost(_ rows: Range<Int>) -> Int { rows.count + rows.clamped(to: stored).count }
            XCTAssertLessThanOrEqual(abs(cost(halves[0]) - cost(halves[1])), 2 * 16, "\(count) \(stored): \(halves)")
        }
        // All rows stored: plain halves. 128 unstored rows at the start: the first half takes
        // them and 64 stored rows fewer than the second (128 + 2 * 416 = 2 * 480 = 960 each).
        XCTAssertEqual(Passes.balancedHalves(1024, stored: 0..<1024), [0..<512, 512..<1024])
        XCTAssertEqual(Passes.balancedHalves(1024, stored: 128..<1024), [0..<544, 544..<1024])
        XCTAssertEqual(Passes.balancedHalves(1024, stored: 0..<896), [0..<480, 480..<1024])
        // Too few rows to cut: one piece.
        XCTAssertEqual(Passes.balancedHalves(16, stored: 0..<16), [0..<16])
    }
}
