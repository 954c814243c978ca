import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import LoomLayers
import LoomTraining
import XCTest

final class TrainerTests: XCTestCase {
    /// y = 3 x0 - 2 x1 + 1 from 256 points; examples are indices.
    func regression(seed: UInt64 = 3) throws -> (Linear<Float>, Trainer<Float, Int, (Tensor<Float>, Tensor<Float>)>, Tensor<Float>) {
        let source = RandomSource(seed: seed)
        let x = try Tensor<Float>.randomUniform([256, 2], lower: -1, upper: 1, using: source)
        let y = try Tensor<Float>(shape: [256, 1], scalars: (0..<256).map { 3 * x.scalars[2 * $0] - 2 * x.scalars[2 * $0 + 1] + 1 })
        let model = try Linear<Float>(inputSize: 2, outputSize: 1, using: source)
        var options = TrainerOptions()
        options.batchSize = 16
        options.order = .shuffled
        options.showProgress = false
        let trainer = Trainer<Float, Int, (Tensor<Float>, Tensor<Float>)>(
            parameters: model.parameters, optimizer: Adam<Float>(learningRate: 0.05), options: options, randomSource: source,
            length: { _ in 1 }, collate: { rows in (try x.gathering(rows: rows), try y.gathering(rows: rows)) },
            loss: { b in try Loss.meanSquaredError(model(b.0), b.1) })
        return (model, trainer, x)
    }

    func testFitLearnsALinearFunction() throws {
        let (model, trainer, _) = try regression()
        let history = try trainer.fit(train: Array(0..<256), epochs: 30)
        XCTAssertEqual(history.count, 30)
        XCTAssertLessThan(history.last!.trainLoss, 1e-3, "\(history.map(\.trainLoss))")
        XCTAssertEqual(model.weight.data.scalars[0], 3, accuracy: 0.05)
    }

    func testStopAfterEpochEndsFitAtThatEpoch() throws {
        let (_, trainer, _) = try regression()
        var seen: [Int] = []
        trainer.onEpochEnd = { seen.append($0.epoch) }
        trainer.stopAfterEpoch = { $0.epoch == 4 }
        let history = try trainer.fit(train: Array(0..<256), epochs: 30)
        XCTAssertEqual(history.map(\.epoch), [1, 2, 3, 4])
        XCTAssertEqual(seen, [1, 2, 3, 4])
        XCTAssertEqual(trainer.epoch, 4)
    }
}

extension TrainerTests {
    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loom-trainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }

    /// Lengths 1...100, 20 examples each, batches of 32: bucketing wastes under 10% of the
    /// positions, plain shuffling about a third.
    func testBucketingKeepsPaddingLow() {
        let lengths = (1...100).flatMap { Array(repeating: $0, count: 20) }
        var g = SeededGenerator(seed: 1)
        let bucketed = BatchPlan.batches(lengths: lengths, batchSize: 32, order: TrainerOptions().order, using: &g)
        let wolfram = BatchPlan.batches(lengths: lengths, batchSize: 32, order: .bucketed(buckets: 8), using: &g)
        print("padded fraction with Wolfram's 8 buckets: \(BatchPlan.paddedFraction(wolfram, lengths: lengths))")
        XCTAssertLessThan(BatchPlan.paddedFraction(wolfram, lengths: lengths), 0.12)
        let shuffled = BatchPlan.batches(lengths: lengths, batchSize: 32, order: .shuffled, using: &g)
        let (b, s) = (BatchPlan.paddedFraction(bucketed, lengths: lengths), BatchPlan.paddedFraction(shuffled, lengths: lengths))
        print("padded fraction: bucketed \(b), shuffled \(s)")
        XCTAssertLessThan(b, 0.10)
        XCTAssertGreaterThan(s, 0.25)
        for batches in [bucketed, shuffled] {
            XCTAssertEqual(batches.flatMap { $0 }.sorted(), Array(lengths.indices), "every example exactly once")
            XCTAssertTrue(batches.allSatisfy { $0.count <= 32 })
        }
        let sequential = BatchPlan.batches(lengths: lengths, batchSize: 32, order: .sequential, using: &g)
        XCTAssertEqual(sequential.flatMap { $0 }, Array(lengths.indices))
        let budget = BatchPlan.batches(lengths: lengths, batchSize: 1000, order: .bucketed(buckets: 8), tokenBudget: 512, using: &g)
        XCTAssertTrue(budget.allSatisfy { batch in batch.count * batch.map { lengths[$0] }.max()! <= 512 || batch.count == 1 })
    }

    /// A bad batch (NaN inputs) is skipped and counted; training goes on; too many in a row stop it.
    func testNonFiniteBatchesAreSkippedAndReported() throws {
        let (model, trainer, x) = try regression()
        _ = x
        var bad = try Tensor<Float>.ones([4, 2])
        bad.withUnsafeMutableScalars { $0[3] = .nan }
        let before = model.weight.data
        let loss = try trainer.step((bad, try Tensor<Float>.ones([4, 1])))
        XCTAssertTrue(loss.isNaN)
        XCTAssertEqual(trainer.skippedSteps, 1)
        XCTAssertEqual(model.weight.data, before, "no update from a NaN batch")
        XCTAssertTrue(model.weight.data.scalars.allSatisfy(\.isFinite))
        // Training continues after it.
        let history = try trainer.fit(train: Array(0..<256), epochs: 20)
        XCTAssertLessThan(history.last!.trainLoss, 1e-3)
        XCTAssertEqual(trainer.skippedSteps, 1)
        trainer.options.maximumNonFiniteSteps = 3
        XCTAssertNoThrow(try trainer.step((bad, try Tensor<Float>.ones([4, 1]))))
        XCTAssertNoThrow(try trainer.step((bad, try Tensor<Float>.ones([4, 1]))))
        XCTAssertThrowsError(try trainer.step((bad, try Tensor<Float>.ones([4, 1])))) { error in
            XCTAssertTrue("\(error)".contains("3 steps in a row"), "\(error)")
        }
        XCTAssertTrue(model.weight.data.scalars.allSatisfy(\.isFinite))
    }

    /// Stopping after any step and resuming from the checkpoints continues with exactly the
    /// losses of an uninterrupted run (same seed), dropout and shuffling included. (The test
    /// that kills a real process is in LoomCLITests.)
    func testResumeContinuesTheSameLossSequence() throws {
        func run(stopAfter: Int?, directory: URL, resume: Bool) throws -> [Double] {
            let source = RandomSource(seed: 5)
            let x = try Tensor<Float>.randomUniform([200, 3], lower: -1, upper: 1, using: source)
            let y = try Tensor<Float>(shape: [200, 1], scalars: (0..<200).map { sin(3 * x.scalars[3 * $0]) + x.scalars[3 * $0 + 1] })
            let model = Chain<Float>(try Linear(inputSize: 3, outputSize: 16, using: source), Activation(.tanh),
                                     try Dropout(probability: 0.2, using: source), try Linear(inputSize: 16, outputSize: 1, using: source))
            var options = TrainerOptions()
            options.batchSize = 24
            options.order = .shuffled
            options.showProgress = false
            options.seed = 9
            options.checkpointDirectory = directory
            options.checkpointEverySteps = 4
            options.keepCheckpoints = 2
            let trainer = Trainer<Float, Int, (Tensor<Float>, Tensor<Float>)>(
                parameters: model.parameters, optimizer: Adam<Float>(learningRate: 0.02), options: options, randomSource: source,
                length: { _ in 1 }, collate: { rows in (try x.gathering(rows: rows), try y.gathering(rows: rows)) },
                loss: { b in try Loss.meanSquaredError(model(b.0), b.1) })
            var losses: [Double] = []
            trainer.onStep = { _, loss in losses.append(loss) }
            if let stopAfter { trainer.shouldStop = { trainer.globalStep >= stopAfter } }
            if resume { XCTAssertNotNil(try trainer.resume()) }
            try trainer.fit(train: Array(0..<200), epochs: 4)
            return losses
        }
        let whole = try run(stopAfter: nil, directory: temporaryDirectory(), resume: false)
        XCTAssertEqual(whole.count, 4 * 9)
        for stop in [6, 9, 22] {
            let dir = try temporaryDirectory()
            let first = try run(stopAfter: stop, directory: dir, resume: false)
            XCTAssertEqual(first, Array(whole.prefix(stop)))
            let second = try run(stopAfter: nil, directory: dir, resume: true)
            // Checkpoints every 4 steps (none on an epoch's last step) and at epoch ends (every 9
            // steps; stopping skips the end-of-epoch work): the newest written before the stop.
            let saved = (1...stop).filter { ($0 % 4 == 0 && $0 % 9 != 0) || ($0 % 9 == 0 && $0 < stop) }.max()!
            XCTAssertEqual(second, Array(whole[saved...]), "resumed after stopping at \(stop) (checkpoint at step \(saved))")
        }
    }

    func testCheckpointWriteInterruptedLeavesPreviousLoadable() throws {
        let dir = try temporaryDirectory()
        let (model, trainer, _) = try regression()
        trainer.options.checkpointDirectory = dir
        try trainer.fit(train: Array(0..<256), epochs: 2)
        let saved = model.weight.data
        let files = Trainer<Float, Int, (Tensor<Float>, Tensor<Float>)>.checkpoints(in: dir)
        XCTAssertEqual(files.count, 2)
        // A write of a newer checkpoint dies halfway: no file appears under its name.
        let newer = dir.appendingPathComponent("checkpoint-9999999999.safetensors")
        XCTAssertThrowsError(try AtomicFile.write(Data(repeating: 1, count: 4096), to: newer, interruptAfter: 2048))
        XCTAssertFalse(FileManager.default.fileExists(atPath: newer.path))
        // And a corrupt newest file (a disk error) is skipped with a warning.
        try Data("garbage".utf8).write(to: newer)
        let (fresh, freshTrainer, _) = try regression(seed: 77)
        freshTrainer.options.checkpointDirectory = dir
        let used = try freshTrainer.resume()
        XCTAssertEqual(used?.lastPathComponent, files.last?.lastPathComponent)
        XCTAssertEqual(fresh.weight.data, saved)
        XCTAssertEqual(freshTrainer.epoch, 2)
    }

    func testMetricsLogAndPlotsAreWritten() throws {
        let dir = try temporaryDirectory()
        let (_, trainer, _) = try regression()
        trainer.options.runDirectory = dir
        try trainer.fit(train: Array(0..<256), validation: Array(0..<64), epochs: 3)
        var bad = try Tensor<Float>.ones([2, 2])
        bad.withUnsafeMutableScalars { $0[0] = .nan }
        try trainer.step((bad, try Tensor<Float>.ones([2, 1])))
        let log = try MetricsLog(url: dir.appendingPathComponent("metrics.jsonl"))
        log.write(["loss": .number(trainer.currentLoss), "inf": .number(-.infinity)])
        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.filter { $0.contains("\"kind\":\"epoch\"") }.count, 3)
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            XCTAssertNotNil(object, String(line))
        }
        XCTAssertTrue(lines.last!.contains("\"loss\":\"NaN\"") && lines.last!.contains("\"-Infinity\""), String(lines.last!))
        let svg = try Data(contentsOf: dir.appendingPathComponent("loss.svg"))
        let parser = XMLParser(data: svg)
        final class Counter: NSObject, XMLParserDelegate {
            var elements: [String] = []
            func parser(_ p: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
                elements.append(name)
            }
        }
        let counter = Counter()
        parser.delegate = counter
        XCTAssertTrue(parser.parse(), "\(String(describing: parser.parserError))")
        XCTAssertEqual(counter.elements.first, "svg")
        XCTAssertEqual(counter.elements.filter { $0 == "polyline" }.count, 2, "train and validation loss")
    }

    /// Stateful training (Keras stateful, the seeds' random walk): one long sequence cut into
    /// consecutive chunks, never shuffled; the LSTM state flows chunk to chunk (truncated
    /// backpropagation at chunk boundaries) and is reset at each epoch's start.
    func testStatefulTrainingCarriesStateAcrossBatches() throws {
        let source = RandomSource(seed: 21)
        let series = (0..<401).map { Float(sin(Double($0) * 0.3) + 0.5 * sin(Double($0) * 0.07)) }
        let lstm = try LSTM<Float>(inputSize: 1, hiddenSize: 16, using: source)
        let stateful = StatefulModel(lstm)
        let head = try Linear<Float>(inputSize: 16, outputSize: 1, using: source)
        var options = TrainerOptions()
        options.batchSize = 1
        options.order = .sequential
        options.showProgress = false
        var seen: [Int] = [], resets = 0
        let trainer = Trainer<Float, Int, Int>(
            parameters: lstm.parameters + head.parameters, optimizer: Adam<Float>(learningRate: 0.01), options: options, randomSource: source,
            length: { _ in 20 }, collate: { $0[0] },
            loss: { chunk in
                seen.append(chunk)
                let inputs = Array(series[(chunk * 20)..<(chunk * 20 + 20)]), targets = Array(series[(chunk * 20 + 1)...(chunk * 20 + 20)])
                let out = try stateful(SequenceBatch(values: Tensor(shape: [20, 1, 1], scalars: inputs)))
                return try Loss.meanSquaredError(head(out.values.reshaped([20, 16])), Tensor(shape: [20, 1], scalars: targets))
            })
        trainer.onEpochStart = { _ in stateful.reset(); resets += 1 }
        let history = try trainer.fit(train: Array(0..<20), epochs: 30)
        XCTAssertEqual(Array(seen.prefix(20)), Array(0..<20), "chunks in order")
        XCTAssertEqual(resets, 30)
        XCTAssertNotNil(stateful.state, "the state is carried")
        XCTAssertFalse(stateful.state!.hidden.isRecorded, "and cut from the tape between chunks")
        XCTAssertLessThan(history.last!.trainLoss, 0.1 * history.first!.trainLoss, "\(history.map(\.trainLoss))")
    }
}

final class PlotTests: XCTestCase {
    /// One cell per matrix entry, shaded from white (smallest) to dark blue (largest), labels
    /// escaped; the result is well-formed XML.
    func testHeatmapCellsShadingAndEscaping() throws {
        let svg = SVGPlot.heatmap([[0, 0.5, 1], [1, 0, 0]], rowLabels: ["<a>", "b"], title: "t & u", xLabel: "x", yLabel: "y")
        XCTAssertEqual(svg.components(separatedBy: "fill=\"rgb(").count - 1, 6)
        XCTAssertTrue(svg.contains("fill=\"rgb(255,255,255)\""), "the smallest value is white")
        XCTAssertTrue(svg.contains("fill=\"rgb(8,48,107)\""), "the largest is dark blue")
        XCTAssertTrue(svg.contains("fill=\"rgb(132,152,181)\""), "0.5 halfway in each channel")
        XCTAssertTrue(svg.contains("&lt;a&gt;") && svg.contains("t &amp; u"))
        XCTAssertNoThrow(try XMLDocument(xmlString: svg))
    }
}

/// Plots a reader can read: ticks at 1-2-5 steps enclosing the data, integer epochs, a log
/// scale for losses, a grid, and the legend outside the data.
final class PlotReadabilityTests: XCTestCase {
    func isNice(_ x: Double) -> Bool {
        guard x != 0 else { return true }
        let power = pow(10, floor(log10(abs(x)) + 1e-12))
        let mantissa = abs(x) / power
        return [1.0, 2, 5].contains { abs(mantissa - $0) < 1e-9 } || abs(mantissa.rounded() - mantissa) < 1e-9
    }

    func testTicksAreRoundAndEncloseTheData() {
        // The data that gave ticks at 0.005101 and 0.3008 before.
        let ticks = SVGPlot.linearTicks(0.005101, 0.3008)
        XCTAssertLessThanOrEqual(ticks.first ?? 1, 0.005101)
        XCTAssertGreaterThanOrEqual(ticks.last ?? 0, 0.3008)
        XCTAssertTrue(ticks.allSatisfy(isNice), "\(ticks)")
        let steps = Set(zip(ticks, ticks.dropFirst()).map { (($1 - $0) * 1e9).rounded() })
        XCTAssertEqual(steps.count, 1, "equal steps: \(ticks)")
        // Epochs: whole numbers only, also over a short run (which gave 2.75 before).
        for (low, high) in [(1.0, 4.0), (1.0, 2.0), (1.0, 37.0)] {
            let epochs = SVGPlot.linearTicks(low, high, integers: true)
            XCTAssertTrue(epochs.allSatisfy { $0 == $0.rounded() }, "\(epochs)")
            XCTAssertTrue(epochs.first! <= low && epochs.last! >= high)
        }
        let log = SVGPlot.logTicks(0.004, 2.3)
        XCTAssertEqual(log.first, 0.001)
        XCTAssertEqual(log.last, 10)
        XCTAssertTrue(log.allSatisfy { abs(log10($0) - log10($0).rounded()) < 1e-12 }, "\(log)")
    }

    func testLossPlotHasLogScaleGridAndLegendOutside() throws {
        let svg = SVGPlot.render([SVGPlot.Series(name: "train loss", points: [(1, 2.3), (2, 0.4), (3, 0.05), (4, 0.004)])],
                                 title: "Loss", xLabel: "epoch", yLabel: "loss", logY: true, integerX: true)
        XCTAssertTrue(svg.contains("loss (log scale)"))
        XCTAssertGreaterThan(svg.components(separatedBy: "class=\"grid\"").count - 1, 4)
        // The plot area's right edge and the legend's left edge.
        func number(after marker: String, in text: String) -> Double? {
            guard let range = text.range(of: marker) else { return nil }
            return Double(text[range.upperBound...].prefix { "0123456789.".contains($0) })
        }
        let frame = try XCTUnwrap(svg.components(separatedBy: "\n").first { $0.hasPrefix("<rect x=\"70.0\" y=\"40.0\"") })
        let right = try XCTUnwrap(number(after: "x=\"", in: frame)) + (try XCTUnwrap(number(after: "width=\"", in: frame)))
        let legend = try XCTUnwrap(number(after: "class=\"legend\" x=\"", in: svg))
        XCTAssertGreaterThan(legend, right)
        let xticks = svg.components(separatedBy: "class=\"xtick\"").dropFirst().map { $0.components(separatedBy: ">")[1].components(separatedBy: "<")[0] }
        XCTAssertEqual(xticks, ["1", "2", "3", "4"])
    }
}

/// The moving average of the weights (`TrainerOptions.averageDecay`).
extension TrainerTests {
    /// The average follows avg = d avg + (1 - d) w with d = min(decay, (1 + t) / (10 + t)),
    /// validation sees it, fit leaves it, and the steps themselves are those of a run without it.
    func testWeightAverageFollowsItsRecurrenceAndLeavesTrainingAlone() throws {
        func run(decay: Double?) throws -> (losses: [Double], weights: [[Float]], final: [Float], validation: Double?, model: Linear<Float>) {
            let (model, trainer, _) = try regression()
            trainer.options.averageDecay = decay
            trainer.options.restoreBestWeights = false
            var losses: [Double] = [], weights: [[Float]] = []
            trainer.onStep = { _, loss in
                losses.append(loss)
                weights.append(model.weight.data.scalars + model.bias!.data.scalars)
            }
            let history = try trainer.fit(train: Array(0..<256), validation: Array(0..<64), epochs: 2)
            return (losses, weights, model.weight.data.scalars + model.bias!.data.scalars, history.last?.validationLoss, model)
        }
        let plain = try run(decay: nil), averaged = try run(decay: 0.9)
        XCTAssertEqual(plain.losses, averaged.losses, "the average must not change the steps")
        XCTAssertEqual(plain.weights, averaged.weights)
        // The recurrence in Double; Float rounds each of the 32 updates once (relative 6e-8
        // each, on weights of size ~3): 1e-5 is well above that and far below the steps' moves.
        var expected = averaged.weights[0].map(Double.init)
        for (t, w) in averaged.weights.enumerated().dropFirst() {
            let d = min(0.9, Double(2 + t) / Double(11 + t))
            for j in expected.indices { expected[j] = d * expected[j] + (1 - d) * Double(w[j]) }
        }
        for (a, e) in zip(averaged.final, expected) { XCTAssertEqual(Double(a), e, accuracy: 1e-5) }
        let last = averaged.weights.last!
        XCTAssertGreaterThan(zip(last, expected).map { abs(Double($0) - $1) }.max()!, 1e-3, "the average lags the last weights")
        // Validation was computed with the average: recompute its loss with the final (average) weights.
        let x = try Tensor<Float>.randomUniform([256, 2], lower: -1, upper: 1, using: RandomSource(seed: 3))
        let rows = try x.gathering(rows: Array(0..<64))
        let y = try Tensor<Float>(shape: [64, 1], scalars: (0..<64).map { 3 * rows.scalars[2 * $0] - 2 * rows.scalars[2 * $0 + 1] + 1 })
        let loss = try withoutGradients { Double(try Loss.meanSquaredError(averaged.model(rows), y).scalarValue) }
        XCTAssertEqual(averaged.validation!, loss, accuracy: 1e-6 * max(loss, 1))
        XCTAssertNotEqual(averaged.validation!, plain.validation!)
    }

    /// A run stopped and resumed ends with the average of an uninterrupted run, bit for bit.
    func testWeightAverageResumesExactly() throws {
        func run(stopAfter: Int?, directory: URL, resume: Bool) throws -> [Float] {
            let (model, trainer, _) = try regression()
            trainer.options.averageDecay = 0.95
            trainer.options.restoreBestWeights = false
            trainer.options.checkpointDirectory = directory
            trainer.options.checkpointEverySteps = 5
            if let stopAfter { trainer.shouldStop = { trainer.globalStep >= stopAfter } }
            if resume { XCTAssertNotNil(try trainer.resume()) }
            try trainer.fit(train: Array(0..<256), epochs: 3)
            return model.weight.data.scalars + model.bias!.data.scalars
        }
        let whole = try run(stopAfter: nil, directory: temporaryDirectory(), resume: false)
        let dir = try temporaryDirectory()
        _ = try run(stopAfter: 23, directory: dir, resume: false)
        XCTAssertEqual(try run(stopAfter: nil, directory: dir, resume: true), whole)
        // A checkpoint with an average is another run for a trainer without one.
        let (_, plain, _) = try regression()
        plain.options.checkpointDirectory = dir
        XCTAssertNotNil(try plain.resume())
        XCTAssertThrowsError(try plain.fit(train: Array(0..<256), epochs: 4)) { error in
            XCTAssertTrue("\(error)".contains("average_decay"), "\(error)")
        }
    }
}
