/// Fused forward and backward passes of a recurrent layer over a packed batch, for any cell
/// (`RecurrentCellRows`: RNN, GRU, LSTM or one of your own).
///
/// Legend: B batch, T steps, N packed rows (sum of lengths), I input features, H hidden units,
/// G gates (RNN 1, GRU 3, LSTM 4). Weight layout is PyTorch's; the cells' equations are in
/// their files (`RNNCell`, `GRUCell`, `LSTMCell`).
///
/// Work: the input projection of all steps is one GEMM [N, I] x [I, G H] before the loop; each
/// step runs one GEMM over its live rows and one elementwise pass; backward runs one GEMM per step
/// for the state gradient and, after the loop, one GEMM each for the input and recurrent weight
/// gradients and for the input gradient. Buffers are allocated once per call, never in the loop.
///
/// Dropout hooks (masks already scaled by 1/(1-p)): `stateMask` [B, H] multiplies the state that
/// enters the recurrent product at every step (variational state dropout); `updateMask` [N, H]
/// multiplies the candidate update (LSTM g, GRU n, RNN h) per step (state-update dropout).
public final class RecurrentKernel<S: TensorScalar> {
    public let cell: any RecurrentCellRows.Type
    public let inputSize: Int, hiddenSize: Int
    public let layout: PackedLayout

    /// Outputs: the state after every step [N, H] (rows `outputStride` apart; the kernel's own
    /// buffer, or the caller's memory set with `useOutputs`); the final states [B, H] (each
    /// sequence's own last step); the LSTM cell state after every step [N, H].
    public private(set) var hidden: UnsafeMutablePointer<S>
    /// Elements between consecutive rows of `hidden` (and of the gradient `backward` takes for
    /// them): H, or more when the caller's rows hold other values too (the two directions of a
    /// bidirectional layer each writing their half of every merged row).
    public let outputStride: Int
    public let finalHidden: UnsafeMutablePointer<S>
    public let cellStates: UnsafeMutablePointer<S>
    public let finalCell: UnsafeMutablePointer<S>
    /// Saved for backward: activated gates [N, G H] (RNN: tanh of the pre-activation), and the
    /// cell's saved row [N, H] in `extra` (LSTM tanh(c'), GRU W_hn h + b_hn). The backward pass
    /// writes the gates' gradients over them.
    let gates: UnsafeMutablePointer<S>
    /// Whether a backward pass has run since the last forward (and so consumed the gates).
    private var gatesConsumed = false
    let extra: UnsafeMutablePointer<S>
    /// One step's scratch: the masked previous state [B, H] and the recurrent side [B, G H] (cells
    /// that keep it apart; a lean kernel's gates).
    let scratchState: UnsafeMutablePointer<S>
    let scratchProjection: UnsafeMutablePointer<S>

    /// Whether the last forward started from an all-zero state (every sequence's initial hidden
    /// state is 0), so that its first recurrent product, whose result is 0, was skipped.
    public internal(set) var startedFromZero = false

    private var allocations: [UnsafeMutablePointer<S>] = []

    /// Set when this kernel is one of the two directions of a bidirectional layer: its large
    /// products (the input projection; after the backward loop, the input and weight gradients)
    /// go in chunks to `SharedChunks`, which both threads take when the directions run at once.
    public var sharing: ChunkSharing?

    /// Inference only (`keepsForBackward` false; Float, a cell with inference rows: the LSTM):
    /// the forward pass keeps nothing for a backward pass. Each step's recurrent product goes to a [B, G H] scratch that stays in
    /// cache and also takes the activations; the cell state lives in two [B, H] halves used in
    /// turn, tanh(c) in one. The input projection of all steps is then only read, and the
    /// [N, G H] gate rows and the two [N, H] buffers are not written back to memory.
    public let isLean: Bool

    /// With `callerOutputs` the kernel has no buffer for the states: the caller names the memory,
    /// rows `outputStride` elements apart, with `useOutputs` before each pass.
    public convenience init(cell: RecurrentCell, inputSize: Int, hiddenSize: Int, layout: PackedLayout, keepsForBackward: Bool = true,
                            outputStride: Int? = nil, callerOutputs: Bool = false) {
        self.init(cell: cell.rows, inputSize: inputSize, hiddenSize: hiddenSize, layout: layout, keepsForBackward: keepsForBackward,
                  outputStride: outputStride, callerOutputs: callerOutputs)
    }

    public init(cell: any RecurrentCellRows.Type, inputSize: Int, hiddenSize: Int, layout: PackedLayout, keepsForBackward: Bool = true,
                outputStride: Int? = nil, callerOutputs: Bool = false) {
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSize = hiddenSize
        self.layout = layout
        let lean = !keepsForBackward && cell.hasInferenceRows && S.self == Float.self
        isLean = lean
        let n = layout.rows, b = layout.batch, h = hiddenSize, g = cell.gates * hiddenSize
        // The per-row buffers ([N, ...]) are written in full by the forward pass before any read,
        // so they are left uninitialized (zeroing them was 5% of a small training step); the
        // per-sequence ones are zeroed.
        func buffer(_ count: Int, zeroed: Bool = true) -> UnsafeMutablePointer<S> {
            let p = UnsafeMutablePointer<S>.allocate(capacity: Swift.max(count, 1))
            if zeroed { Memory.zero(p, count: Swift.max(count, 1)) }
            return p
        }
        precondition((outputStride ?? h) >= h, "output rows \(outputStride ?? h) apart cannot hold \(h) states")
        precondition(callerOutputs || (outputStride ?? h) == h, "the kernel's own buffer holds rows H apart")
        // With caller outputs, a one-element placeholder until `useOutputs`.
        hidden = buffer(callerOutputs ? 1 : n * h, zeroed: false)
        self.outputStride = outputStride ?? h
        finalHidden = buffer(b * h)
        cellStates = buffer(cell.hasCellState ? (lean ? 2 * b * h : n * h) : 0, zeroed: false)
        finalCell = buffer(cell.hasCellState ? b * h : 0)
        gates = buffer(n * g, zeroed: false)
        extra = buffer(cell.savesRow ? (lean ? b * h : n * h) : 0, zeroed: false)
        scratchState = buffer(b * h)
        scratchProjection = buffer(cell.keepsRecurrentSide || lean ? b * g : 0)
        allocations = [hidden, finalHidden, cellStates, finalCell, gates, extra, scratchState, scratchProjection]
    }

    deinit { for p in allocations { p.deallocate() } }

    /// Points the state outputs [N, H] (rows `outputStride` apart) at `outputs`: where the next
    /// forward pass writes them and the next backward pass reads them back. For a kernel made
    /// with `callerOutputs`; the caller keeps that memory alive and unchanged from the forward
    /// pass to the backward pass (an array the results tensor owns, pointed to again for the
    /// backward).
    public func useOutputs(_ outputs: UnsafeMutablePointer<S>) {
        hidden = outputs
    }

    /// Read-only weights and inputs of one call.
    public struct Inputs {
        public var input: UnsafePointer<S>            // [N, I] packed
        public var inputWeight: UnsafePointer<S>      // [G H, I]
        public var recurrentWeight: UnsafePointer<S>  // [G H, H]
        public var inputBias: UnsafePointer<S>        // [G H]
        public var recurrentBias: UnsafePointer<S>    // [G H]
        public var initialHidden: UnsafePointer<S>    // [B, H]
        public var initialCell: UnsafePointer<S>?     // [B, H], cells with a cell state
        public var stateMask: UnsafePointer<S>?       // [B, H]
        public var updateMask: UnsafePointer<S>?      // [N, H]
        /// int8 forms of the weights (Float, forward only): when set, the forward pass's products
        /// with that weight run in int8 (`QuantizedMatrix`).
        public var quantizedInputWeight: QuantizedMatrix?
        public var quantizedRecurrentWeight: QuantizedMatrix?

        public init(input: UnsafePointer<S>, inputWeight: UnsafePointer<S>, recurrentWeight: UnsafePointer<S>,
                    inputBias: UnsafePointer<S>, recurrentBias: UnsafePointer<S>, initialHidden: UnsafePointer<S>,
                    initialCell: UnsafePointer<S>? = nil, stateMask: UnsafePointer<S>? = nil, updateMask: UnsafePointer<S>? = nil,
                    quantizedInputWeight: QuantizedMatrix? = nil, quantizedRecurrentWeight: QuantizedMatrix? = nil) {
            precondition(S.self == Float.self || (quantizedInputWeight == nil && quantizedRecurrentWeight == nil), "int8 weights are for Float")
            self.quantizedInputWeight = quantizedInputWeight
            self.quantizedRecurrentWeight = quantizedRecurrentWeight
            self.input = input
            self.inputWeight = inputWeight
            self.recurrentWeight = recurrentWeight
            self.inputBias = inputBias
            self.recurrentBias = recurrentBias
            self.initialHidden = initialHidden
            self.initialCell = initialCell
            self.stateMask = stateMask
            self.updateMask = updateMask
        }
    }

    /// Gradient buffers the backward pass *adds* into (zero them for a fresh gradient), but for
    /// the input's, which it writes in full (no zeroing needed). The input and initial-state
    /// gradients are optional: `nil` skips their work (the input gradient's GEMM; the first
    /// step's state-gradient product).
    public struct Gradients {
        public var input: UnsafeMutablePointer<S>?           // [N, I]
        public var inputWeight: UnsafeMutablePointer<S>      // [G H, I]
        public var recurrentWeight: UnsafeMutablePointer<S>  // [G H, H]
        public var inputBias: UnsafeMutablePointer<S>        // [G H]
        public var recurrentBias: UnsafeMutablePointer<S>    // [G H]
        public var initialHidden: UnsafeMutablePointer<S>?   // [B, H]
        public var initialCell: UnsafeMutablePointer<S>?     // [B, H], cells with a cell state

        public init(input: UnsafeMutablePointer<S>?, inputWeight: UnsafeMutablePointer<S>,
                    recurrentWeight: UnsafeMutablePointer<S>, inputBias: UnsafeMutablePointer<S>,
                    recurrentBias: UnsafeMutablePointer<S>, initialHidden: UnsafeMutablePointer<S>?,
                    initialCell: UnsafeMutablePointer<S>?) {
            self.input = input
            self.inputWeight = inputWeight
            self.recurrentWeight = recurrentWeight
            self.inputBias = inputBias
            self.recurrentBias = recurrentBias
            self.initialHidden = initialHidden
            self.initialCell = initialCell
        }
    }

    /// Runs the recurrence; fills `hidden`, `finalHidden` (and the cell states of a cell with one).
    public func forward(_ x: Inputs) {
        precondition(!cell.hasCellState || x.initialCell != nil, "a \(cell.name) kernel needs an initial cell state")
        gatesConsumed = false
        if S.self == Float.self {
            RecurrentPasses<Float>.forward(unsafeDowncast(self, to: RecurrentKernel<Float>.self),
                                           unsafeBitCast(x, to: RecurrentKernel<Float>.Inputs.self))
        } else {
            RecurrentPasses<S>.forward(self, x)
        }
    }

    /// Backpropagates `dHidden` [N, H] (gradient of every output state, rows `outputStride` apart
    /// like the states) and the gradients of the final states `dFinalHidden` [B, H], `dFinalCell`
    /// [B, H] (cells with a cell state) through the last `forward`. Once per forward: it overwrites the gates the
    /// forward pass saved (as PyTorch frees a graph's buffers after a backward pass).
    public func backward(_ x: Inputs, dHidden: UnsafePointer<S>, dFinalHidden: UnsafePointer<S>,
                         dFinalCell: UnsafePointer<S>?, into gradients: Gradients) {
        precondition(!isLean, "this kernel was made for inference (keepsForBackward: false)")
        precondition(!gatesConsumed, "a second backward pass through one forward pass: run forward again first")
        gatesConsumed = true
        if S.self == Float.self {
            typealias K = RecurrentKernel<Float>
            RecurrentPasses<Float>.backward(
                unsafeDowncast(self, to: K.self), unsafeBitCast(x, to: K.Inputs.self),
                UnsafeRawPointer(dHidden).assumingMemoryBound(to: Float.self),
                UnsafeRawPointer(dFinalHidden).assumingMemoryBound(to: Float.self),
                dFinalCell.map { UnsafeRawPointer($0).assumingMemoryBound(to: Float.self) },
                unsafeBitCast(gradients, to: K.Gradients.self))
        } else {
            RecurrentPasses<S>.backward(self, x, dHidden, dFinalHidden, dFinalCell, gradients)
        }
    }
}
