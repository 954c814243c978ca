/// A trainable tensor with identity: layers hold it, optimizers update it in place.
///
/// `data` is the stored value; `value` is the same tensor as a leaf of the tape (when recording),
/// which is what a layer's forward code reads so that gradients can flow to it.
public final class Parameter<Scalar: TensorScalar>: @unchecked Sendable {
    /// The stored value, off the tape.
    public var data: Tensor<Scalar>
    /// A name for messages, checkpoints and model files (PyTorch's state_dict key when imported).
    public var name: String
    /// Scales the learning rate for this parameter; 0 freezes it (Wolfram's LearningRateMultipliers).
    public var learningRateMultiplier: Double = 1
    /// The int8 form of a weight matrix [O, I] that products read off the tape (`Linear`,
    /// recurrent layers' inference): set by an int8 model file (`loom quantize`), whose `data`
    /// then holds the dequantized weights. Such a parameter is for inference: training refuses it.
    public var quantized: QuantizedMatrix?
    let leaf = TapeNode<Scalar>()

    public init(_ data: Tensor<Scalar>, name: String = "") {
        self.data = data.detached()
        self.name = name
    }

    /// The value as a leaf of the tape when gradient recording is on, else the plain value.
    public var value: Tensor<Scalar> {
        guard GradientRecording.isEnabled else { return data }
        return Tensor(unchecked: data.shape, scalars: data.scalars, node: leaf)
    }

    /// The shape of the stored value.
    public var shape: [Int] { data.shape }
}

extension Tensor {
    /// Gradients of this scalar with respect to each parameter's value; zeros for a parameter it
    /// does not depend on.
    @_specialize(where Scalar == Float) // Float pre-specialized: see Recurrent.run
    public func gradients(for parameters: [Parameter<Scalar>]) throws -> [Tensor] {
        let found = try backpropagate(to: parameters.map { $0.leaf }, seed: nil)
        return zip(found, parameters).map { $0 ?? Tensor.zeros(unchecked: $1.data.shape) }
    }
}
