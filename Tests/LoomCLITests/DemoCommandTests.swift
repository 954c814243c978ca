import Foundation
import XCTest

/// Runs the real `loom` binary, as a user would.
final class DemoCommandTests: XCTestCase {
    /// The `loom` executable built beside this test bundle.
    var loom: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("loom")
    }

    func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = loom
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

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
}
