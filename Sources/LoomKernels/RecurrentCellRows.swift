/// What the fused recurrent kernel needs to know of a cell: its gate count, its state layout, what
/// its backward pass needs saved, and its elementwise rows, forward and backward.
///
/// The kernel (`RecurrentKernel`, loops in `RecurrentPasses`) owns the products and the
/// recurrence: before a step's rows run, `gates` holds the step's pre-activations `W_ih x` (plus
/// `W_hh h` unless the cell keeps the recurrent side apart); afterwards it reads back the new
/// states. It never asks which cell it runs. A cell is a type with static members, one file per
/// cell (`RNNCell`, `GRUCell`, `LSTMCell`), the Float rows calling C (`loom_rnn.c`, `loom_gru.c`,
/// `loom_lstm.c`, the fast path) and Swift rows for every other scalar type (Double, in which the
/// tests hold the fused kernel to the oracle). The oracle is the cell's tensor-op step, which
/// layers add by refining this protocol (`RecurrentCellKind` in LoomLayers); the C rows' AVX
/// versions are held to their portable versions (`CellRowTests`).
///
/// A new cell kind conforms with Swift rows alone (see the minimal gated unit in the tests):
/// C rows are a speed-up, not a requirement.
public protocol RecurrentCellRows {
    /// The cell's name in messages and model files ("lstm").
    static var name: String { get }
    /// Gate blocks G: the products are [G H] wide.
    static var gates: Int { get }
    /// Whether the state has a cell half [B, H] beside the hidden one (the LSTM's c).
    static var hasCellState: Bool { get }
    /// Whether the forward pass saves one [N, H] row per step for backward (`saved`) beside the
    /// activated gates (the LSTM's tanh(c'), the GRU's W_hn h + b_hn).
    static var savesRow: Bool { get }
    /// Whether the recurrent side `W_hh h + b_hh` stays apart from the input side (the GRU's
    /// reset gate multiplies part of it): the rows then get it in `recurrentSide`, `bias` is
    /// b_ih alone, and backward gives the two sides' gradients apart.
    static var keepsRecurrentSide: Bool { get }

    /// Forward rows of one step: pre-activations in `gates`, activations out, new states out.
    static func forward<S: TensorScalar>(_ rows: CellForwardRows<S>)
    /// Backward rows of one step: see `CellBackwardRows`.
    static func backward<S: TensorScalar>(_ rows: CellBackwardRows<S>)

    /// Whether the cell has rows for a kernel that keeps nothing for backward (Float; see
    /// `RecurrentKernel.isLean`), which read the input side from a buffer they leave unchanged.
    static var hasInferenceRows: Bool { get }
    /// Inference rows: `inputSide` [B, G H] the input projection (read only); `rows.gates` holds
    /// the recurrent product when `hasRecurrentProduct` (else it is not read) and takes the
    /// activations. `rows.saved` and `rows.cell` are per batch position, kept one step.
    static func inferenceForward(_ rows: CellForwardRows<Float>, inputSide: UnsafePointer<Float>, hasRecurrentProduct: Bool)
}

extension RecurrentCellRows {
    public static var hasCellState: Bool { false }
    public static var savesRow: Bool { false }
    public static var keepsRecurrentSide: Bool { false }
    public static var hasInferenceRows: Bool { false }
    public static func inferenceForward(_ rows: CellForwardRows<Float>, inputSide: UnsafePointer<Float>, hasRecurrentProduct: Bool) {
        preconditionFailure("\(name) has no inference rows")
    }
}

/// The rows of one step for a cell's forward pass. Every pointer addresses batch position 0 of
/// the step; row r is at `r * H` (states, masks, saved rows), `r * G H` (gates and recurrent
/// side) or `r * stride` (the previous hidden state and the output).
public struct CellForwardRows<S: TensorScalar> {
    /// The batch positions to run.
    public var rows: Range<Int>
    public var hiddenSize: Int
    /// [B, G H]: pre-activations of the input side (plus the recurrent side unless the cell
    /// keeps it apart), without biases; activations out.
    public var gates: UnsafeMutablePointer<S>
    /// [G H]: b_ih + b_hh, or b_ih alone when the cell keeps the recurrent side apart.
    public var bias: UnsafePointer<S>
    /// [B, G H]: W_hh h + b_hh when the cell keeps the recurrent side apart.
    public var recurrentSide: UnsafePointer<S>?
    /// [B, H] rows `previousHiddenStride` apart: the state entering the step.
    public var previousHidden: UnsafePointer<S>
    public var previousHiddenStride: Int
    /// [B, H]: the cell state entering the step and the new one (cells with a cell state).
    public var previousCell: UnsafePointer<S>?
    public var cell: UnsafeMutablePointer<S>?
    /// [B, H]: the row saved for backward (cells that save one).
    public var saved: UnsafeMutablePointer<S>?
    /// [B, H] rows `outputStride` apart: the new hidden state.
    public var output: UnsafeMutablePointer<S>
    public var outputStride: Int
    /// [B, H]: the state-update dropout mask (scaled), multiplying the candidate update; nil: ones.
    public var update: UnsafePointer<S>?

    public init(rows: Range<Int>, hiddenSize: Int, gates: UnsafeMutablePointer<S>, bias: UnsafePointer<S>,
                recurrentSide: UnsafePointer<S>? = nil, previousHidden: UnsafePointer<S>, previousHiddenStride: Int,
                previousCell: UnsafePointer<S>? = nil, cell: UnsafeMutablePointer<S>? = nil, saved: UnsafeMutablePointer<S>? = nil,
                output: UnsafeMutablePointer<S>, outputStride: Int, update: UnsafePointer<S>? = nil) {
        self.rows = rows
        self.hiddenSize = hiddenSize
        self.gates = gates
        self.bias = bias
        self.recurrentSide = recurrentSide
        self.previousHidden = previousHidden
        self.previousHiddenStride = previousHiddenStride
        self.previousCell = previousCell
        self.cell = cell
        self.saved = saved
        self.output = output
        self.outputStride = outputStride
        self.update = update
    }

    /// The same rows seen as Float (call only when S is Float): what the C rows take.
    public var float: CellForwardRows<Float> {
        precondition(S.self == Float.self)
        return unsafeBitCast(self, to: CellForwardRows<Float>.self)
    }
}

/// The rows of one step for a cell's backward pass (pointers as in `CellForwardRows`).
///
/// In: the activated gates and saved row of the forward pass, the gradient of the step's output
/// `outputGradient` and the running gradient of the state leaving the step `hiddenGradient`
/// (and `cellGradient`). Out: the gradients of the pre-activations, `inputSideGradient` and,
/// for a cell that keeps the recurrent side apart, `recurrentSideGradient` (else the same
/// memory); `hiddenGradient` becomes the direct part of the gradient of the state entering the
/// step (0 when the state enters only through the recurrent product, which the kernel adds),
/// `cellGradient` the gradient of the cell state entering it.
public struct CellBackwardRows<S: TensorScalar> {
    public var rows: Range<Int>
    public var hiddenSize: Int
    /// [B, G H]: the activated gates of the forward pass (may be `inputSideGradient`'s memory:
    /// each row reads its gates before it writes their gradients).
    public var gates: UnsafePointer<S>
    public var saved: UnsafePointer<S>?
    public var previousHidden: UnsafePointer<S>
    public var previousHiddenStride: Int
    public var previousCell: UnsafePointer<S>?
    /// [B, H] rows `outputGradientStride` apart.
    public var outputGradient: UnsafePointer<S>
    public var outputGradientStride: Int
    /// [B, H] each.
    public var hiddenGradient: UnsafeMutablePointer<S>
    public var cellGradient: UnsafeMutablePointer<S>
    /// [B, G H] each.
    public var inputSideGradient: UnsafeMutablePointer<S>
    public var recurrentSideGradient: UnsafeMutablePointer<S>
    public var update: UnsafePointer<S>?

    public init(rows: Range<Int>, hiddenSize: Int, gates: UnsafePointer<S>, saved: UnsafePointer<S>?, previousHidden: UnsafePointer<S>,
                previousHiddenStride: Int, previousCell: UnsafePointer<S>?, outputGradient: UnsafePointer<S>, outputGradientStride: Int,
                hiddenGradient: UnsafeMutablePointer<S>, cellGradient: UnsafeMutablePointer<S>, inputSideGradient: UnsafeMutablePointer<S>,
                recurrentSideGradient: UnsafeMutablePointer<S>, update: UnsafePointer<S>?) {
        self.rows = rows
        self.hiddenSize = hiddenSize
        self.gates = gates
        self.saved = saved
        self.previousHidden = previousHidden
        self.previousHiddenStride = previousHiddenStride
        self.previousCell = previousCell
        self.outputGradient = outputGradient
        self.outputGradientStride = outputGradientStride
        self.hiddenGradient = hiddenGradient
        self.cellGradient = cellGradient
        self.inputSideGradient = inputSideGradient
        self.recurrentSideGradient = recurrentSideGradient
        self.update = update
    }

    /// The same rows seen as Float (call only when S is Float).
    public var float: CellBackwardRows<Float> {
        precondition(S.self == Float.self)
        return unsafeBitCast(self, to: CellBackwardRows<Float>.self)
    }
}

/// The built-in cells by name, as model files and configurations store them.
public enum RecurrentCell: String, Sendable, Codable, CaseIterable {
    case rnn, gru, lstm

    /// The cell's type.
    public var rows: any RecurrentCellRows.Type {
        switch self {
        case .rnn: RNNCell.self
        case .gru: GRUCell.self
        case .lstm: LSTMCell.self
        }
    }

    public var gates: Int { rows.gates }
    public var hasCellState: Bool { rows.hasCellState }
}
