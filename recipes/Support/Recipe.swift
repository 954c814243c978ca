import ArgumentParser
import Foundation
import Loom

/// What every recipe accepts: the usual knobs, with per-recipe defaults.
public struct RecipeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Training epochs (default: the recipe's).") public var epochs: Int?
    @Option(parsing: .unconditional, help: "Examples per batch (default: the recipe's).") public var batchSize: Int?
    @Option(parsing: .unconditional, help: "Hidden units (default: the recipe's).") public var hidden: Int?
    @Option(parsing: .unconditional, help: "Seed for the corpus, initialization, shuffling and dropout.") public var seed: UInt64 = 1
    @Option(parsing: .unconditional, help: "Threads: 2 (default) uses Loom's own team, 1 runs single-threaded.") public var threads = 2
    @Option(help: "Where the model, metrics log, plots and report go.") public var output: String?
    @Flag(help: "A small, fast run (what the test suite runs): a smaller corpus and fewer epochs.") public var quick = false

    public init() {}

    /// The limits of the common options: beyond them a run would trap, divide by zero or ask
    /// for more memory than any machine has.
    public func validate() throws {
        do {
            if let epochs { try OptionRange.check("--epochs", epochs, in: 1...100_000) }
            if let batchSize { try OptionRange.check("--batch-size", batchSize, in: 1...65_536) }
            if let hidden { try OptionRange.check("--hidden", hidden, in: 1...4096) }
            try OptionRange.check("--threads", threads, in: 1...256)
            if let output { try OptionRange.path("--output", output) }
        } catch let error as OptionRangeError {
            throw ValidationError(error.description)
        }
    }

    /// Thread count and OpenBLAS kernels (see BLAS.selectOptimizedCoreAndRelaunchIfNeeded).
    public func configureThreads() {
        BLAS.selectOptimizedCoreAndRelaunchIfNeeded()
        BLAS.setThreadCount(threads)
    }

    public func outputDirectory(_ recipe: String) throws -> URL {
        let url = URL(fileURLWithPath: output ?? "runs/\(recipe)")
        try UserFile.makeDirectory(url)
        return url
    }
}

/// The final report: printed and written as report.json beside the model.
public struct RecipeReport {
    public var lines: [(String, String)] = []
    public init() {}
    public mutating func add(_ key: String, _ value: String) { lines.append((key, value)) }

    public func emit(to directory: URL) throws {
        print("\n== report ==")
        for (k, v) in lines { print("\(k): \(v)") }
        let object = Dictionary(lines, uniquingKeysWith: { $1 })
        let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
        try AtomicFile.write(data, to: directory.appendingPathComponent("report.json"))
    }
}

public func percent(_ x: Double) -> String { String(format: "%.2f%%", 100 * x) }

/// Splits `items` into (train, held out) with a seeded shuffle.
public func split<T>(_ items: [T], heldOut fraction: Double, seed: UInt64) -> (train: [T], heldOut: [T]) {
    var g = SeededGenerator(seed: seed)
    let shuffled = items.shuffled(using: &g)
    let cut = Int((Double(shuffled.count) * (1 - fraction)).rounded())
    return (Array(shuffled[..<cut]), Array(shuffled[cut...]))
}
