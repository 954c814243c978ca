import ArgumentParser
import Foundation
import Loom
import LoomDistributed

/// The defaults a recipe gives the common options, shown in its help as values (set before
/// parsing, in the recipe's `main`).
public struct RecipeDefaults: Sendable {
    public var epochs: Int, batchSize: Int, hidden: Int, learningRate: Double
    public init(epochs: Int, batchSize: Int, hidden: Int, learningRate: Double) {
        (self.epochs, self.batchSize, self.hidden, self.learningRate) = (epochs, batchSize, hidden, learningRate)
    }
    nonisolated(unsafe) public static var current = RecipeDefaults(epochs: 10, batchSize: 32, hidden: 32, learningRate: 1e-3)
}

/// What every recipe accepts: the same flags, with the names `loom demo` uses.
public struct RecipeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Training epochs (default: \(RecipeDefaults.current.epochs); fewer with --quick).") public var epochs: Int?
    @Option(parsing: .unconditional, help: "Examples per batch (default: \(RecipeDefaults.current.batchSize)).") public var batchSize: Int?
    @Option(parsing: .unconditional, help: "Hidden units (default: \(RecipeDefaults.current.hidden); fewer with --quick).") public var hidden: Int?
    @Option(parsing: .unconditional, help: "Peak learning rate (default: \(RecipeDefaults.current.learningRate)).") public var learningRate: Double?
    @Option(parsing: .unconditional, help: "Seed for the corpus, initialization, shuffling and dropout.") public var seed: UInt64 = 1
    @Option(parsing: .unconditional, help: "Threads (default: LOOM_THREADS, else the cores this process may use).") public var threads: Int?
    @Option(help: "Where the model, metrics log, plots, report and checkpoints go (default: runs/<recipe>).") public var output: String?
    @Option(parsing: .unconditional, help: "Also checkpoint every this many steps (always at each epoch's end, and on Ctrl-C or SIGTERM).")
    public var checkpointEvery: Int?
    @Flag(help: "Continue from the newest checkpoint in <output>/checkpoints.") public var resume = false
    @Flag(help: "Resume even if the checkpoint was written with other settings or data (the differences are reported).")
    public var resumeAnyway = false
    @Flag(help: "A small, fast run (what the test suite runs): a smaller corpus and fewer epochs.") public var quick = false
    @Flag(help: "Data-parallel training over the ranks `mpirun -np K` starts (one process without mpirun); rank 0 writes.")
    public var distributed = false

    public init() {}

    /// The threads the run uses: `--threads`, else the team's default.
    public var threadCount: Int { threads ?? BLAS.threadCount }

    /// The limits of the common options: beyond them a run would trap, divide by zero or ask
    /// for more memory than any machine has.
    public func validate() throws {
        do {
            if let epochs { try OptionRange.check("--epochs", epochs, in: 1...100_000) }
            if let batchSize { try OptionRange.check("--batch-size", batchSize, in: 1...65_536) }
            if let hidden { try OptionRange.check("--hidden", hidden, in: 1...4096) }
            if let learningRate { try OptionRange.check("--learning-rate", learningRate, in: 1e-9...10) }
            if let threads { try OptionRange.check("--threads", threads, in: 1...WorkerTeam.maximumThreads) }
            if let checkpointEvery { try OptionRange.check("--checkpoint-every", checkpointEvery, in: 1...Int.max) }
            if let output { try OptionRange.path("--output", output) }
        } catch let error as OptionRangeError {
            throw ValidationError(error.description)
        }
    }

    /// Thread count and OpenBLAS kernels (see BLAS.selectOptimizedCoreAndRelaunchIfNeeded), and
    /// with --distributed the MPI job's communicator.
    public func configureThreads() throws {
        BLAS.selectOptimizedCoreAndRelaunchIfNeeded()
        if let threads { BLAS.setThreadCount(threads) }
        RecipeOptions.communicator = try Distributed.communicator(requested: distributed)
    }

    /// The MPI job's communicator with --distributed under mpirun (set by `configureThreads`).
    nonisolated(unsafe) public static var communicator: (any Communicator)?

    public var learningRateOrDefault: Double { learningRate ?? RecipeDefaults.current.learningRate }

    public func outputDirectory(_ recipe: String) throws -> URL {
        let url = URL(fileURLWithPath: output ?? "runs/\(recipe)")
        try UserFile.makeDirectory(url)
        return url
    }

    /// Seed, checkpoints in `directory/checkpoints` (every --checkpoint-every steps, at epoch
    /// ends, and when interrupted) and --resume-anyway.
    public func apply(to options: inout TrainerOptions, directory: URL, name: String = "checkpoints") {
        options.seed = seed
        options.checkpointDirectory = directory.appendingPathComponent(name)
        options.checkpointEverySteps = checkpointEvery
        options.checkpointOnStop = true
        options.resumeAnyway = resumeAnyway
        options.communicator = RecipeOptions.communicator
    }

    /// Resumes when asked, then fits; Ctrl-C or SIGTERM ends the run at the end of the current
    /// step with a checkpoint, and the recipe exits with status 130 saying how to continue.
    /// Distributed: an error on any rank ends the job; after training only rank 0 goes on (to
    /// its report and model file), the other ranks exit.
    public func fit<Example, Batch>(_ trainer: Trainer<Float, Example, Batch>, train: [Example], validation: [Example]? = nil,
                                    epochs: Int) throws -> [EpochRecord] {
        if resume || resumeAnyway {
            if let url = try trainer.resume() {
                print("resumed from \(url.lastPathComponent) at step \(trainer.globalStep), epoch \(trainer.epoch)")
            } else {
                print("no checkpoint yet in \(trainer.options.checkpointDirectory?.path ?? "?"); starting from the beginning")
            }
        }
        let interruption = Interruption.install()
        defer { interruption.uninstall() }
        let previous = trainer.shouldStop
        trainer.shouldStop = { interruption.requested || previous?() == true }
        let communicator = RecipeOptions.communicator
        let history = try Distributed.guarded(communicator) { try trainer.fit(train: train, validation: validation, epochs: epochs) }
        if let communicator, !communicator.isPrimary { Foundation.exit(interruption.requested ? 130 : 0) }
        if interruption.requested {
            print("\ninterrupted at step \(trainer.globalStep): checkpoint saved in \(trainer.options.checkpointDirectory?.path ?? "?"); "
                  + "run the same command with --resume to continue")
            throw ExitCode(130)
        }
        return history
    }
}

/// A value in a recipe's report: numbers stay numbers in report.json.
public enum ReportValue {
    /// A share in 0...1: printed as a percentage, written as the number.
    case fraction(Double)
    case number(Double, format: String)
    case integer(Int)
    case text(String)

    public var display: String {
        switch self {
        case let .fraction(x): return String(format: "%.2f%%", 100 * x)
        case let .number(x, format): return String(format: format, x)
        case let .integer(i): return "\(i)"
        case let .text(t): return t
        }
    }

    var json: Any {
        switch self {
        case let .fraction(x), let .number(x, _): return x.isFinite ? x : "\(x)"
        case let .integer(i): return i
        case let .text(t): return t
        }
    }
}

/// The final report: printed and written as report.json beside the model, with typed values
/// under snake_case keys (units in the key: `wall_time_seconds`); the same keys across recipes
/// for the same things (`task`, `epochs`, `wall_time_seconds`, `training_examples_per_second`,
/// `parameters`, `model_file`, `decode_command`, `plots`).
public struct RecipeReport {
    public var entries: [(key: String, label: String, value: ReportValue)] = []
    public init() {}

    /// Adds a line: `key` in report.json, `label` when printed.
    public mutating func add(_ key: String, _ label: String, _ value: ReportValue) { entries.append((key, label, value)) }

    /// The lines every recipe reports: task, epochs, wall time, training throughput (the mean of
    /// the epochs' examples/s as the metrics log has them) and the model file.
    public mutating func addCommon(task: String, history: [EpochRecord], epochs: Int, seconds: Double, parameters: Int, model: URL) {
        add("task", "task", .text(task))
        add("epochs", "epochs", .integer(epochs))
        add("wall_time_seconds", "wall time (s)", .number(seconds, format: "%.1f"))
        let rates = history.map(\.examplesPerSecond).filter(\.isFinite)
        if !rates.isEmpty { add("training_examples_per_second", "training examples/s", .number(rates.reduce(0, +) / Double(rates.count), format: "%.0f")) }
        add("parameters", "parameters", .integer(parameters))
        add("model_file", "model", .text(model.path))
    }

    /// The command that decodes with `model` using the `loom` built beside this recipe (no rebuild).
    public mutating func addDecodeCommand(model: URL, example: String) {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("loom")
        let loom = FileManager.default.isExecutableFile(atPath: beside.path) ? beside.path : "loom"
        add("decode_command", "decode with", .text("\(loom) decode --model \(model.path) \(example)"))
    }

    public func emit(to directory: URL) throws {
        print("\n== report ==")
        for e in entries { print("\(e.label): \(e.value.display)") }
        let object = Dictionary(entries.map { ($0.key, $0.value.json) }, uniquingKeysWith: { $1 })
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        try AtomicFile.write(data, to: directory.appendingPathComponent("report.json"))
    }
}

/// Splits `items` into (train, held out) with a seeded shuffle.
public func split<T>(_ items: [T], heldOut fraction: Double, seed: UInt64) -> (train: [T], heldOut: [T]) {
    var g = SeededGenerator(seed: seed)
    let shuffled = items.shuffled(using: &g)
    let cut = Int((Double(shuffled.count) * (1 - fraction)).rounded())
    return (Array(shuffled[..<cut]), Array(shuffled[cut...]))
}
