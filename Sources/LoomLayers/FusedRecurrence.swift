/// The fused kernel as one op on the tape: a whole packed sequence forward, one pullback.
enum FusedRecurrence {
    /// Calls `body` with a base pointer for each tensor's elements (a valid dummy for an empty one).
    static func withPointers<S: TensorScalar, R>(_ tensors: [Tensor<S>], _ body: ([UnsafePointer<S>]) -> R) -> R {
        var pointers: [UnsafePointer<S>] = []
        var result: R?
        func visit(_ i: Int) {
            if i == tensors.count { result = body(pointers); return }
            tensors[i].scalars.withUnsafeBufferPointer { buffer in
                if let base = buffer.baseAddress {
                    pointers.append(base)
                    visit(i + 1)
                } else {
                    // An empty tensor: the kernel reads nothing from it, but wants a pointer.
                    [S(0)].withUnsafeBufferPointer { d in
                        guard let base = d.baseAddress else { return }
                        pointers.append(base)
                        visit(i + 1)
                    }
                }
                pointers.removeLast()
            }
        }
        visit(0)
        guard let result else { preconditionFailure("withPointers: body did not run") }
        return result
    }

    /// Runs one layer direction over packed rows.
    ///
    /// Shapes: input [N, I] packed by `layout`; weights [G H, I], [G H, H], [G H], [G H];
    /// initial hidden and cell [B, H] (sorted like the layout); stateMask [B, H]; updateMask [N, H].
    /// Returns (outputs [N, H], final hidden [B, H], final cell [B, H] or nil), all on the tape
    /// through one record (its flat output is sliced into the three).
    static func run<S: TensorScalar>(
        cell: RecurrentCell, layout: PackedLayout, input: Tensor<S>, weights: [Tensor<S>],
        initialHidden: Tensor<S>, initialCell: Tensor<S>?, stateMask: Tensor<S>?, updateMask: Tensor<S>?
    ) throws -> (outputs: Tensor<S>, hidden: Tensor<S>, cell: Tensor<S>?) {
        let inputSize = input.shape[1], hiddenSize = initialHidden.shape[1]
        let n = layout.rows, b = layout.batch, h = hiddenSize
        let kernel = RecurrentKernel<S>(cell: cell, inputSize: inputSize, hiddenSize: hiddenSize, layout: layout)
        let c0 = cell == .lstm ? (initialCell ?? Tensor.zeros(unchecked: [b, h])) : nil
        let differentiable = [input] + weights + [initialHidden] + (c0.map { [$0] } ?? [])
        let masks = [stateMask, updateMask].compactMap { $0 }
        func inputs(_ p: [UnsafePointer<S>]) -> RecurrentKernel<S>.Inputs {
            var k = 6
            let c = c0 == nil ? nil : p[k]
            if c0 != nil { k += 1 }
            let sm = stateMask == nil ? nil : p[k]
            if stateMask != nil { k += 1 }
            let um = updateMask == nil ? nil : p[k]
            return .init(input: p[0], inputWeight: p[1], recurrentWeight: p[2], inputBias: p[3], recurrentBias: p[4],
                         initialHidden: p[5], initialCell: c, stateMask: sm, updateMask: um)
        }
        withPointers(differentiable + masks) { p in kernel.forward(inputs(p)) }

        let flat: [S] = Memory.build(n * h + (cell == .lstm ? 2 : 1) * b * h) { out in
            Memory.copy(kernel.hidden, to: out, count: n * h)
            Memory.copy(kernel.finalHidden, to: out + n * h, count: b * h)
            if cell == .lstm { Memory.copy(kernel.finalCell, to: out + n * h + b * h, count: b * h) }
        }
        let shapes = differentiable.map { $0.shape }
        let combined = Tensor(unchecked: [flat.count], scalars: flat).recorded(from: differentiable) { g in
            var grads: [[S]] = shapes.map { Memory.zeros($0.reduce(1, *)) }
            let dFinalCell: [S] = cell == .lstm ? Array(g.scalars[(n * h + b * h)...]) : Memory.zeros(1)
            withPointers(differentiable + masks) { p in
                g.scalars.withUnsafeBufferPointer { gp in
                    dFinalCell.withUnsafeBufferPointer { dc in
                        // Seven gradient buffers at most; bind each to a mutable pointer.
                        let buffers = grads.indices.map { i in
                            UnsafeMutablePointer<S>.allocate(capacity: Swift.max(grads[i].count, 1))
                        }
                        defer { buffers.forEach { $0.deallocate() } }
                        for (buffer, g) in zip(buffers, grads) { Memory.zero(buffer, count: Swift.max(g.count, 1)) }
                        guard let base = gp.baseAddress, let dcBase = dc.baseAddress else { return }
                        kernel.backward(
                            inputs(p), dHidden: base, dFinalHidden: base + n * h,
                            dFinalCell: cell == .lstm ? dcBase : nil,
                            into: .init(input: buffers[0], inputWeight: buffers[1], recurrentWeight: buffers[2],
                                        inputBias: buffers[3], recurrentBias: buffers[4], initialHidden: buffers[5],
                                        initialCell: cell == .lstm ? buffers[6] : nil))
                        for i in grads.indices { grads[i] = Memory.array(copying: buffers[i], count: grads[i].count) }
                    }
                }
            }
            return zip(grads, shapes).map { Tensor(unchecked: $1, scalars: $0) }
        }
        let outputs = try combined.slice(axis: 0, 0..<(n * h)).reshaped([n, h])
        let hidden = try combined.slice(axis: 0, (n * h)..<(n * h + b * h)).reshaped([b, h])
        let finalCell = cell == .lstm ? try combined.slice(axis: 0, (n * h + b * h)..<(n * h + 2 * b * h)).reshaped([b, h]) : nil
        return (outputs, hidden, finalCell)
    }
}
