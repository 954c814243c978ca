import Foundation
import XCTest

/// Data-parallel training over Open MPI (`openmpi-bin`, installed by .ci/run): `mpirun -np 2`
/// of the real `loom` binary on loopback shared memory, as root with --allow-run-as-root.
final class DistributedTests: TemporaryDirectoryTestCase {
    let config = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("corpora/numbers/run.json").path
    /// Constant learning rate (the cosine schedule's length depends on max_steps), one thread per rank.
    var common: [String] { ["train", "--config", config, "--set", "training.schedule=\"constant\"", "--threads", "1"] }

    func mpirunProcess(_ ranks: [[String]]) -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
        // MPMD form: one "-np 1 loom ARGS" block per rank, separated by ":".
        process.arguments = ["--allow-run-as-root", "--oversubscribe"]
            + ranks.enumerated().flatMap { i, arguments in (i > 0 ? [":"] : []) + ["-np", "1", builtExecutable("loom").path] + arguments }
        return process
    }

    /// Runs `mpirun` with one argument list per rank; output and error together.
    func mpirun(_ ranks: [[String]]) throws -> (status: Int32, output: String) {
        let process = mpirunProcess(ranks)
        let pipe = Pipe()
        (process.standardOutput, process.standardError) = (pipe, pipe)
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func mpirun(ranks: Int, _ arguments: [String]) throws -> (status: Int32, output: String) {
        try mpirun(Array(repeating: arguments, count: ranks))
    }

    /// The losses of the steps in a run's metrics log.
    func stepLosses(_ run: String) throws -> [Double] {
        try String(contentsOfFile: path("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return object?["kind"] as? String == "step" ? object?["loss"] as? Double : nil
        }
    }

    /// Two ranks with a batch of 32 (16 each) take the steps of one process with a batch of 32.
    /// The sums are grouped differently: one process adds the tokens' losses and gradients in
    /// one Float sum, two ranks add two partial sums (each weighted by its tokens). Float
    /// rounding (2^-24 relative per addition) over these sums of a few hundred terms and the
    /// five updates made from them stays far below 1e-5 relative (2e-7 measured).
    func testTwoRanksTakeTheStepsOfOneProcessWithTheSameBatch() throws {
        let steps = ["--set", "training.max_steps=5"]
        let single = try runLoom(common + steps + ["--output", path("one")])
        XCTAssertEqual(single.status, 0, single.output)
        let two = try mpirun(ranks: 2, common + steps + ["--distributed", "--output", path("two")])
        XCTAssertEqual(two.status, 0, two.output)
        XCTAssertTrue(two.output.contains("on 2 ranks"), two.output)
        let (a, b) = (try stepLosses("one"), try stepLosses("two"))
        XCTAssertEqual(a.count, 5)
        XCTAssertEqual(b.count, 5, "rank 0 alone writes the log")
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5 * abs(x), "\(a) against \(b)") }
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("two/model.safetensors")))
    }

    /// Stopped after 4 steps and resumed to 8, a 2-rank run with dropout takes the same steps as
    /// an uninterrupted one, bit for bit: each rank's dropout masks come from (seed, step, rank),
    /// and a sum of two Floats does not depend on their order.
    func testResumedDistributedRunEqualsAnUninterruptedOne() throws {
        let arguments = common + ["--set", "model.dropout=0.2", "--distributed"]
        XCTAssertEqual(try mpirun(ranks: 2, arguments + ["--set", "training.max_steps=8", "--output", path("whole")]).status, 0)
        let first = try mpirun(ranks: 2, arguments + ["--set", "training.max_steps=4", "--output", path("parts")])
        XCTAssertEqual(first.status, 0, first.output)
        let rest = try mpirun(ranks: 2, arguments + ["--set", "training.max_steps=8", "--output", path("parts"), "--resume"])
        XCTAssertEqual(rest.status, 0, rest.output)
        XCTAssertTrue(rest.output.contains("resumed from checkpoint-0000000004"), rest.output)
        let (whole, parts) = (try stepLosses("whole"), try stepLosses("parts"))
        XCTAssertEqual(whole.count, 8)
        XCTAssertEqual(parts, whole)
    }

    /// A rank killed mid-run ends the whole job with a non-zero status naming it (no hang); its
    /// last checkpoint resumes.
    func testAKilledRankEndsTheJobAndTheRunResumes() throws {
        let arguments = common + ["--set", "training.checkpoint_every=2", "--epochs", "200", "--distributed", "--output", path("run")]
        let process = mpirunProcess([arguments, arguments])
        let pipe = Pipe()
        (process.standardOutput, process.standardError) = (pipe, pipe)
        let output = Collected()
        pipe.fileHandleForReading.readabilityHandler = { output.append($0.availableData) }
        try process.run()
        func text() -> String { output.text }
        // Wait for rank 1's pid and a checkpoint (events, not time).
        var pid: Int32?
        let checkpoints = directory.appendingPathComponent("run/checkpoints")
        while process.isRunning {
            if pid == nil, let range = text().range(of: #"rank 1 of 2: pid (\d+)"#, options: .regularExpression) {
                pid = Int32(text()[range].split(separator: " ").last ?? "")
            }
            let written = ((try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? []).contains { $0.hasSuffix(".safetensors") }
            if pid != nil && written { break }
            usleep(10_000)
        }
        let victim = try XCTUnwrap(pid, text())
        kill(victim, SIGKILL)
        // A hang would keep mpirun alive: give up (and fail) only after a generous bound.
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        XCTAssertFalse(process.isRunning, "mpirun still running after one rank was killed")
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        pipe.fileHandleForReading.readabilityHandler = nil
        XCTAssertNotEqual(process.terminationStatus, 0)
        XCTAssertTrue(text().contains("rank 1"), text())
        let resumed = try mpirun(ranks: 2, common + ["--set", "training.checkpoint_every=2", "--epochs", "1", "--distributed",
                                                     "--output", path("run"), "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resumed from checkpoint-"), resumed.output)
    }

    /// Ranks given different data end at the start, naming what differs.
    func testRanksWithDifferentDataAreRefused() throws {
        let pairs = try String(contentsOfFile: URL(fileURLWithPath: config).deletingLastPathComponent().appendingPathComponent("train.tsv").path,
                               encoding: .utf8).split(separator: "\n").prefix(300).joined(separator: "\n") + "\n"
        try Data(pairs.utf8).write(to: directory.appendingPathComponent("short.tsv"))
        let arguments = common + ["--distributed", "--output", path("run")]
        let r = try mpirun([arguments, arguments + ["--train", path("short.tsv")]])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.output.contains("differ between ranks"), r.output)
        XCTAssertTrue(r.output.contains("examples"), r.output)
    }

    func testDistributedWithoutMpirunRunsAsOneProcess() throws {
        let r = try runLoom(common + ["--set", "training.max_steps=1", "--distributed", "--output", path("run")])
        XCTAssertEqual(r.status, 0, r.output)
        XCTAssertTrue(r.output.contains("not started by mpirun; running as one process"), r.output)
    }
}

/// Output gathered from a pipe's handler thread.
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func append(_ chunk: Data) { lock.lock(); data.append(chunk); lock.unlock() }
    var text: String { lock.lock(); defer { lock.unlock() }; return String(decoding: data, as: UTF8.self) }
}
