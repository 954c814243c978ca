import Foundation
import XCTest

extension XCTestCase {
    /// An executable built beside this test bundle (`loom`, the recipes).
    func builtExecutable(_ name: String) -> URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Runs the real `loom` binary, as a user would; standard output and error together.
    func runLoom(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = builtExecutable("loom")
        process.arguments = arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
