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

    public private(set) var globalStep = 0
    public private(set) var epoch = 0
    /// The loss of the last step (NaN if it was skipped).
    public private(set) var currentLoss = Double.nan
    public private(set) var skippedSteps = 0
    public private(set) var history: [EpochRecord] = []
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

    // MARK: - fit

    /// Trains for `epochs` epochs (counting any already done before a resume).
    @discardableResult
    public func fit(train: [Example], validation: [Example]? = nil, epochs: Int) throws -> [EpochRecord] {
        try options.validate()
        guard epochs >= 0 else { throw TrainingError.invalidOptions("epochs must be at least 0, got \(epochs)") }
        guard !train.isEmpty else { throw TrainingError.invalidOptions("no training examples") }
        BLAS.applySubnormalMode()
        let lengths = train.map(length)
        try checkRunIdentity(lengths: lengths)
        let ranks = self.ranks, primary = ranks?.isPrimary ?? true
        if let ranks { try joinRanks(ranks) }
        if primary { try claimCheckpointDirectory() }
        // A new run starts its own log; a resumed one continues it. Only rank 0 writes files.
        let fresh = globalStep == 0 && restoredFrom == nil
        if primary, let dir = options.runDirectory { try UserFile.makeDirectory(dir) }
        let log = try options.runDirectory.flatMap { primary ? try MetricsLog(url: $0.appendingPathComponent("metrics.jsonl"), truncate: fresh) : nil }
        let progress = ProgressLine(logEvery: options.progressEvery)
        while epoch < epochs {
            let epochGenerator: SeededGenerator, resumeBatch: Int
            if let resume = resumePosition {
                (epochGenerator, resumeBatch) = (resume.generator, resume.batch)
                resumePosition = nil
            } else {
                (epochGenerator, resumeBatch) = (generator, 0)
                onEpochStart?(epoch)
            }
            generator = epochGenerator
            let batches = BatchPlan.batches(lengths: lengths, batchSize: options.batchSize, order: options.order,
                                            tokenBudget: options.tokenBudget, using: &generator)
            // Only a resume-anyway with other data or batches can point past this epoch's batches.
            let firstBatch = Swift.min(resumeBatch, batches.count)
            let padded = BatchPlan.paddedFraction(batches, lengths: lengths)
            let start = Date(), allReduceAtEpochStart = allReduceSeconds
            var lossSum = 0.0, lossCount = 0, examples = 0
            // Distributed: every rank draws the same batches and takes every K-th example of each.
            func share(_ b: Int) -> [Int] {
                guard let ranks else { return batches[b] }
                return stride(from: ranks.rank, to: batches[b].count, by: ranks.size).map { batches[b][$0] }
            }
            let prefetcher = Prefetcher(collate: collate, enabled: options.prefetch)
            if firstBatch < batches.count { prefetcher.start(share(firstBatch).map { train[$0] }) }
            for b in firstBatch..<batches.count {
                let mine = share(b)
                let batch = try prefetcher.take()
                if b + 1 < batches.count { prefetcher.start(share(b + 1).map { train[$0] }) }
                // The weights matter only to the ranks' sum (one process weights its whole batch).
                let weight = ranks == nil ? 1 : exampleWeight.map { w in mine.reduce(0.0) { $0 + w(train[$1]) } } ?? Double(mine.count)
                let loss = try step(batch, weight: weight)
                if loss.isFinite { lossSum += loss; lossCount += 1 }
                examples += batches[b].count
                let elapsed = Date().timeIntervalSince(start)
                let rate = Double(examples) / Swift.max(elapsed, 1e-9)
                let remaining = batches[(b + 1)...].reduce(0) { $0 + $1.count }
                if options.showProgress && primary {
                    // The run's ETA counts the epochs still to come (early stopping may end it sooner).
                    let later = Double(remaining + (epochs - epoch - 1) * train.count)
                    progress.show(String(format: "epoch %d/%d  step %d/%d  loss %.4g  %.0f ex/s  eta epoch %@, run %@", epoch + 1, epochs, b + 1,
                                         batches.count, loss, rate, ProgressLine.duration(Double(remaining) / rate),
                                         ProgressLine.duration(later / rate)), count: globalStep, final: false)
                }
                if let log, globalStep % Swift.max(options.logEverySteps, 1) == 0 {
                    var entry: [String: LogValue] = ["kind": .text("step"), "time": .text(MetricsLog.timestamp()), "epoch": .integer(epoch + 1),
                                                     "step": .integer(globalStep), "loss": .number(loss), "learning_rate": .number(optimizer.learningRate),
                                                     "examples_per_second": .number(rate)]
                    // Distributed: the epoch's seconds so far in the gradient sum.
                    if ranks != nil { entry["allreduce_seconds"] = .number(allReduceSeconds - allReduceAtEpochStart) }
                    log.write(entry)
                }
                if let every = options.checkpointEverySteps, globalStep % every == 0, b + 1 < batches.count {
                    try saveCheckpoint(epochGenerator: epochGenerator, nextBatch: b + 1)
                }
                if try stopRequested(ranks) {
                    prefetcher.cancel()
                    // After the epoch's last batch, the resumed run starts at the epoch's end work.
                    if options.checkpointOnStop { try saveCheckpoint(epochGenerator: epochGenerator, nextBatch: b + 1) }
                    return history
                }
            }
            prefetcher.cancel()
            let seconds = Date().timeIntervalSince(start)
            var record = EpochRecord(epoch: epoch + 1, trainLoss: lossCount > 0 ? lossSum / Double(lossCount) : .nan, validationLoss: nil,
                                     validationMetrics: [:], paddedFraction: padded, examplesPerSecond: Double(examples) / Swift.max(seconds, 1e-9),
                                     skippedSteps: skippedSteps)
            if let validation, !validation.isEmpty {
                let (loss, metrics) = try evaluate(validation)
                record.validationLoss = loss
                record.validationMetrics = metrics
                if let score = options.selectionScore.map({ $0(record) }) ?? -loss {
                    if score > bestScore {
                        bestScore = score
                        bestWeights = parameters.map(\.data)
                        epochsWithoutImprovement = 0
                    } else {
                        epochsWithoutImprovement += 1
                    }
                }
            }
            epoch += 1
            history.append(record)
            if options.showProgress && primary {
                var text = String(format: "epoch %d/%d  train loss %.4g", epoch, epochs, record.trainLoss)
                if let v = record.validationLoss { text += String(format: "  validation loss %.4g", v) }
                for (k, v) in record.validationMetrics.sorted(by: { $0.key < $1.key }) { text += String(format: "  %@ %.4g", k, v) }
                text += String(format: "  padded %.1f%%  %.0f ex/s", 100 * padded, record.examplesPerSecond)
                progress.line(text)
            }
            if let log {
                log.write(["kind": .text("epoch"), "time": .text(MetricsLog.timestamp()), "epoch_seconds": .number(seconds),
                           "epoch": .integer(epoch), "step": .integer(globalStep), "train_loss": .number(record.trainLoss),
                           "validation_loss": record.validationLoss.map(LogValue.number) ?? .text("none"),
                           "validation": .object(record.validationMetrics.mapValues(LogValue.number)),
                           "padded_fraction": .number(padded), "examples_per_second": .number(record.examplesPerSecond),
                           "skipped_steps": .integer(skippedSteps), "ranks": .integer(ranks?.size ?? 1),
                           "allreduce_seconds": .number(allReduceSeconds - allReduceAtEpochStart)])
                try writePlots()
            }
            onEpochEnd?(record)
            try saveCheckpoint(epochGenerator: generator, nextBatch: 0)
            if stopAfterEpoch?(record) == true { break }
            if let patience = options.earlyStoppingPatience, epochsWithoutImprovement >= patience {
                if options.showProgress && primary { progress.line("early stopping: no validation improvement for \(patience) epochs") }
                break
            }
        }
        if options.restoreBestWeights, let best = bestWeights {
            for (p, w) in zip(parameters, best) { p.data = w }
        }
        return history
    }

    /// loss.svg (train and validation loss per epoch) and, with metrics, metrics.svg.
    func writePlots() throws {
        guard let dir = options.runDirectory else { return }
        let xs = history.map { Double($0.epoch) }
        var loss = [SVGPlot.Series(name: "train loss", points: Array(zip(xs, history.map(\.trainLoss))).map { ($0.0, $0.1) })]
        if history.contains(where: { $0.validationLoss != nil }) {
            loss.append(SVGPlot.Series(name: "validation loss", points: history.compactMap { r in r.validationLoss.map { (Double(r.epoch), $0) } }))
        }
        try SVGPlot.write(loss, title: "Loss", xLabel: "epoch", yLabel: "loss", logY: true, integerX: true, to: dir.appendingPathComponent("loss.svg"))
        let names = Set(history.flatMap { $0.validationMetrics.keys }).sorted()
        if !names.isEmpty {
            let series = names.map { name in SVGPlot.Series(name: name, points: history.compactMap { r in r.validationMetrics[name].map { (Double(r.epoch), $0) } }) }
            try SVGPlot.write(series, title: "Validation metrics", xLabel: "epoch", yLabel: "value", integerX: true, to: dir.appendingPathComponent("metrics.svg"))
        }
    }

    // MARK: - Checkpoints

    static var checkpointPrefix: String { "checkpoint-" }

    func saveCheckpoint(epochGenerator: SeededGenerator, nextBatch: Int) throws {
        guard let dir = options.checkpointDirectory, options.communicator?.isPrimary ?? true else { return }
        try UserFile.makeDirectory(dir)
        var tensors: [(name: String, tensor: Tensor<Scalar>)] = []
        for (i, p) in parameters.enumerated() { tensors.append(("parameter.\(i)", p.data)) }
        let state = optimizer.checkpoint(for: parameters)
        for (i, moments) in state.moments.enumerated() {
            for (k, m) in (moments ?? []).enumerated() { tensors.append(("optimizer.\(i).\(k)", Tensor(unchecked: parameters[i].shape, scalars: m))) }
        }
        if let best = bestWeights { for (i, w) in best.enumerated() { tensors.append(("best.\(i)", w)) } }
        func words(_ g: SeededGenerator) -> String { g.state.map(String.init).joined(separator: ",") }
        let history = (try? JSONEncoder().encode(self.history.map(HistoryEntry.init))).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        let metadata: [String: String] = [
            "format": "loom-checkpoint/1", "parameters": "\(parameters.count)", "global_step": "\(globalStep)", "epoch": "\(epoch)",
            "next_batch": "\(nextBatch)", "epoch_generator": words(epochGenerator), "generator": words(generator),
            "random_source": words(randomSource.withGenerator { $0 }), "optimizer_step": "\(state.step)",
            "learning_rate": "\(optimizer.learningRate)", "skipped_steps": "\(skippedSteps)",
            "best_score": "\(bestScore)", "epochs_without_improvement": "\(epochsWithoutImprovement)",
            "moments": state.moments.map { "\($0?.count ?? -1)" }.joined(separator: ","), "history": history,
            "current_loss": "\(currentLoss)", "ranks": "\(options.communicator?.size ?? 1)", "identity": Self.encodeIdentity(runIdentity ?? [:]),
        ]
        let name = Self.checkpointPrefix + String(format: "%010d", globalStep) + (nextBatch == 0 ? "-epoch" : "") + ".safetensors"
        try SafeTensors.write(tensors, metadata: metadata, to: dir.appendingPathComponent(name))
        // Keep the newest N.
        let all = Self.checkpoints(in: dir)
        for old in all.dropLast(Swift.max(options.keepCheckpoints, 1)) { try? FileManager.default.removeItem(at: old) }
    }

    /// Another run's checkpoints are never overwritten or pruned by a run that did not resume
    /// them: a run that did not call `resume()` refuses a directory that already holds some.
    func claimCheckpointDirectory() throws {
        guard !ownsCheckpointDirectory, let dir = options.checkpointDirectory else { return }
        if let other = Self.checkpoints(in: dir).last {
            throw TrainingError.checkpoint("\(dir.path) already holds checkpoints of a run (newest: \(other.lastPathComponent)); "
                                           + "resume that run (--resume) or choose another checkpoint directory")
        }
        ownsCheckpointDirectory = true
    }

    /// Checkpoint files of a directory, oldest first (temporary files are ignored).
    public static func checkpoints(in dir: URL) -> [URL] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
            .filter { $0.hasPrefix(checkpointPrefix) && $0.hasSuffix(".safetensors") }.sorted()
            .map { dir.appendingPathComponent($0) }
    }

    /// Restores the newest readable checkpoint of `options.checkpointDirectory` (an unreadable
    /// newest one is reported and the one before it used). Returns its URL, or nil if none.
    @discardableResult
    public func resume() throws -> URL? {
        guard let dir = options.checkpointDirectory else { throw TrainingError.checkpoint("no checkpoint directory set") }
        ownsCheckpointDirectory = true
        for url in Self.checkpoints(in: dir).reversed() {
            do {
                try restore(from: url)
                return url
            } catch let error as TrainingError {
                // A readable checkpoint of another model: refused, never skipped and overwritten.
                throw error
            } catch {
                warn("skipping checkpoint \(url.lastPathComponent): \(error)")
            }
        }
        return nil
    }

    /// Restores one checkpoint file; nothing changes if it fails.
    public func restore(from url: URL) throws {
        let file = try SafeTensors.read(url)
        let m = file.metadata
        guard m["format"] == "loom-checkpoint/1" else { throw TrainingError.checkpoint("\(url.lastPathComponent) is not a Loom checkpoint") }
        let shapes = parameters.indices.map { file.entries["parameter.\($0)"]?.shape }
        guard m["parameters"] == "\(parameters.count)", shapes == parameters.map({ Optional($0.shape) }) else {
            let theirs = m["parameters"] ?? "?"
            let first = parameters.indices.first { shapes[$0] != parameters[$0].shape }
            throw TrainingError.checkpoint("\(url.path) was written by a run of another model (\(theirs) parameters there, \(parameters.count) here"
                                           + (first.map { ", parameter \($0) (\(parameters[$0].name)): \(shapes[$0].map { "\($0)" } ?? "missing") there, \(parameters[$0].shape) here" } ?? "")
                                           + "); resume with the same settings or choose another checkpoint directory")
        }
        func int(_ key: String) throws -> Int {
            guard let v = m[key].flatMap(Int.init) else { throw TrainingError.checkpoint("\(url.lastPathComponent): bad \(key)") }
            return v
        }
        func gen(_ key: String) throws -> SeededGenerator {
            let words = (m[key] ?? "").split(separator: ",").compactMap { UInt64($0) }
            guard words.count == 4 else { throw TrainingError.checkpoint("\(url.lastPathComponent): bad \(key)") }
            var g = SeededGenerator(seed: 0)
            g.state = words
            return g
        }
        let weights = try parameters.indices.map { i -> Tensor<Scalar> in
            let t = try file.tensor("parameter.\(i)", as: Scalar.self)
            guard t.shape == parameters[i].shape else {
                throw SafeTensorsError.shapeMismatch(tensor: "parameter.\(i) (\(parameters[i].name))", expected: parameters[i].shape, actual: t.shape)
            }
            return t
        }
        let counts = (m["moments"] ?? "").split(separator: ",").compactMap { Int($0) }
        guard counts.count == parameters.count else { throw TrainingError.checkpoint("\(url.lastPathComponent): bad moments") }
        let moments = try counts.enumerated().map { i, c -> [[Scalar]]? in
            c < 0 ? nil : try (0..<c).map { k in try file.tensor("optimizer.\(i).\(k)", as: Scalar.self).scalars }
        }
        let best = file.entries["best.0"] == nil ? nil : try parameters.indices.map { try file.tensor("best.\($0)", as: Scalar.self) }
        let (epochGenerator, g, source) = (try gen("epoch_generator"), try gen("generator"), try gen("random_source"))
        let (step, ep, next, optStep) = (try int("global_step"), try int("epoch"), try int("next_batch"), try int("optimizer_step"))
        let restoredHistory = (m["history"].flatMap { try? JSONDecoder().decode([HistoryEntry].self, from: Data($0.utf8)) } ?? []).map(\.record)
        // Everything read; now change state.
        try optimizer.restore(OptimizerCheckpoint(step: optStep, moments: moments), for: parameters)
        for (p, w) in zip(parameters, weights) { p.data = w }
        if let lr = m["learning_rate"].flatMap(Double.init) { optimizer.learningRate = lr }
        globalStep = step
        epoch = ep
        generator = g
        randomSource.withGenerator { $0 = source }
        resumePosition = next > 0 ? (epochGenerator, next) : nil
        skippedSteps = (try? int("skipped_steps")) ?? 0
        // Checkpoints written before scores kept the best validation loss (lower was better).
        bestScore = m["best_score"].flatMap(Double.init) ?? m["best_validation"].flatMap(Double.init).map { -$0 } ?? -.infinity
        epochsWithoutImprovement = (try? int("epochs_without_improvement")) ?? 0
        bestWeights = best
        history = restoredHistory
        currentLoss = m["current_loss"].flatMap(Double.init) ?? .nan
        restoredIdentity = m["identity"].map(Self.decodeIdentity) ?? [:]
        restoredFrom = url
        // Checkpoints from before distributed training have no count: one process wrote them.
        let writtenBy = m["ranks"].flatMap(Int.init) ?? 1, now = options.communicator?.size ?? 1
        if writtenBy != now, options.communicator?.isPrimary ?? true {
            warn("\(url.lastPathComponent) was written by a run on \(writtenBy) rank\(writtenBy == 1 ? "" : "s"); continuing on \(now): "
                 + "the same batches, each rank's share and dropout masks differ from the original run's")
        }
    }

    // MARK: - Run identity

    /// What makes this run this run, as far as a checkpoint can tell: the batching, the seed,
    /// the data (count and a hash of the example lengths) and the caller's `runIdentity`.
    /// Nil until `fit` has seen the data.
    var runIdentity: [String: String]?

    func identity(lengths: [Int]) -> [String: String] {
        var hash = FNV1a()
        for l in lengths { hash.add(UInt64(bitPattern: Int64(l))) }
        var identity = options.runIdentity
        identity["batch_size"] = "\(options.batchSize)"
        identity["token_budget"] = options.tokenBudget.map { "\($0)" } ?? "none"
        identity["order"] = "\(options.order)"
        identity["seed"] = "\(options.seed)"
        identity["examples"] = "\(lengths.count)"
        identity["example_lengths_hash"] = String(hash.value, radix: 16)
        return identity
    }

    /// Compares this run with the checkpoint it resumed from; a difference is an error naming
    /// each differing fact (a warning with `resumeAnyway`).
    func checkRunIdentity(lengths: [Int]) throws {
        let mine = identity(lengths: lengths)
        runIdentity = mine
        guard let theirs = restoredIdentity, let from = restoredFrom else { return }
        restoredIdentity = nil
        // Checkpoints written before identities were recorded have none: nothing to compare.
        guard !theirs.isEmpty else { return }
        let keys = Set(mine.keys).union(theirs.keys).sorted()
        let differences = keys.filter { mine[$0] != theirs[$0] }.map { "\($0) \(theirs[$0] ?? "unset") there, \(mine[$0] ?? "unset") here" }
        guard !differences.isEmpty else { return }
        let message = "\(from.lastPathComponent) was written by a different run: " + differences.joined(separator: "; ")
        if options.resumeAnyway {
            warn(message + "; resuming anyway, as asked")
        } else {
            throw TrainingError.checkpoint(message + ". Resume with the same settings and data, choose another checkpoint directory, or resume anyway (--resume-anyway)")
        }
    }

    static func encodeIdentity(_ identity: [String: String]) -> String {
        (try? JSONEncoder().encode(identity)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    static func decodeIdentity(_ text: String) -> [String: String] {
        (try? JSONDecoder().decode([String: String].self, from: Data(text.utf8))) ?? [:]
    }
}

/// EpochRecord as JSON inside checkpoint metadata (non-finite numbers as strings).
struct HistoryEntry: Codable {
    var epoch: Int, trainLoss: String, validationLoss: String?, metrics: [String: String], padded: String, rate: String, skipped: Int

    init(_ r: EpochRecord) {
        (epoch, trainLoss, validationLoss) = (r.epoch, "\(r.trainLoss)", r.validationLoss.map { "\($0)" })
        (metrics, padded, rate, skipped) = (r.validationMetrics.mapValues { "\($0)" }, "\(r.paddedFraction)", "\(r.examplesPerSecond)", r.skippedSteps)
    }

    var record: EpochRecord {
        EpochRecord(epoch: epoch, trainLoss: Double(trainLoss) ?? .nan, validationLoss: validationLoss.flatMap(Double.init),
                    validationMetrics: metrics.compactMapValues(Double.init), paddedFraction: Double(padded) ?? .nan,
                    examplesPerSecond: Double(rate) ?? .nan, skippedSteps: skipped)
    }
}

/// Collates the next batch on a background queue while the current step runs.
final class Prefetcher<Example, Batch>: @unchecked Sendable {
    let collate: ([Example]) throws -> Batch
    let enabled: Bool
    let queue = DispatchQueue(label: "loom.prefetch")
    var pending: DispatchWorkItem?
    var result: Result<Batch, Error>?
    var examples: [Example]?

    init(collate: @escaping ([Example]) throws -> Batch, enabled: Bool) {
        self.collate = collate
        self.enabled = enabled
    }

    /// An empty share (a distributed rank with nothing in a small last batch) collates to nil.
    func start(_ examples: [Example]) {
        guard enabled, !examples.isEmpty else { self.examples = examples; return }
        let item = DispatchWorkItem { [self] in result = Result { try collate(examples) } }
        pending = item
        queue.async(execute: item)
    }

    func take() throws -> Batch? {
        if let examples {
            self.examples = nil
            return examples.isEmpty ? nil : try collate(examples)
        }
        pending?.wait()
        pending = nil
        defer { result = nil }
        guard let result else { throw TrainingError.io("prefetch produced no batch") }
        return try result.get()
    }

    func cancel() {
        pending?.wait()
        pending = nil
        result = nil
    }
}
