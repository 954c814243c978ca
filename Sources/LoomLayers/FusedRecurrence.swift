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
        var cell: any RecurrentCellRows.Type
        var layout: PackedLayout
        var input: Tensor<S>
        var weights: [Tensor<S>]
        var initialHidden: Tensor<S>
        var initialCell: Tensor<S>?
        var stateMask: Tensor<S>?
        var updateMask: Tensor<S>?
        /// int8 forms of the input and recurrent weights, for a forward pass off the tape.
        var quantized: [QuantizedMatrix?] = [nil, nil]
    }

    /// A direction ready for its kernel: the kernel, the tensors it reads (differentiable first),
    /// and how to turn their base pointers into the kernel's inputs.
    struct Prepared<S: TensorScalar> {
        let kernel: RecurrentKernel<S>
        let differentiable: [Tensor<S>]
        let masks: [Tensor<S>]
        let hasCell: Bool, hasStateMask: Bool, hasUpdateMask: Bool
        let quantized: [QuantizedMatrix?]
        var n: Int { kernel.layout.rows }
        var b: Int { kernel.layout.batch }
        var h: Int { kernel.hiddenSize }

        /// A kernel writing its states where the caller says (`useOutputs`), rows `outputStride` apart.
        init(_ d: Direction<S>, recording: Bool, outputStride: Int) {
            let b = d.layout.batch, h = d.initialHidden.shape[1]
            kernel = RecurrentKernel<S>(cell: d.cell, inputSize: d.input.shape[1], hiddenSize: h, layout: d.layout,
                                        keepsForBackward: recording, outputStride: outputStride, callerOutputs: true)
            let c0 = d.cell.hasCellState ? (d.initialCell ?? Tensor.zeros(unchecked: [b, h])) : nil
            differentiable = [d.input] + d.weights + [d.initialHidden] + (c0.map { [$0] } ?? [])
            masks = [d.stateMask, d.updateMask].compactMap { $0 }
            (hasCell, hasStateMask, hasUpdateMask) = (c0 != nil, d.stateMask != nil, d.updateMask != nil)
            quantized = recording ? [nil, nil] : d.quantized
        }

        func inputs(_ p: [UnsafePointer<S>]) -> RecurrentKernel<S>.Inputs {
            var k = 6
            let c = hasCell ? p[k] : nil
            if hasCell { k += 1 }
            let sm = hasStateMask ? p[k] : nil
            if hasStateMask { k += 1 }
            let um = hasUpdateMask ? p[k] : nil
            return .init(input: p[0], inputWeight: p[1], recurrentWeight: p[2], inputBias: p[3], recurrentBias: p[4],
                         initialHidden: p[5], initialCell: c, stateMask: sm, updateMask: um,
                         quantizedInputWeight: quantized[0], quantizedRecurrentWeight: quantized[1])
        }

        /// Runs the kernel forward, its large products shared through `sharing` when given.
        func forward(_ sharing: ChunkSharing?) {
            kernel.sharing = sharing
            withPointers(differentiable + masks) { p in kernel.forward(inputs(p)) }
        }

        /// The final hidden and cell states [B, H], copied out of the kernel's buffers.
        func finals() -> [Tensor<S>] {
            [Tensor(unchecked: [b, h], scalars: Memory.array(copying: kernel.finalHidden, count: b * h))]
                + (hasCell ? [Tensor(unchecked: [b, h], scalars: Memory.array(copying: kernel.finalCell, count: b * h))] : [])
        }

        /// The gradients of `differentiable` from the gradients of the outputs [N, H] (rows
        /// `outputStride` apart, like the states), final hidden and final cell [B, H]; `nil` for
        /// the input and initial states when they are not recorded (nothing upstream wants
        /// them), which spares the kernel their work. The weights always get theirs. `outputs`:
        /// the tensor that owns the array the forward pass wrote the states into, this
        /// direction's first state at `offset`. `sharing` as in `forward`.
        func backward(dOutputs: UnsafePointer<S>, dHidden: UnsafePointer<S>, dCell: UnsafePointer<S>?,
                      outputs: Tensor<S>, offset: Int, sharing: ChunkSharing?) -> [Tensor<S>?] {
            kernel.sharing = sharing
            let weightCount = 4
            let wanted = differentiable.enumerated().map { index, tensor in
                (1...weightCount).contains(index) || tensor.isRecorded
            }
            let shapes = differentiable.map { $0.shape }
            // The gradients are accumulated straight into the arrays the tensors will own; the
            // input's is written in full by the kernel, so it is not zeroed first.
            let arrays = makeArrays(zip(shapes, wanted).map { shape, wanted in wanted ? shape.reduce(1, *) : nil },
                                    zeroed: { $0 != 0 }) { (buffers: [UnsafeMutablePointer<S>?]) in
                withPointers(differentiable + masks + [outputs]) { p in
                    // The states, last: only read by the backward pass.
                    if let last = p.last { kernel.useOutputs(UnsafeMutablePointer(mutating: last) + offset) }
                    // The weights' gradients are always wanted (above), so their buffers exist.
                    guard let dInputWeight = buffers[1], let dRecurrentWeight = buffers[2], let dInputBias = buffers[3],
                          let dRecurrentBias = buffers[4] else { preconditionFailure("the weights' gradient buffers are missing") }
                    kernel.backward(
                        inputs(p), dHidden: dOutputs, dFinalHidden: dHidden, dFinalCell: hasCell ? dCell : nil,
                        into: .init(input: buffers[0], inputWeight: dInputWeight, recurrentWeight: dRecurrentWeight,
                                    inputBias: dInputBias, recurrentBias: dRecurrentBias, initialHidden: buffers[5],
                                    initialCell: hasCell ? buffers[6] : nil))
                }
            }
            return zip(arrays, shapes).map { array, shape in array.map { Tensor(unchecked: shape, scalars: $0) } }
        }
    }

    /// New arrays of `counts` elements, zeros at the indices `zeroed` names and left for `body`
    /// to write in full at the others, `nil` where a count is `nil`, with `body` called on their
    /// element pointers while they are being made (a valid pointer for an empty one too).
    static func makeArrays<S: TensorScalar>(_ counts: [Int?], zeroed: (Int) -> Bool,
                                            _ body: ([UnsafeMutablePointer<S>?]) -> Void) -> [[S]?] {
        var arrays = [[S]?](repeating: nil, count: counts.count)
        var pointers: [UnsafeMutablePointer<S>?] = []
        func visit(_ i: Int) {
            if i == counts.count { body(pointers); return }
            guard let count = counts[i] else {
                pointers.append(nil)
                visit(i + 1)
                pointers.removeLast()
                return
            }
            let array = [S](unsafeUninitializedCapacity: Swift.max(count, 1)) { buffer, initialized in
                guard let base = buffer.baseAddress else { preconditionFailure("makeArrays: no storage") }
                if zeroed(i) { Memory.zero(base, count: count) }
                pointers.append(base)
                visit(i + 1)
                pointers.removeLast()
                initialized = count
            }
            arrays[i] = array
        }
        visit(0)
        return arrays
    }

    /// Runs `body(k, sharing)` for k in 0..<count: two directions of a bidirectional layer
    /// concurrently on two threads of the worker team (each then runs its steps whole, with no per-step
    /// hand-over, and their large products go in chunks to one `SharedChunks`, `sharing` their
    /// handles on it), else one after the other. Two directions always cut their products into
    /// the same chunks, also one after the other, so that their sums, and so the results, do not
    /// depend on whether the team was free.
    static func eachDirection(_ count: Int, _ body: (Int, ChunkSharing?) -> Void) {
        let chunks = count == 2 ? SharedChunks() : nil
        func run(_ k: Int) {
            guard let chunks else { return body(k, nil) }
            chunks.begin(k)
            body(k, ChunkSharing(chunks, side: k))
            chunks.end(k)
        }
        // One after the other too, the two are a job's parts (`WorkerTeam.run`): their products
        // are cut the same way as on the team.
        if count == 2 { return WorkerTeam.shared.run(parts: 2, run) }
        for k in 0..<count { run(k) }
    }

    /// Runs one direction over packed rows (see `runAll`).
    static func run<S: TensorScalar>(
        cell: any RecurrentCellRows.Type, layout: PackedLayout, input: Tensor<S>, weights: [Tensor<S>],
        initialHidden: Tensor<S>, initialCell: Tensor<S>?, stateMask: Tensor<S>?, updateMask: Tensor<S>?
    ) throws -> (outputs: Tensor<S>, hidden: Tensor<S>, cell: Tensor<S>?) {
        try runAll([Direction(cell: cell, layout: layout, input: input, weights: weights, initialHidden: initialHidden,
                              initialCell: initialCell, stateMask: stateMask, updateMask: updateMask)])[0]
    }

    /// Whether a run of these directions goes on the tape (recording is on, and some input is recorded).
    static func isRecording<S: TensorScalar>(_ directions: [Direction<S>]) -> Bool {
        GradientRecording.isEnabled && directions.contains { d in
            ([d.input, d.initialHidden] + d.weights + (d.initialCell.map { [$0] } ?? [])).contains { $0.isRecorded }
        }
    }

    /// Runs layer directions over packed rows; on the tape, one backward pass for all of them.
    ///
    /// Shapes per direction: input [N, I] packed by `layout`; weights [G H, I], [G H, H], [G H],
    /// [G H]; initial hidden and cell [B, H] (sorted like the layout); stateMask [B, H];
    /// updateMask [N, H]. Returns per direction (outputs [N, H], final hidden [B, H], final
    /// cell [B, H] or nil). Two directions run concurrently forward and backward.
    static func runAll<S: TensorScalar>(_ directions: [Direction<S>]) throws -> [(outputs: Tensor<S>, hidden: Tensor<S>, cell: Tensor<S>?)] {
        let run = runDirections(directions, merged: false)
        return zip(run.outputs, run.finals).map { outputs, finals in (outputs, finals[0], finals.count > 1 ? finals[1] : nil) }
    }

    /// The directions of a bidirectional layer like `runAll`, over layouts with the same rows
    /// (full-length sequences, the reverse direction's steps stored in reverse so that its rows
    /// line up with the forward one's), their states merged by concatenation: each kernel writes
    /// its H columns of every row of the [N, D H] outputs in place, and reads its columns of
    /// their gradient, so the states are neither copied out of the kernels nor concatenated,
    /// and their gradient is not split. Returns the merged outputs and, per direction, the final
    /// hidden and cell states [B, H].
    static func runMerged<S: TensorScalar>(_ directions: [Direction<S>]) -> (outputs: Tensor<S>, finals: [(hidden: Tensor<S>, cell: Tensor<S>?)]) {
        precondition(directions.allSatisfy { $0.layout.rows == directions[0].layout.rows }, "merged directions need the same rows")
        let run = runDirections(directions, merged: true)
        return (run.outputs[0], run.finals.map { ($0[0], $0.count > 1 ? $0[1] : nil) })
    }

    /// `runAll` (one [N, H] outputs tensor per direction) and `runMerged` (one [N, D H]): the
    /// outputs, and per direction its final hidden and cell states.
    @_specialize(where S == Float) // Float pre-specialized: see Recurrent.run
    static func runDirections<S: TensorScalar>(_ directions: [Direction<S>], merged: Bool) -> (outputs: [Tensor<S>], finals: [[Tensor<S>]]) {
        let recording = isRecording(directions)
        let h = directions.first?.initialHidden.shape[1] ?? 0, width = merged ? directions.count * h : h
        let prepared = directions.map { Prepared($0, recording: recording, outputStride: width) }
        // The states go straight into the arrays the outputs tensors will own (every row is
        // written in full), not into kernel buffers copied out afterwards.
        let counts: [Int?] = merged ? [(prepared.first?.n ?? 0) * width] : prepared.map { $0.n * $0.h }
        let arrays: [[S]?] = makeArrays(counts, zeroed: { _ in false }) { (p: [UnsafeMutablePointer<S>?]) in
            for (k, d) in prepared.enumerated() {
                if let base = merged ? p[0].map({ $0 + k * h }) : p[k] { d.kernel.useOutputs(base) }
            }
            eachDirection(prepared.count) { k, sharing in prepared[k].forward(sharing) }
        }
        let outputs = merged ? [Tensor(unchecked: [prepared.first?.n ?? 0, width], scalars: arrays[0] ?? [])]
            : prepared.enumerated().map { k, d in Tensor(unchecked: [d.n, d.h], scalars: arrays[k] ?? []) }
        let finals = prepared.map { $0.finals() }
        // Nothing to record: the results as they are.
        guard recording else { return (outputs, finals) }
        // One tape record per result, each over a shared empty record that stands for the
        // kernels: a result's pullback files its gradient in `received` (the tape visits every
        // result before the shared record, which they all depend on), then the shared record's
        // pullback runs the kernels' backward passes once with all of them. No result needs a
        // copy into, or a slice out of, one flat output. Slot 0 holds the outputs' gradients,
        // slot 1 + k direction k's final states'.
        let received = ReceivedGradients<S>(counts: [outputs.count] + finals.map { $0.count })
        let kernels = Tensor<S>(unchecked: [0], scalars: []).recorded(from: prepared.flatMap { $0.differentiable }) { _ in
            // Every result's gradient (zeros for one the loss does not reach), taken here, before
            // the directions run concurrently.
            let dOutputs = outputs.enumerated().map { i, o in received.take(0, i) ?? Tensor.zeros(unchecked: o.shape) }
            let dFinals = prepared.enumerated().map { k, d in
                finals[k].indices.map { i in received.take(1 + k, i) ?? Tensor.zeros(unchecked: [d.b, d.h]) }
            }
            var grads = [[Tensor<S>?]](repeating: [], count: prepared.count)
            grads.withUnsafeMutableBufferPointer { slots in
                // Each direction writes only its own slot.
                eachDirection(prepared.count) { k, sharing in
                    let (states, offset) = merged ? (0, k * h) : (k, 0)
                    slots[k] = withPointers([dOutputs[states]] + dFinals[k]) { p in
                        prepared[k].backward(dOutputs: p[0] + offset, dHidden: p[1], dCell: p.count > 2 ? p[2] : nil,
                                             outputs: outputs[states], offset: offset, sharing: sharing)
                    }
                }
            }
            return grads.flatMap { $0 }
        }
        let empty = Tensor<S>(unchecked: [0], scalars: [])
        func record(_ value: Tensor<S>, slot: Int, index: Int) -> Tensor<S> {
            value.recorded(from: [kernels]) { g in
                received.file(g, slot, index)
                return [empty]
            }
        }
        return (outputs.enumerated().map { i, o in record(o, slot: 0, index: i) },
                finals.enumerated().map { k, f in f.enumerated().map { i, value in record(value, slot: 1 + k, index: i) } })
    }
}

/// The gradients that reached the results of `FusedRecurrence.runDirections`, per slot (a group
/// of results) and result, until the kernels' shared record takes them.
final class ReceivedGradients<S: TensorScalar>: @unchecked Sendable {
    private var slots: [[Tensor<S>?]]

    init(counts: [Int]) { slots = counts.map { [Tensor<S>?](repeating: nil, count: $0) } }

    func file(_ g: Tensor<S>, _ slot: Int, _ result: Int) { slots[slot][result] = g }

    /// The gradient filed for a result (nil when none reached it), handed over once.
    func take(_ slot: Int, _ result: Int) -> Tensor<S>? {
        defer { slots[slot][result] = nil }
        return slots[slot][result]
    }
}
