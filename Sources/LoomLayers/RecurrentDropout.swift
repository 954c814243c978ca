/// The dropout methods of the Wolfram framework's recurrent layers (and AWD-LSTM's weight drop).
///
/// - `weights` (VariationalWeights, DropConnect): one mask per call on the input and recurrent
///   weight matrices, biases excluded. A plain probability means this.
/// - `input` (VariationalInput): one mask per sequence over the input features, reused every step.
/// - `state` (VariationalState): one mask per sequence over the state entering the recurrent
///   product, reused every step (Gal and Ghahramani).
/// - `stateUpdate` (StateUpdate): a fresh mask every step on the candidate update (LSTM g, GRU n,
///   RNN new state; Semeniuta et al.).
///
/// Masks are inverted (kept values scaled by 1/(1-p)) and active only in training, unless
/// `alwaysActive`.
public struct RecurrentDropout: Sendable, Equatable, Codable {
    public var weights: Double
    public var input: Double
    public var state: Double
    public var stateUpdate: Double
    public var alwaysActive: Bool

    public init(weights: Double = 0, input: Double = 0, state: Double = 0, stateUpdate: Double = 0, alwaysActive: Bool = false) {
        self.weights = weights
        self.input = input
        self.state = state
        self.stateUpdate = stateUpdate
        self.alwaysActive = alwaysActive
    }

    /// VariationalWeights with probability p.
    public init(_ probability: Double) { self.init(weights: probability) }

    public static let none = RecurrentDropout()

    var isActive: Bool { alwaysActive || LearningPhase.current == .training }

    func validate() throws {
        for (name, p) in [("weights", weights), ("input", input), ("state", state), ("stateUpdate", stateUpdate)]
        where !(p >= 0 && p < 1) {
            throw TensorError.invalidArgument(op: "RecurrentDropout", message: "\(name) probability must be in [0, 1), got \(p)")
        }
    }
}
