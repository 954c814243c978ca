/// One record of the tape: how a tensor was computed from its inputs, and how to send a
/// gradient back to them.
///
/// A leaf (a parameter, or a tensor made with `requiringGradient()`) has no inputs and no
/// pullback. `gradients(wrt:)` visits the records in reverse topological order and releases each
/// one after use, as PyTorch does without `retain_graph`.
public final class TapeNode<Scalar: TensorScalar> {
    /// The records of the inputs; `nil` for an input that is not being differentiated.
    var inputs: [TapeNode?]
    /// Maps the gradient of the output to the gradients of the inputs, in the order of `inputs`.
    var pullback: ((Tensor<Scalar>) -> [Tensor<Scalar>?])?
    /// Set once a backward pass has consumed this record.
    var released = false

    init(inputs: [TapeNode?] = [], pullback: ((Tensor<Scalar>) -> [Tensor<Scalar>?])? = nil) {
        self.inputs = inputs
        self.pullback = pullback
    }
}

/// Whether ops record themselves on the tape; off inside `withoutGradients`.
public enum GradientRecording {
    @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording anything on the tape: inference, metrics, optimizer updates.
public func withoutGradients<R>(_ body: () throws -> R) rethrows -> R {
    try GradientRecording.$isEnabled.withValue(false) { try body() }
}

extension Tensor {
    /// Returns `self` carrying a tape record when gradient recording is on and any input is
    /// recorded; otherwise `self` unchanged. Every differentiable op ends with this call, its
    /// pullback written right beside the forward code; fused ops outside this module (a loss,
    /// a recurrent kernel) enter the tape the same way, as one record.
    ///
    /// The pullback receives the gradient of the output (shape of `self`) and returns one
    /// gradient per input, of that input's shape, or `nil` for an input that gets none.
    @_specialize(where Scalar == Float) // Float pre-specialized: see Recurrent.run
    public func recorded(from inputs: [Tensor], pullback: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard GradientRecording.isEnabled, inputs.contains(where: { $0.node != nil }) else { return self }
        var result = self
        // A closure rather than the key path \.node: in generic code a key path is built at run
        // time on every call (swift_getKeyPath, with a demangling lookup), about 1% of a small
        // LSTM training step over all of them; the hot generic paths use closures throughout.
        result.node = TapeNode(inputs: inputs.map { $0.node }, pullback: pullback)
        return result
    }

    /// Gradients of this tensor with respect to each of `inputs`.
    ///
    /// `self` must be a scalar unless `seed` (the gradient of some downstream value with respect
    /// to `self`, same shape) is given. Each input must be recorded: a leaf made with
    /// `requiringGradient()` or a parameter's `value`. An input that `self` does not depend on
    /// gets zeros. The tape records between them are released afterwards.
    @_specialize(where Scalar == Float) // Float pre-specialized: see Recurrent.run
    public func gradients(wrt inputs: [Tensor], seed: Tensor? = nil) throws -> [Tensor] {
        let targets = try inputs.enumerated().map { index, input -> TapeNode<Scalar> in
            guard let node = input.node else {
                throw TensorError.notRecorded(
                    "gradients: input \(index) (shape \(input.shape)) is not recorded on the tape; "
                        + "make it with requiringGradient() or use a parameter's value")
            }
            return node
        }
        let found = try backpropagate(to: targets, seed: seed)
        return zip(found, inputs).map { $0 ?? Tensor.zeros(unchecked: $1.shape) }
    }

    /// The reverse sweep: returns, for each target, the accumulated gradient or `nil` when the
    /// target is not reached from `self`.
    @_specialize(where Scalar == Float) // Float pre-specialized: see Recurrent.run
    func backpropagate(to targets: [TapeNode<Scalar>], seed: Tensor?) throws -> [Tensor?] {
        guard let root = node else {
            throw TensorError.notRecorded(
                "gradients: this tensor (shape \(shape)) was computed without recording; "
                    + "call it outside withoutGradients and from recorded inputs")
        }
        let rootGradient: Tensor
        if let seed {
            guard seed.shape == shape else {
                throw TensorError.incompatibleShapes(op: "gradients seed", seed.shape, shape)
            }
            rootGradient = seed.detached()
        } else {
            guard count == 1 else {
                throw TensorError.rank(op: "gradients", expected: "a one-element tensor or a seed", shape: shape)
            }
            rootGradient = Tensor(unchecked: shape, scalars: [1])
        }
        if root.released {
            throw TensorError.notRecorded("gradients: the tape behind this tensor was already used by a backward pass")
        }

        let order = TapeNode.topologicalOrder(from: root)
        let wanted = Set(targets.map { ObjectIdentifier($0) })
        var accumulated: [ObjectIdentifier: Tensor] = [ObjectIdentifier(root): rootGradient]
        withoutGradients {
            for node in order {
                let id = ObjectIdentifier(node)
                guard let gradient = accumulated[id] else { continue }
                if let pullback = node.pullback {
                    let inputGradients = pullback(gradient)
                    for (input, inputGradient) in zip(node.inputs, inputGradients) {
                        guard let input, let inputGradient else { continue }
                        let inputID = ObjectIdentifier(input)
                        // Taken out of the table first, so that its elements are uniquely
                        // referenced and the sum is written in place (no copy of the gradient).
                        if var existing = accumulated.removeValue(forKey: inputID) {
                            existing.accumulateUnchecked(inputGradient)
                            accumulated[inputID] = existing
                        } else {
                            accumulated[inputID] = inputGradient
                        }
                    }
                    node.pullback = nil
                    node.inputs = []
                    node.released = true
                }
                if !wanted.contains(id) { accumulated[id] = nil }
            }
        }
        return targets.map { accumulated[ObjectIdentifier($0)] }
    }

    /// Adds `other` (same shape) into this tensor, off the tape (gradient accumulation); in
    /// place when the elements are not shared with another tensor.
    package mutating func accumulateUnchecked(_ other: Tensor) {
        precondition(shape == other.shape, "gradient accumulation: shapes \(shape) and \(other.shape) differ")
        node = nil
        scalars.withUnsafeMutableBufferPointer { out in
            other.scalars.withUnsafeBufferPointer { a in
                guard let o = out.baseAddress, let p = a.baseAddress else { return }
                Scalar.accumulate(p, into: o, count: a.count)
            }
        }
    }
}

extension TapeNode {
    /// The records reachable from `root`, every record before its inputs. Iterative, because an
    /// unrolled recurrence can be a chain hundreds of thousands of records deep.
    @_specialize(where Scalar == Float) // Float pre-specialized: see Recurrent.run
    static func topologicalOrder(from root: TapeNode) -> [TapeNode] {
        var postOrder: [TapeNode] = []
        var visited: Set<ObjectIdentifier> = [ObjectIdentifier(root)]
        var stack: [(node: TapeNode, nextInput: Int)] = [(root, 0)]
        while let top = stack.last {
            if top.nextInput < top.node.inputs.count {
                stack[stack.count - 1].nextInput += 1
                if let input = top.node.inputs[top.nextInput],
                    visited.insert(ObjectIdentifier(input)).inserted
                {
                    stack.append((input, 0))
                }
            } else {
                postOrder.append(top.node)
                stack.removeLast()
            }
        }
        return postOrder.reversed()
    }
}
