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

    /// One direction's arguments to `run`.
    struct Direction<S: TensorScalar> {
        var cell: RecurrentCell
        var layout: PackedLayout
        var input: Tensor<S>
        var weights: [Tensor<S>]
        var initialHidden: Tensor<S>
        var initialCell: Tensor<S>?
        var stateMask: Tensor<S>?
        var updateMask: Tensor<S>?
    }

    /// A direction ready for its kernel: the kernel, the tensors it reads (differentiable first),
    /// and how to turn their base pointers into the kernel's inputs.
    struct Prepared<S: TensorScalar> {
        let kernel: RecurrentKernel<S>
        let differentiable: [Tensor<S>]
        let masks: [Tensor<S>]
        let hasCell: Bool, hasStateMask: Bool, hasUpdateMask: Bool
        var n: Int { kernel.layout.rows }
        var b: Int { kernel.layout.batch }
        var h: Int { kernel.hiddenSize }
        /// Elements of this direction's part of the flat output: outputs, final hidden (and cell).
        var outputCount: Int { n * h + (hasCell ? 2 : 1) * b * h }

        init(_ d: Direction<S>, recording: Bool) {
            let b = d.layout.batch, h = d.initialHidden.shape[1]
            kernel = RecurrentKernel<S>(cell: d.cell, inputSize: d.input.shape[1], hiddenSize: h, layout: d.layout,
                                        keepsForBackward: recording)
            let c0 = d.cell == .lstm ? (d.initialCell ?? Tensor.zeros(unchecked: [b, h])) : nil
            differentiable = [d.input] + d.weights + [d.initialHidden] + (c0.map { [$0] } ?? [])
            masks = [d.stateMask, d.updateMask].compactMap { $0 }
            (hasCell, hasStateMask, hasUpdateMask) = (c0 != nil, d.stateMask != nil, d.updateMask != nil)
        }

        func inputs(_ p: [UnsafePointer<S>]) -> RecurrentKernel<S>.Inputs {
            var k = 6
            let c = hasCell ? p[k] : nil
            if hasCell { k += 1 }
            let sm = hasStateMask ? p[k] : nil
            if hasStateMask { k += 1 }
            let um = hasUpdateMask ? p[k] : nil
            return .init(input: p[0], inputWeight: p[1], recurrentWeight: p[2], inputBias: p[3], recurrentBias: p[4],
                         initialHidden: p[5], initialCell: c, stateMask: sm, updateMask: um)
        }

        func forward() {
            withPointers(differentiable + masks) { p in kernel.forward(inputs(p)) }
        }

        /// Writes outputs and final states into `out` (outputCount elements).
        func copyOutputs(to out: UnsafeMutablePointer<S>) {
            Memory.copy(kernel.hidden, to: out, count: n * h)
            Memory.copy(kernel.finalHidden, to: out + n * h, count: b * h)
            if hasCell { Memory.copy(kernel.finalCell, to: out + n * h + b * h, count: b * h) }
        }

        /// The gradients of `differentiable` from this direction's part `g` of the output gradient;
        /// `nil` for the input and initial states when they are not recorded (nothing upstream
        /// wants them), which spares the kernel their work. The weights always get theirs.
        func backward(_ g: UnsafePointer<S>) -> [Tensor<S>?] {
            let weightCount = 4
            let wanted = differentiable.enumerated().map { index, tensor in
                (1...weightCount).contains(index) || tensor.isRecorded
            }
            let shapes = differentiable.map(\.shape)
            let buffers = zip(shapes, wanted).map { shape, wanted -> UnsafeMutablePointer<S>? in
                guard wanted else { return nil }
                let count = Swift.max(shape.reduce(1, *), 1)
                let p = UnsafeMutablePointer<S>.allocate(capacity: count)
                Memory.zero(p, count: count)
                return p
            }
            defer { buffers.forEach { $0?.deallocate() } }
            withPointers(differentiable + masks) { p in
                kernel.backward(
                    inputs(p), dHidden: g, dFinalHidden: g + n * h, dFinalCell: hasCell ? g + n * h + b * h : nil,
                    into: .init(input: buffers[0], inputWeight: buffers[1]!, recurrentWeight: buffers[2]!,
                                inputBias: buffers[3]!, recurrentBias: buffers[4]!, initialHidden: buffers[5],
                                initialCell: hasCell ? buffers[6] : nil))
            }
            return zip(buffers, shapes).map { buffer, shape in
                buffer.map { Tensor(unchecked: shape, scalars: Memory.array(copying: $0, count: shape.reduce(1, *))) }
            }
        }
    }

    /// Runs `body(k)` for k in 0..<count: two directions of a bidirectional layer concurrently
    /// on the worker team (each then runs its steps whole, with no per-step hand-over), else
    /// one after the other.
    static func eachDirection(_ count: Int, _ body: (Int) -> Void) {
        if count == 2, let team = WorkerTeam.shared, team.tryRun(body) { return }
        for k in 0..<count { body(k) }
    }

    /// Runs one direction over packed rows (see `runAll`).
    static func run<S: TensorScalar>(
        cell: RecurrentCell, layout: PackedLayout, input: Tensor<S>, weights: [Tensor<S>],
        initialHidden: Tensor<S>, initialCell: Tensor<S>?, stateMask: Tensor<S>?, updateMask: Tensor<S>?
    ) throws -> (outputs: Tensor<S>, hidden: Tensor<S>, cell: Tensor<S>?) {
        try runAll([Direction(cell: cell, layout: layout, input: input, weights: weights, initialHidden: initialHidden,
                              initialCell: initialCell, stateMask: stateMask, updateMask: updateMask)])[0]
    }

    /// Runs layer directions over packed rows, as one record on the tape.
    ///
    /// Shapes per direction: input [N, I] packed by `layout`; weights [G H, I], [G H, H], [G H],
    /// [G H]; initial hidden and cell [B, H] (sorted like the layout); stateMask [B, H];
    /// updateMask [N, H]. Returns per direction (outputs [N, H], final hidden [B, H], final
    /// cell [B, H] or nil), slices of the record's flat output. Two directions run concurrently
    /// forward and backward.
    static func runAll<S: TensorScalar>(_ directions: [Direction<S>]) throws -> [(outputs: Tensor<S>, hidden: Tensor<S>, cell: Tensor<S>?)] {
        let recording = GradientRecording.isEnabled && directions.contains { d in
            ([d.input, d.initialHidden] + d.weights + (d.initialCell.map { [$0] } ?? [])).contains(where: \.isRecorded)
        }
        let prepared = directions.map { Prepared($0, recording: recording) }
        eachDirection(prepared.count) { k in prepared[k].forward() }
        let differentiable = prepared.flatMap(\.differentiable)
        if !recording {
            // Nothing to record: each result straight from the kernel's buffers, with no flat
            // record to slice (one copy of the outputs instead of two).
            return prepared.map { d in
                let (n, b, h, kernel) = (d.n, d.b, d.h, d.kernel)
                return (Tensor(unchecked: [n, h], scalars: Memory.array(copying: kernel.hidden, count: n * h)),
                        Tensor(unchecked: [b, h], scalars: Memory.array(copying: kernel.finalHidden, count: b * h)),
                        d.hasCell ? Tensor(unchecked: [b, h], scalars: Memory.array(copying: kernel.finalCell, count: b * h)) : nil)
            }
        }
        let offsets = prepared.reduce(into: [0]) { $0.append($0.last! + $1.outputCount) }
        let flat: [S] = Memory.fullyWritten(offsets.last!) { out in
            for (k, d) in prepared.enumerated() { d.copyOutputs(to: out + offsets[k]) }
        }
        let combined = Tensor(unchecked: [flat.count], scalars: flat).recorded(from: differentiable) { g in
            var grads = [[Tensor<S>?]](repeating: [], count: prepared.count)
            g.scalars.withUnsafeBufferPointer { gp in
                guard let base = gp.baseAddress else { return }
                // Each direction writes only its own slot.
                grads.withUnsafeMutableBufferPointer { slots in
                    eachDirection(prepared.count) { k in slots[k] = prepared[k].backward(base + offsets[k]) }
                }
            }
            return grads.flatMap { $0 }
        }
        return try prepared.enumerated().map { k, d in
            let (n, b, h, o) = (d.n, d.b, d.h, offsets[k])
            let outputs = try combined.slice(axis: 0, o..<(o + n * h)).reshaped([n, h])
            let hidden = try combined.slice(axis: 0, (o + n * h)..<(o + n * h + b * h)).reshaped([b, h])
            let cell = d.hasCell ? try combined.slice(axis: 0, (o + n * h + b * h)..<(o + n * h + 2 * b * h)).reshaped([b, h]) : nil
            return (outputs, hidden, cell)
        }
    }
}
