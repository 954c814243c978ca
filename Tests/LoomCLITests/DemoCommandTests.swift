import Foundation
import XCTest

/// Runs the real `loom` binary, as a user would.
final class DemoCommandTests: XCTestCase {
    var loom: URL { builtExecutable("loom") }

    func run(_ arguments: [String]) throws -> (status: Int32, output: String) { try runLoom(arguments) }

    /// A real (short) training run must clearly beat chance (50%) on held-out points.
    func testDemoLearnsTheSpirals() throws {
        let (status, output) = try run(["demo", "--epochs", "300", "--threads", "1"])
        XCTAssertEqual(status, 0, output)
        guard let line = output.split(separator: "\n").last(where: { $0.contains("held-out accuracy") }),
              let percent = line.split(separator: " ").last.flatMap({ Double($0.dropLast()) })
        else { return XCTFail("no final report in:\n\(output)") }
        XCTAssertGreaterThan(percent, 90, output)
        // Not on a terminal: plain lines, no carriage returns.
        XCTAssertFalse(output.contains("\r"))
    }

    func testBadOptionIsAClearError() throws {
        let (status, output) = try run(["demo", "--epochs", "0"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(output.contains("--epochs"), output)
    }

    /// A real training process killed with SIGKILL between checkpoints, then resumed, ends with
    /// the same final loss (to the last printed digit) as an uninterrupted run with the same seed.
    func testKilledRunResumesToTheSameFinalLoss() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loom-kill-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let common = ["demo", "--epochs", "120", "--threads", "1", "--checkpoint-every", "7"]
        let whole = try run(common + ["--checkpoint-dir", dir.appendingPathComponent("a").path])
        XCTAssertEqual(whole.status, 0, whole.output)
        func finalLoss(_ output: String) -> String? {
            output.split(separator: "\n").first { $0.hasPrefix("final loss") }.map { String($0.split(separator: " ")[2]) }
        }
        let expected = try XCTUnwrap(finalLoss(whole.output), whole.output)

        // Start the same run, wait until it has written some checkpoints, kill it hard.
        let checkpoints = dir.appendingPathComponent("b")
        let process = Process()
        process.executableURL = loom
        process.arguments = common + ["--checkpoint-dir", checkpoints.path]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? []
            if names.filter({ $0.hasPrefix("checkpoint-") && $0.hasSuffix(".safetensors") }).contains(where: { $0 >= "checkpoint-0000000100" }) { break }
            usleep(2_000)
        }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .uncaughtSignal, "the run must be killed before it ends")
        let resumed = try run(common + ["--checkpoint-dir", checkpoints.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resumed from checkpoint-"), resumed.output)
        XCTAssertEqual(finalLoss(resumed.output), expected, resumed.output)
    }
}
