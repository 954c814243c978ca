@_exported import LoomTensor

/// A differentiable function of a tensor with an explicit list of trainable parameters.
///
/// Layers are small structs called like functions (`try layer(x)`); their parameters are
/// `Parameter` objects, so copies of a layer share weights and an optimizer updates them in place.
public protocol Layer<Scalar> {
    associatedtype Scalar: TensorScalar
    /// Applies the layer. Throws on a shape the layer cannot take, naming it.
    func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar>
    /// Every trainable parameter, in a fixed order (the order of checkpoints and model files).
    var parameters: [Parameter<Scalar>] { get }
}

/// Whether layers behave as in training (dropout active) or in inference.
public enum LearningPhase: Sendable {
    case training, inference

    /// The phase of the current task; `inference` unless inside `withLearningPhase(.training)`.
    @TaskLocal public static var current: LearningPhase = .inference
}

/// Runs `body` with layers in `phase`.
public func withLearningPhase<R>(_ phase: LearningPhase, _ body: () throws -> R) rethrows -> R {
    try LearningPhase.$current.withValue(phase) { try body() }
}

/// Layers applied one after another: `Chain(a, b, c)(x) == c(b(a(x)))` (Flux's Chain, Keras's
/// Sequential).
///
/// ```swift
/// let mlp = Chain<Float>(Linear(inputSize: 2, outputSize: 16), Activation(.tanh), Linear(inputSize: 16, outputSize: 3))
/// let logits = try mlp(x)   // [B, 2] -> [B, 3]
/// ```
public struct Chain<Scalar: TensorScalar>: Layer {
    public var layers: [any Layer<Scalar>]

    public init(_ layers: any Layer<Scalar>...) { self.layers = layers }
    public init(layers: [any Layer<Scalar>]) { self.layers = layers }

    public func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar> {
        try layers.reduce(input) { x, layer in try layer(x) }
    }

    public var parameters: [Parameter<Scalar>] { layers.flatMap { $0.parameters } }
}

/// An elementwise nonlinearity as a layer.
public struct Activation<Scalar: TensorScalar>: Layer {
    public enum Function: String, Sendable, Codable { case tanh, sigmoid, relu, identity }
    public var function: Function

    public init(_ function: Function) { self.function = function }

    public func callAsFunction(_ input: Tensor<Scalar>) throws -> Tensor<Scalar> {
        switch function {
        case .tanh: return input.tanh()
        case .sigmoid: return input.sigmoid()
        case .relu: return input.relu()
        case .identity: return input
        }
    }

    public var parameters: [Parameter<Scalar>] { [] }
}
