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

    /// 16-bit PCM mono WAV bytes of `samples` (in -1...1) at `rate`.
    func wavData(_ samples: [Float], rate: Int) -> Data {
        var d = Data()
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: Int) { withUnsafeBytes(of: UInt16(v).littleEndian) { d.append(contentsOf: $0) } }
        d.append(contentsOf: Array("RIFF".utf8)); u32(36 + 2 * samples.count); d.append(contentsOf: Array("WAVEfmt ".utf8))
        u32(16); u16(1); u16(1); u32(rate); u32(rate * 2); u16(2); u16(16)
        d.append(contentsOf: Array("data".utf8)); u32(2 * samples.count)
        var bytes = [UInt8](repeating: 0, count: 2 * samples.count)
        for (i, s) in samples.enumerated() {
            let v = UInt16(bitPattern: Int16(Swift.max(-1, Swift.min(1, s)) * 32767))
            (bytes[2 * i], bytes[2 * i + 1]) = (UInt8(v & 0xFF), UInt8(v >> 8))
        }
        d.append(contentsOf: bytes)
        return d
    }

    /// Starts an executable, waits until it has written its first checkpoint into `checkpoints`
    /// (its signal handling is in place and training is under way), sends `signal`, and returns
    /// how it ended.
    func interruptAtFirstCheckpoint(_ name: String, _ arguments: [String], checkpoints: URL, signal: Int32) throws -> Process {
        let process = Process()
        process.executableURL = builtExecutable(name)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        while process.isRunning && !((try? FileManager.default.contentsOfDirectory(atPath: checkpoints.path)) ?? [])
            .contains(where: { $0.hasPrefix("checkpoint-") && $0.hasSuffix(".safetensors") }) { usleep(2_000) }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return process
    }
}

/// A test case with a fresh folder of its own for each test, removed afterwards.
class TemporaryDirectoryTestCase: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("loom-\(type(of: self))-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// A path inside the test's folder.
    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }
}
