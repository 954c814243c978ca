import Foundation
import LoomTensor

/// Data-parallel training: what the Trainer does with a `Communicator` of more than one rank
/// (the batch loop in `fit` takes this rank's share of each batch; see `TrainerOptions.communicator`).
extension Trainer {
    /// The communicator when training runs on more than one rank.
    var ranks: (any Communicator)? { options.communicator.flatMap { $0.size > 1 ? $0 : nil } }

    /// Distributed start: the ranks must run the same settings on the same data (their run
    /// identities are compared fact by fact; a difference ends the run naming the facts), then
    /// every rank takes rank 0's parameters.
    func joinRanks(_ ranks: any Communicator) throws {
        let facts = (runIdentity ?? [:]).sorted { $0.key < $1.key }.map { (name: $0.key, value: $0.value) }
        let names = facts.map(\.name).joined(separator: ",")
        let differing = try ranks.differingFacts([(name: "the facts compared", value: names)] + facts)
        guard differing.isEmpty else {
            throw TrainingError.invalidOptions("the ranks do not run the same training: \(differing.joined(separator: ", ")) differ between ranks "
                                               + "(every rank must be given the same configuration and data)")
        }
        // Rank 0's values as a sum to which the other ranks add zeros (exact in any precision).
        for p in parameters {
            var values = ranks.isPrimary ? p.data.scalars : [Scalar](repeating: 0, count: p.data.count)
            try Self.allReduceSum(&values, ranks)
            p.data = try Tensor(shape: p.shape, scalars: values)
        }
    }

    /// Sums scalars of the trainer's precision over the ranks (Float or Double, reinterpreted
    /// in place: a cast of the array would convert element by element).
    static func allReduceSum(_ values: inout [Scalar], _ ranks: any Communicator) throws {
        if Scalar.self == Float.self {
            var f = unsafeBitCast(values, to: [Float].self)
            values = []
            try ranks.allReduceSum(&f)
            values = unsafeBitCast(f, to: [Scalar].self)
        } else if Scalar.self == Double.self {
            var d = unsafeBitCast(values, to: [Double].self)
            values = []
            try ranks.allReduceSum(&d)
            values = unsafeBitCast(d, to: [Scalar].self)
        } else {
            var d = values.map { Double($0) }
            try ranks.allReduceSum(&d)
            values = d.map { Scalar($0) }
        }
    }

    /// The whole batch's loss and gradients from every rank's share: sums of weight x loss and
    /// weight x gradient over the ranks, over the summed weight. A non-finite loss on any rank
    /// makes the step's loss NaN on every rank (the update is skipped everywhere).
    func combine(loss: Double, gradients: [Tensor<Scalar>]?, weight: Double, _ ranks: any Communicator) throws -> (Double, [Tensor<Scalar>]?) {
        let start = Date()
        defer { allReduceSeconds += Date().timeIntervalSince(start) }
        let finite = gradients != nil || weight == 0
        var scalars = [finite ? weight * loss : 0, weight, finite ? 0 : 1]
        try ranks.allReduceSum(&scalars)
        guard scalars[2] == 0, scalars[1] > 0 else { return (.nan, nil) }
        let counts = parameters.map(\.data.count)
        let combined: [Tensor<Scalar>]
        if Scalar.self == Float.self {
            // Float, the training precision: concrete loops over one buffer (the generic ones
            // cost far more than the allreduce itself).
            let mine = parameters.indices.map { i in gradients.map { unsafeBitCast($0[i].scalars, to: [Float].self) } }
            var flat = GradientBuffer.pack(mine, counts: counts, weight: Float(weight))
            try ranks.allReduceSum(&flat)
            combined = zip(parameters, GradientBuffer.unpack(flat, counts: counts, total: Float(scalars[1]))).map { p, g in
                Tensor(unchecked: p.shape, scalars: unsafeBitCast(g, to: [Scalar].self))
            }
        } else {
            let (w, total) = (Scalar(weight), Scalar(scalars[1]))
            var flat = [Scalar]()
            for (i, p) in parameters.enumerated() {
                flat += gradients.map { $0[i].scalars.map { $0 * w } } ?? [Scalar](repeating: 0, count: p.data.count)
            }
            try Self.allReduceSum(&flat, ranks)
            var offset = 0
            combined = parameters.map { p in
                defer { offset += p.data.count }
                return Tensor(unchecked: p.shape, scalars: flat[offset..<(offset + p.data.count)].map { $0 / total })
            }
        }
        return (scalars[0] / scalars[1], combined)
    }

    /// `shouldStop`, answered jointly by the ranks in distributed training (a signal reaches
    /// them at different steps: all stop at the same step, when any asks).
    func stopRequested(_ ranks: (any Communicator)?) throws -> Bool {
        let mine = shouldStop?() == true
        guard let ranks else { return mine }
        var flag = [mine ? 1.0 : 0]
        try ranks.allReduceMaximum(&flag)
        return flag[0] > 0
    }

    /// The dropout seed of one rank at one step: a function of the run's seed, the step and the
    /// rank alone, so that a resumed distributed run draws the masks an uninterrupted one does.
    static func stepSeed(_ seed: UInt64, step: Int, rank: Int) -> UInt64 {
        var h = FNV1a()
        h.add(seed)
        h.add(UInt64(step))
        h.add(UInt64(rank))
        return h.value
    }
}

/// The buffer of one distributed step's gradient sum: every parameter's gradient times this
/// rank's weight, laid end to end (zeros for a rank with nothing to contribute), and back.
enum GradientBuffer {
    static func pack(_ gradients: [[Float]?], counts: [Int], weight: Float) -> [Float] {
        var flat = [Float](repeating: 0, count: counts.reduce(0, +))
        flat.withUnsafeMutableBufferPointer { out in
            var offset = 0
            for (gradient, count) in zip(gradients, counts) {
                if let gradient {
                    gradient.withUnsafeBufferPointer { g in for i in 0..<count { out[offset + i] = g[i] * weight } }
                }
                offset += count
            }
        }
        return flat
    }

    /// The summed buffer cut back into gradients, each divided by the ranks' total weight.
    static func unpack(_ flat: [Float], counts: [Int], total: Float) -> [[Float]] {
        var offset = 0
        return flat.withUnsafeBufferPointer { sum in
            counts.map { count in
                defer { offset += count }
                return [Float](unsafeUninitializedCapacity: count) { out, initialized in
                    for i in 0..<count { out[i] = sum[offset + i] / total }
                    initialized = count
                }
            }
        }
    }
}
