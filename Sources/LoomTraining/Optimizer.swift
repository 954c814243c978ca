/// Updates parameters from their gradients; SGD, Adam and RMSProp conform.
///
/// An optimizer keeps per-parameter state (moments) keyed by the parameter's identity, and
/// honours each parameter's `learningRateMultiplier` (0 freezes it: no update, no state change).
public protocol Optimizer<Scalar>: AnyObject {
    associatedtype Scalar: TensorScalar
    /// The base learning rate; a schedule may set it before each step.
    var learningRate: Double { get set }
    /// The number of updates applied so far.
    var step: Int { get }
    /// Applies one update. `gradients[i]` must have the shape of `parameters[i]`.
    func update(_ parameters: [Parameter<Scalar>], gradients: [Tensor<Scalar>]) throws
    /// The state a checkpoint needs to resume exactly: the step count and every parameter's moments.
    func checkpoint(for parameters: [Parameter<Scalar>]) -> OptimizerCheckpoint<Scalar>
    /// Restores a checkpoint taken for the same parameters (in the same order).
    func restore(_ checkpoint: OptimizerCheckpoint<Scalar>, for parameters: [Parameter<Scalar>]) throws
}

/// An optimizer's resumable state: its step and, per parameter, its moment buffers (nil for a
/// parameter never updated, such as a frozen one).
public struct OptimizerCheckpoint<Scalar: TensorScalar>: Equatable {
    public var step: Int
    public var moments: [[[Scalar]]?]

    public init(step: Int, moments: [[[Scalar]]?]) {
        self.step = step
        self.moments = moments
    }
}

/// The moment buffers an optimizer keeps for one parameter: zeroed allocations of the
/// parameter's element count, owned here so the update loop gets stable pointers.
final class MomentBuffers<Scalar: TensorScalar> {
    let pointers: [UnsafeMutablePointer<Scalar>]
    let elements: Int

    init(count: Int, elements: Int) {
        self.elements = elements
        // One element at least, so that a pointer exists for an empty parameter.
        pointers = (0..<count).map { _ in
            let p = UnsafeMutablePointer<Scalar>.allocate(capacity: Swift.max(elements, 1))
            Memory.zero(p, count: Swift.max(elements, 1))
            return p
        }
    }

    deinit { for p in pointers { p.deallocate() } }

    var arrays: [[Scalar]] { pointers.map { Memory.array(copying: $0, count: elements) } }
}

/// Shared bookkeeping of the optimizers: shape checks, multipliers, state, the raw-buffer call.
final class OptimizerState<Scalar: TensorScalar> {
    private var moments: [ObjectIdentifier: MomentBuffers<Scalar>] = [:]
    let buffersPerParameter: Int

    init(buffersPerParameter: Int) { self.buffersPerParameter = buffersPerParameter }

    /// Runs `makeUpdate(multiplier)` on every parameter whose multiplier is not 0.
    @_specialize(where Scalar == Float) // Float pre-specialized: see Recurrent.run
    func apply(
        _ parameters: [Parameter<Scalar>], _ gradients: [Tensor<Scalar>], optimizer: String,
        _ makeUpdate: (Double) -> OptimizerUpdate<Scalar>
    ) throws {
        guard parameters.count == gradients.count else {
            throw TensorError.invalidArgument(op: optimizer, message: "\(parameters.count) parameters but \(gradients.count) gradients")
        }
        for (parameter, gradient) in zip(parameters, gradients) {
            guard parameter.shape == gradient.shape else {
                throw TensorError.incompatibleShapes(op: "\(optimizer) update of '\(parameter.name)'", parameter.shape, gradient.shape)
            }
        }
        for (parameter, gradient) in zip(parameters, gradients) where parameter.learningRateMultiplier != 0 {
            let id = ObjectIdentifier(parameter)
            let state = moments[id] ?? MomentBuffers(count: buffersPerParameter, elements: parameter.data.count)
            moments[id] = state
            let update = makeUpdate(parameter.learningRateMultiplier)
            let n = parameter.data.count
            gradient.scalars.withUnsafeBufferPointer { g in
                parameter.data.withUnsafeMutableScalars { p in
                    guard let pp = p.baseAddress, let gp = g.baseAddress else { return }
                    Scalar.optimizerStep(update, parameter: pp, gradient: gp, state: state.pointers, count: n)
                }
            }
        }
    }

    /// The moment buffers of one parameter (copies), for checkpoints.
    func buffers(of parameter: Parameter<Scalar>) -> [[Scalar]]? { moments[ObjectIdentifier(parameter)]?.arrays }

    func checkpoint(step: Int, for parameters: [Parameter<Scalar>]) -> OptimizerCheckpoint<Scalar> {
        OptimizerCheckpoint(step: step, moments: parameters.map { buffers(of: $0) })
    }

    /// Replaces every parameter's buffers by the checkpoint's; returns its step.
    func restore(_ c: OptimizerCheckpoint<Scalar>, for parameters: [Parameter<Scalar>], optimizer: String) throws -> Int {
        guard c.moments.count == parameters.count else {
            throw TensorError.invalidArgument(op: "\(optimizer) restore", message: "checkpoint has \(c.moments.count) parameters, the model \(parameters.count)")
        }
        for (parameter, saved) in zip(parameters, c.moments) {
            let id = ObjectIdentifier(parameter)
            guard let saved else { moments[id] = nil; continue }
            guard saved.count == buffersPerParameter, saved.allSatisfy({ $0.count == parameter.data.count }) else {
                throw TensorError.invalidArgument(op: "\(optimizer) restore", message: "moments of '\(parameter.name)' do not match its shape \(parameter.shape)")
            }
            let buffers = MomentBuffers<Scalar>(count: buffersPerParameter, elements: parameter.data.count)
            for (p, values) in zip(buffers.pointers, saved) { values.withUnsafeBufferPointer { if let b = $0.baseAddress { Memory.copy(b, to: p, count: values.count) } } }
            moments[id] = buffers
        }
        return c.step
    }
}

/// Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.
public final class SGD<Scalar: TensorScalar>: Optimizer {
    public var learningRate: Double
    public var momentum: Double
    public var weightDecay: Double
    public var nesterov: Bool
    public internal(set) var step = 0
    let state = OptimizerState<Scalar>(buffersPerParameter: 1)

    public init(learningRate: Double = 0.01, momentum: Double = 0, weightDecay: Double = 0, nesterov: Bool = false) {
        self.learningRate = learningRate
        self.momentum = momentum
        self.weightDecay = weightDecay
        self.nesterov = nesterov
    }

    public func update(_ parameters: [Parameter<Scalar>], gradients: [Tensor<Scalar>]) throws {
        try state.apply(parameters, gradients, optimizer: "SGD") { multiplier in
            .sgd(learningRate: learningRate * multiplier, momentum: momentum, weightDecay: weightDecay, nesterov: nesterov)
        }
        step += 1
    }

    public func checkpoint(for parameters: [Parameter<Scalar>]) -> OptimizerCheckpoint<Scalar> { state.checkpoint(step: step, for: parameters) }
    public func restore(_ c: OptimizerCheckpoint<Scalar>, for parameters: [Parameter<Scalar>]) throws {
        step = try state.restore(c, for: parameters, optimizer: "\(Self.self)")
    }
}

/// Adam with bias correction (defaults as PyTorch: lr 1e-3, betas 0.9 / 0.999, eps 1e-8);
/// `decoupledWeightDecay` gives AdamW.
public final class Adam<Scalar: TensorScalar>: Optimizer {
    public var learningRate: Double
    public var beta1: Double, beta2: Double, epsilon: Double
    public var weightDecay: Double
    public var decoupledWeightDecay: Bool
    public internal(set) var step = 0
    let state = OptimizerState<Scalar>(buffersPerParameter: 2)

    public init(learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-8,
                weightDecay: Double = 0, decoupledWeightDecay: Bool = false) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
    }

    public func update(_ parameters: [Parameter<Scalar>], gradients: [Tensor<Scalar>]) throws {
        let t = step + 1
        try state.apply(parameters, gradients, optimizer: "Adam") { multiplier in
            .adam(learningRate: learningRate * multiplier, beta1: beta1, beta2: beta2, epsilon: epsilon, step: t,
                  weightDecay: weightDecay, decoupled: decoupledWeightDecay)
        }
        step = t
    }

    public func checkpoint(for parameters: [Parameter<Scalar>]) -> OptimizerCheckpoint<Scalar> { state.checkpoint(step: step, for: parameters) }
    public func restore(_ c: OptimizerCheckpoint<Scalar>, for parameters: [Parameter<Scalar>]) throws {
        step = try state.restore(c, for: parameters, optimizer: "\(Self.self)")
    }
}

/// RMSProp (defaults as PyTorch: lr 1e-2, alpha 0.99, eps 1e-8), with optional momentum.
public final class RMSProp<Scalar: TensorScalar>: Optimizer {
    public var learningRate: Double
    public var alpha: Double, epsilon: Double, momentum: Double, weightDecay: Double
    public internal(set) var step = 0
    let state = OptimizerState<Scalar>(buffersPerParameter: 2)

    public init(learningRate: Double = 1e-2, alpha: Double = 0.99, epsilon: Double = 1e-8, momentum: Double = 0, weightDecay: Double = 0) {
        self.learningRate = learningRate
        self.alpha = alpha
        self.epsilon = epsilon
        self.momentum = momentum
        self.weightDecay = weightDecay
    }

    public func update(_ parameters: [Parameter<Scalar>], gradients: [Tensor<Scalar>]) throws {
        try state.apply(parameters, gradients, optimizer: "RMSProp") { multiplier in
            .rmsprop(learningRate: learningRate * multiplier, alpha: alpha, epsilon: epsilon, momentum: momentum, weightDecay: weightDecay)
        }
        step += 1
    }

    public func checkpoint(for parameters: [Parameter<Scalar>]) -> OptimizerCheckpoint<Scalar> { state.checkpoint(step: step, for: parameters) }
    public func restore(_ c: OptimizerCheckpoint<Scalar>, for parameters: [Parameter<Scalar>]) throws {
        step = try state.restore(c, for: parameters, optimizer: "\(Self.self)")
    }
}
