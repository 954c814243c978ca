import Foundation
import XCTest

extension XCTestCase {
    /// An executable built beside this test bundle (`loom`, the recipes).
    func builtExecutable(_ name: String) -> URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Runs a built executable, as a user would; standard output and error together.
    func runExecutable(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = builtExecutable(name)
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// Runs the real `loom` binary.
    func runLoom(_ arguments: [String]) throws -> (status: Int32, output: String) { try runExecutable("loom", arguments) }
}
