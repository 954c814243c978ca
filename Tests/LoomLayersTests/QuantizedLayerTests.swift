@testable import LoomKernels
import LoomLayers
import XCTest

/// Layers with int8 weights (`Parameter.quantized`) off the tape: a recurrent layer's fused pass
/// equals its own decoder steps (`inferenceStep`, which run the same int8 products row by row),
/// and both differ from the Float layer only by the activations' rounding; `Linear` runs the int8
/// product; the tape path ignores the int8 form.
final class QuantizedLayerTests: XCTestCase {
    func quantize(_ p: Parameter<Float>) {
        let q = QuantizedMatrix(quantizing: p.data.scalars, rows: p.shape[0], columns: p.shape[1])
        p.quantized = q
        p.data = try! Tensor(shape: p.shape, scalars: q.dequantized())
    }

    /// Unequal lengths, a narrow input (which the Float pass would project step by step) and both
    /// products in int8. The fused pass and the steps compute the same int32 sums over the same
    /// rows; they differ only in the order of the float additions of the two products and the
    /// bias (a few ulps, ~1e-7 here), hence 1e-5.
    func testFusedInt8PassEqualsItsSteps() throws {
        func check<K: RecurrentCellKind>(_ kind: K.Type) throws {
            let s = RandomSource(seed: 21)
            let (b, t, i, h) = (5, 6, 10, 24)
            let layer = try Recurrent<Float, K>(inputSize: i, hiddenSize: h, using: s)
            let lengths = [6, 6, 4, 3, 1]
            let x = try Tensor<Float>.randomUniform([t, b, i], lower: -1, upper: 1, using: s)
            let w = layer.weights[0][0]
            quantize(w.inputWeight)
            quantize(w.recurrentWeight)
            let (fused, _) = try withoutGradients { try layer(SequenceBatch(values: x, lengths: lengths)) }
            var state = RecurrentState(hidden: Tensor<Float>.zeros(unchecked: [b, h]), cell: K.hasCellState ? Tensor<Float>.zeros(unchecked: [b, h]) : nil)
            for step in 0..<t {
                let running = lengths.filter { $0 > step }.count
                let xs = try x.select(axis: 0, index: step).slice(axis: 0, 0..<running)
                let st = RecurrentState(hidden: try state.hidden.slice(axis: 0, 0..<running), cell: try state.cell?.slice(axis: 0, 0..<running))
                let next = try XCTUnwrap(try withoutGradients { try w.inferenceStep(K.self, input: xs, state: st) })
                let out = try fused.values.select(axis: 0, index: step).slice(axis: 0, 0..<running)
                for (a, e) in zip(out.scalars, next.hidden.scalars) { XCTAssertEqual(a, e, accuracy: 1e-5, "\(K.name) step \(step)") }
                state = next
            }
            // The Float layer on the same (dequantized) weights: close, not the same.
            let q = [w.inputWeight.quantized, w.recurrentWeight.quantized]
            (w.inputWeight.quantized, w.recurrentWeight.quantized) = (nil, nil)
            let (float, _) = try withoutGradients { try layer(SequenceBatch(values: x, lengths: lengths)) }
            (w.inputWeight.quantized, w.recurrentWeight.quantized) = (q[0], q[1])
            let largest = zip(fused.values.scalars, float.values.scalars).map { abs($0 - $1) }.max() ?? 0
            XCTAssertGreaterThan(largest, 0, "\(K.name): the int8 products ran")
            // Each product's inputs move by at most half a step, max|x| / 254, over 10 + 24
            // inputs of weights below 1/sqrt(24): a gate moves by well under 0.05, and the
            // saturating gates do not amplify it.
            XCTAssertLessThan(largest, 0.05, "\(K.name)")
        }
        try check(LSTMCell.self)
        try check(GRUCell.self)
        try check(RNNCell.self)
    }

    func testLinearUsesTheInt8ProductOffTheTapeOnly() throws {
        let s = RandomSource(seed: 5)
        let layer = try Linear<Float>(inputSize: 7, outputSize: 20, using: s)
        quantize(layer.weight)
        let x = try Tensor<Float>.randomUniform([2, 3, 7], lower: -2, upper: 2, using: s)
        let y = try withoutGradients { try layer(x) }
        XCTAssertEqual(y.shape, [2, 3, 20])
        var direct = [Float](repeating: 0, count: 6 * 20)
        x.scalars.withUnsafeBufferPointer { layer.weight.quantized?.multiply(m: 6, a: $0.baseAddress!, lda: 7, beta: 0, c: &direct, ldc: 20) }
        let bias = layer.bias?.data.scalars ?? []
        for r in 0..<6 {
            for o in 0..<20 { XCTAssertEqual(y.scalars[r * 20 + o], direct[r * 20 + o] + bias[o], "row \(r) output \(o)") }
        }
        // On the tape: the Float weights, so that gradients are those of what the layer computes there.
        let taped = try layer(x)
        let float = try x.matmul(layer.weight.data, transposeB: true) + (layer.bias?.data ?? Tensor.zeros(unchecked: [20]))
        for (a, b) in zip(taped.scalars, float.scalars) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }
}
