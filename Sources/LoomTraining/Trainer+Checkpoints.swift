import Foundation
import LoomTensor

/// Checkpoints (save, resume, restore) and the run identity a resume is checked against.
extension Trainer {
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
        if let average = averageWeights { for (i, w) in average.enumerated() { tensors.append(("average.\(i)", w)) } }
        func words(_ g: SeededGenerator) -> String { g.state.map(String.init).joined(separator: ",") }
        let history = (try? JSONEncoder().encode(self.history.map(HistoryEntry.init))).map { String(decoding: $0, as: UTF8.self) } ?? "[]"
        let metadata: [String: String] = [
            "format": "loom-checkpoint/1", "parameters": "\(parameters.count)", "global_step": "\(globalStep)", "epoch": "\(epoch)",
            "next_batch": "\(nextBatch)", "epoch_generator": words(epochGenerator), "generator": words(generator),
            "random_source": words(randomSource.withGenerator { $0 }), "optimizer_step": "\(state.step)",
            "learning_rate": "\(optimizer.learningRate)", "skipped_steps": "\(skippedSteps)",
            "best_score": "\(bestScore)", "epochs_without_improvement": "\(epochsWithoutImprovement)",
            "moments": state.moments.map { "\($0?.count ?? -1)" }.joined(separator: ","), "history": history,
            "current_loss": "\(currentLoss)", "average_updates": "\(averageUpdates)", "ranks": "\(options.communicator?.size ?? 1)", "identity": Self.encodeIdentity(runIdentity ?? [:]),
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
        /// One tensor per parameter, "PREFIX.i", each of its parameter's shape.
        func tensors(_ prefix: String) throws -> [Tensor<Scalar>] {
            try parameters.indices.map { i in
                let t = try file.tensor("\(prefix).\(i)", as: Scalar.self)
                guard t.shape == parameters[i].shape else {
                    throw SafeTensorsError.shapeMismatch(tensor: "\(prefix).\(i) (\(parameters[i].name))", expected: parameters[i].shape, actual: t.shape)
                }
                return t
            }
        }
        let weights = try tensors("parameter")
        let counts = (m["moments"] ?? "").split(separator: ",").compactMap { Int($0) }
        guard counts.count == parameters.count else { throw TrainingError.checkpoint("\(url.lastPathComponent): bad moments") }
        let moments = try counts.enumerated().map { i, c -> [[Scalar]]? in
            c < 0 ? nil : try (0..<c).map { k in try file.tensor("optimizer.\(i).\(k)", as: Scalar.self).scalars }
        }
        let best = file.entries["best.0"] == nil ? nil : try parameters.indices.map { try file.tensor("best.\($0)", as: Scalar.self) }
        let average = file.entries["average.0"] == nil ? nil : try tensors("average")
        if average == nil, options.averageDecay != nil, (try? int("average_updates")).map({ $0 > 0 }) == true {
            throw TrainingError.checkpoint("\(url.lastPathComponent): the weight average is missing")
        }
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
        averageWeights = options.averageDecay == nil ? nil : average
        averageUpdates = (try? int("average_updates")) ?? 0
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
        if let decay = options.averageDecay { identity["average_decay"] = "\(decay)" }
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
