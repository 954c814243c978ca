import Foundation
import LoomTensor

/// The training loop: epochs of batches, validation, the epoch log and plots.
extension Trainer {
    // MARK: - fit

    /// Trains for `epochs` epochs (counting any already done before a resume).
    @discardableResult
    public func fit(train: [Example], validation: [Example]? = nil, epochs: Int) throws -> [EpochRecord] {
        try options.validate()
        guard epochs >= 0 else { throw TrainingError.invalidOptions("epochs must be at least 0, got \(epochs)") }
        guard !train.isEmpty else { throw TrainingError.invalidOptions("no training examples") }
        if let q = parameters.first(where: { $0.quantized != nil }) {
            throw TrainingError.invalidOptions("parameter \(q.name) holds int8 weights (an int8 model file is for inference); train from the float model")
        }
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
                let (loss, metrics) = try withAverageWeights { try evaluate(validation) }
                record.validationLoss = loss
                record.validationMetrics = metrics
                if let score = options.selectionScore.map({ $0(record) }) ?? -loss {
                    if score > bestScore {
                        bestScore = score
                        bestWeights = averageWeights ?? parameters.map(\.data)
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
        } else if let average = averageWeights {
            for (p, w) in zip(parameters, average) { p.data = w }
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
}
