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
}
