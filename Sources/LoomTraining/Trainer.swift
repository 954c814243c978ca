import Foundation
import LoomTensor

/// Errors that stop training.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    case nonFinite(String)
    case checkpoint(String)
    case io(String)
    case invalidOptions(String)

    public var description: String {
        switch self {
        case let .nonFinite(m): return "training stopped: \(m)"
        case let .checkpoint(m): return "checkpoint: \(m)"
        case let .io(m): return m
        case let .invalidOptions(m): return "invalid training options: \(m)"
        }
    }
}

/// average = decay average + (1 - decay) weights, in place, through the element type's own
/// loop (`TensorScalar.optimizerStep`: a generic loop would make a protocol call per element).
func blend<S: TensorScalar>(_ average: inout Tensor<S>, toward weights: Tensor<S>, decay: Double) {
    weights.withBase { p in
        average.withUnsafeMutableScalars { a in
            guard let base = a.baseAddress else { return }
            S.optimizerStep(.average(decay: decay), parameter: base, gradient: p, state: [], count: a.count)
        }
    }
}

/// How a `Trainer` runs.
public struct TrainerOptions {
    public var batchSize = 32
    /// Bucketing by length, plain shuffling, or in order. Wolfram's NetTrain uses 8 buckets; the
    /// default here is 16: on lengths spread evenly over 1...100 with batches of 32, 8 buckets
    /// still pad 10.3% of the positions, 16 pad about 5.5% (measured in TrainerTests).
    public var order: BatchOrder = .bucketed(buckets: 16)
    /// Batches of at most this many padded positions instead of a fixed count.
    public var tokenBudget: Int?
    public var gradientClipNorm: Double?
    /// Sets the optimizer's learning rate before every step.
    public var schedule: (any LearningRateSchedule)?
    /// Steps in a row whose loss or gradient norm is NaN/Inf (their updates are skipped) before
    /// training stops with an error.
    public var maximumNonFiniteSteps = 5
    public var checkpointDirectory: URL?
    /// Also write a checkpoint every this many steps (always at the end of each epoch).
    public var checkpointEverySteps: Int?
    public var keepCheckpoints = 3
    /// Keep an exponential moving average of the weights (Polyak averaging, as Marian's
    /// exponential smoothing and Keras's `use_ema`) with this decay per step, e.g. 0.999 (about
    /// the last 1,000 steps); validation, the best weights and the weights `fit` leaves are the
    /// average's. The decay is min(decay, (1 + t) / (10 + t)) at update t, so early weights
    /// fade fast. Nil: the weights as the last step left them.
    public var averageDecay: Double?
    /// A JSON-lines log of steps and epochs, and SVG plots of the curves at each epoch's end.
    public var runDirectory: URL?
    public var logEverySteps = 1
    /// Stop when the validation loss has not improved for this many epochs.
    public var earlyStoppingPatience: Int?
    /// At the end of `fit`, put back the weights of the epoch with the best validation score.
    public var restoreBestWeights = true
    /// The validation score that picks the best epoch and drives early stopping, higher is
    /// better (default: minus the validation loss); nil for an epoch means "no score".
    public var selectionScore: (@Sendable (EpochRecord) -> Double?)?
    public var seed: UInt64 = 0
    /// Progress on standard output: a redrawn line on a terminal, plain lines otherwise.
    public var showProgress = true
    public var progressEvery = 50
    /// Collate the next batch on another thread while the current step runs.
    public var prefetch = true
    /// Facts that make a run this run beyond what the Trainer sees (a hash of the model's
    /// configuration, the corpus's name): stored in every checkpoint and compared on resume.
    public var runIdentity: [String: String] = [:]
    /// Resume even when a checkpoint's run identity differs from this run's (batch size, seed,
    /// data, `runIdentity`): the differences are reported as a warning instead of an error.
    public var resumeAnyway = false
    /// When `shouldStop` ends `fit` mid-epoch, write a checkpoint at that point first (an
    /// interrupted run then resumes from its last step, not its last scheduled checkpoint).
    public var checkpointOnStop = false
    /// Data-parallel training over this communicator's ranks (nil or one rank: a single
    /// process). Every rank takes its share of each batch, gradients are summed over the ranks
    /// and every rank applies the same update; rank 0 writes the checkpoints, log and plots.
    public var communicator: (any Communicator)?

    public init() {}

    /// Every option against its range; the message names the option.
    public func validate() throws {
        func fail(_ m: String) -> TrainingError { .invalidOptions(m) }
        guard batchSize >= 1 else { throw fail("batch size must be at least 1, got \(batchSize)") }
        if let every = checkpointEverySteps, every < 1 { throw fail("checkpoint every must be at least 1 step, got \(every)") }
        if let budget = tokenBudget, budget < 1 { throw fail("token budget must be at least 1, got \(budget)") }
        if let clip = gradientClipNorm, !(clip > 0 && clip.isFinite) { throw fail("gradient clip norm must be a positive number, got \(clip)") }
        if let patience = earlyStoppingPatience, patience < 1 { throw fail("early-stopping patience must be at least 1 epoch, got \(patience)") }
        if let decay = averageDecay, !(decay > 0 && decay < 1) { throw fail("weight average decay must be in (0, 1), got \(decay)") }
        guard keepCheckpoints >= 1, logEverySteps >= 1, progressEvery >= 1, maximumNonFiniteSteps >= 1 else {
            throw fail("keep checkpoints, log every, progress every and maximum non-finite steps must be at least 1")
        }
    }
}

/// One epoch's figures.
public struct EpochRecord: Sendable {
    public var epoch: Int
    public var trainLoss: Double
    public var validationLoss: Double?
    public var validationMetrics: [String: Double]
    public var paddedFraction: Double
    public var examplesPerSecond: Double
    public var skippedSteps: Int
}

/// Training for any model: built from its parameters, an optimizer, a `collate` from examples to
/// a batch, a `loss` of a batch, and optional validation `metrics` (means over a batch).
///
/// ```swift
/// let trainer = Trainer(parameters: model.parameters, optimizer: Adam<Float>(),
///                       length: { $0.count }, collate: makeBatch, loss: { try model.loss($0) })
/// let history = try trainer.fit(train: examples, validation: held, epochs: 20)
/// // or drive it: for batch in batches { let loss = try trainer.step(batch) }
/// ```
///
/// `fit` does bucketing, prefetching, NaN safety, validation, best weights, early stopping,
/// checkpoints (weights, optimizer moments, counters, RNG states, data position; written
/// atomically, last N kept) and resumes from them so that the loss sequence is the same as an
/// uninterrupted run's; a metrics log and plots go to `runDirectory`.
public final class Trainer<Scalar: TensorScalar, Example, Batch> {
    public let parameters: [Parameter<Scalar>]
    public let optimizer: any Optimizer<Scalar>
    public var options: TrainerOptions
    let length: (Example) -> Int
    let collate: ([Example]) throws -> Batch
    let lossFunction: (Batch) throws -> Tensor<Scalar>
    let metricsFunction: ((Batch) throws -> [String: Double])?
    /// The source layers draw dropout masks from; saved in checkpoints.
    public let randomSource: RandomSource

    public internal(set) var globalStep = 0
    public internal(set) var epoch = 0
    /// The loss of the last step (NaN if it was skipped).
    public internal(set) var currentLoss = Double.nan
    public internal(set) var skippedSteps = 0
    public internal(set) var history: [EpochRecord] = []
    var nonFiniteInARow = 0
    var generator: SeededGenerator
    /// Where to continue inside an epoch after a resume: the generator state the epoch's order
    /// was drawn from, and the next batch.
    var resumePosition: (generator: SeededGenerator, batch: Int)?
    /// The run identity of the checkpoint restored, checked against this run's at the start of `fit`.
    var restoredIdentity: [String: String]?
    var restoredFrom: URL?
    /// Whether `fit` may write checkpoints into a directory that already holds some (true after
    /// `resume()`, or once this trainer has written them itself).
    var ownsCheckpointDirectory = false
    /// The best validation score so far (see `TrainerOptions.selectionScore`).
    var bestScore = -Double.infinity
    var bestWeights: [Tensor<Scalar>]?
    var epochsWithoutImprovement = 0
    /// The moving average of the weights (`TrainerOptions.averageDecay`) and its update count.
    var averageWeights: [Tensor<Scalar>]?
    var averageUpdates = 0

    /// How much an example counts in a batch's mean loss (e.g. its target tokens, when the loss
    /// is a mean over tokens); default 1. Distributed training weights each rank's gradient by
    /// the sum over its share, so that the update equals one process's on the whole batch.
    public var exampleWeight: ((Example) -> Double)?
    /// Seconds spent summing gradients over the ranks (distributed training).
    public internal(set) var allReduceSeconds = 0.0

    public var onStep: ((_ step: Int, _ loss: Double) -> Void)?
    /// Checked after every step: `fit` returns (without an end-of-epoch checkpoint) once it is true.
    public var shouldStop: (() -> Bool)?
    public var onEpochStart: ((_ epoch: Int) -> Void)?
    public var onEpochEnd: ((EpochRecord) -> Void)?
    /// Checked after every epoch (after `onEpochEnd` and its checkpoint): `fit` returns once it is
    /// true for the epoch's record, e.g. when a target metric is reached; the progress line still
    /// counts against the planned `epochs`.
    public var stopAfterEpoch: ((EpochRecord) -> Bool)?

    public init(parameters: [Parameter<Scalar>], optimizer: any Optimizer<Scalar>, options: TrainerOptions = TrainerOptions(),
                randomSource: RandomSource = .shared, length: @escaping (Example) -> Int,
                collate: @escaping ([Example]) throws -> Batch, loss: @escaping (Batch) throws -> Tensor<Scalar>,
                metrics: ((Batch) throws -> [String: Double])? = nil) {
        self.parameters = parameters
        self.optimizer = optimizer
        self.options = options
        self.randomSource = randomSource
        self.length = length
        self.collate = collate
        lossFunction = loss
        metricsFunction = metrics
        generator = SeededGenerator(seed: options.seed)
    }

    // MARK: - One step

    /// One update on a batch, in training mode. A NaN/Inf loss or gradient norm skips the
    /// update (counted and reported); too many in a row throws `TrainingError.nonFinite`.
    /// Returns the loss.
    @discardableResult
    public func step(_ batch: Batch) throws -> Double { try step(batch, weight: 1) }

    /// One update; in distributed training `batch` is this rank's share (nil when it is empty)
    /// and `weight` its weight in the whole batch's mean.
    func step(_ batch: Batch?, weight: Double) throws -> Double {
        if let schedule = options.schedule { optimizer.learningRate = schedule.learningRate(atStep: globalStep) }
        if let ranks { randomSource.reseed(Self.stepSeed(options.seed, step: globalStep, rank: ranks.rank)) }
        var (loss, gradients) = try batch.map { batch in
            try withLearningPhase(.training) { () throws -> (Double, [Tensor<Scalar>]?) in
                let value = try lossFunction(batch)
                let l = Double(value.scalarValue)
                guard l.isFinite else { return (l, nil) }
                return (l, try value.gradients(for: parameters))
            }
        } ?? (0, nil)
        if let ranks { (loss, gradients) = try combine(loss: loss, gradients: gradients, weight: batch == nil ? 0 : weight, ranks) }
        globalStep += 1
        currentLoss = loss
        var problem: String?
        if var gradients {
            let norm = options.gradientClipNorm.map { GradientClipping.clipByGlobalNorm(&gradients, maxNorm: $0) }
                ?? GradientClipping.globalNorm(gradients)
            if norm.isFinite {
                try optimizer.update(parameters, gradients: gradients)
                updateAverage()
                nonFiniteInARow = 0
            } else {
                problem = "gradient norm is \(norm)"
            }
        } else {
            problem = "loss is \(loss)"
        }
        if let problem {
            skippedSteps += 1
            nonFiniteInARow += 1
            warn("step \(globalStep): \(problem); update skipped (\(nonFiniteInARow) in a row, \(skippedSteps) in all)")
            if nonFiniteInARow >= options.maximumNonFiniteSteps {
                throw TrainingError.nonFinite("\(nonFiniteInARow) steps in a row had a non-finite loss or gradient (last: \(problem) at step \(globalStep)); the last checkpoint is intact")
            }
        }
        onStep?(globalStep, loss)
        return loss
    }

    /// average = d average + (1 - d) weights, with d = min(decay, (1 + t) / (10 + t)).
    func updateAverage() {
        guard let decay = options.averageDecay else { return }
        averageUpdates += 1
        guard averageWeights != nil else {
            averageWeights = parameters.map(\.data)
            return
        }
        let t = Double(averageUpdates)
        let d = Swift.min(decay, (1 + t) / (10 + t))
        for i in parameters.indices { blend(&averageWeights![i], toward: parameters[i].data, decay: d) }
    }

    /// Runs `body` with the averaged weights in the parameters (the plain ones without an average).
    func withAverageWeights<R>(_ body: () throws -> R) rethrows -> R {
        guard let average = averageWeights else { return try body() }
        let own = parameters.map(\.data)
        for (p, w) in zip(parameters, average) { p.data = w }
        defer { for (p, w) in zip(parameters, own) { p.data = w } }
        return try body()
    }

    func warn(_ text: String) {
        FileHandle.standardError.write(Data("warning: \(text)\n".utf8))
    }

    // MARK: - Evaluation

    /// Mean loss and metrics over `examples` in batches, in inference mode, weighted by batch size.
    /// Distributed: each rank evaluates every K-th example and the sums are added over the
    /// ranks (all evaluate everything when there are fewer examples than ranks).
    public func evaluate(_ examples: [Example]) throws -> (loss: Double, metrics: [String: Double]) {
        let ranks = self.ranks.flatMap { examples.count >= $0.size ? $0 : nil }
        let mine = ranks.map { r in stride(from: r.rank, to: examples.count, by: r.size).map { examples[$0] } } ?? examples
        var g = SeededGenerator(seed: 0)
        let batches = BatchPlan.batches(lengths: mine.map(length), batchSize: options.batchSize, order: .sequential, using: &g)
        var lossSum = 0.0, sums: [String: Double] = [:], count = 0
        try withoutGradients {
            for indices in batches {
                let batch = try collate(indices.map { mine[$0] })
                lossSum += Double(try lossFunction(batch).scalarValue) * Double(indices.count)
                if let metricsFunction { for (k, v) in try metricsFunction(batch) { sums[k, default: 0] += v * Double(indices.count) } }
                count += indices.count
            }
        }
        if let ranks {
            let keys = sums.keys.sorted()
            guard try ranks.differingFacts([(name: "metric names", value: keys.joined(separator: ","))]).isEmpty else {
                throw TrainingError.invalidOptions("the ranks' validation metrics have different names")
            }
            var buffer = [lossSum, Double(count)] + keys.map { sums[$0] ?? 0 }
            try ranks.allReduceSum(&buffer)
            (lossSum, count) = (buffer[0], Int(buffer[1]))
            for (i, k) in keys.enumerated() { sums[k] = buffer[2 + i] }
        }
        let n = Double(Swift.max(count, 1))
        return (lossSum / n, sums.mapValues { $0 / n })
    }

    /// What makes this run this run, as far as a checkpoint can tell: the batching, the seed,
    /// the data (count and a hash of the example lengths) and the caller's `runIdentity`.
    /// Nil until `fit` has seen the data.
    var runIdentity: [String: String]?
}
