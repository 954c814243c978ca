import Foundation
import XCTest

/// The layering of ../shared/DESIGN.md, checked on the sources: scripts/check_imports.py passes
/// on the repository and fails on a copy with a wrong import.
final class ImportGraphTests: XCTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func check(_ directory: URL) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", root.appendingPathComponent("scripts/check_imports.py").path, directory.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do { try process.run() } catch { throw XCTSkip("python3 is not available") }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    func testModulesImportOnlyWhatTheGraphAllows() throws {
        let result = try check(root)
        XCTAssertEqual(result.status, 0, result.output)
        XCTAssertTrue(result.output.contains("0 violation"), result.output)
    }

    func testAWrongImportIsFound() throws {
        let copy = FileManager.default.temporaryDirectory.appendingPathComponent("imports-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: copy) }
        for folder in ["Sources/LoomText", "Sources/LoomAudio", "recipes", "Benchmarks"] {
            try FileManager.default.createDirectory(at: copy.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try Data("import Foundation\nimport LoomTensor\n".utf8).write(to: copy.appendingPathComponent("Sources/LoomText/Fine.swift"))
        // Text reaching up into the layers, and audio reaching down into the C kernels: both wrong.
        try Data("import Foundation\n@_exported import LoomLayers\n".utf8).write(to: copy.appendingPathComponent("Sources/LoomText/Wrong.swift"))
        try Data("import CLoomKernels\n".utf8).write(to: copy.appendingPathComponent("Sources/LoomAudio/Wrong.swift"))
        let result = try check(copy)
        XCTAssertEqual(result.status, 1, result.output)
        XCTAssertTrue(result.output.contains("Sources/LoomText/Wrong.swift:2: LoomText imports LoomLayers"), result.output)
        XCTAssertTrue(result.output.contains("Sources/LoomAudio/Wrong.swift:1: LoomAudio imports CLoomKernels"), result.output)
        XCTAssertTrue(result.output.contains("2 violation"), result.output)
    }
}
