import Foundation
import Loom
import XCTest

/// The hostile-input sweep's findings (issue 23), one test per item, named after it: each runs
/// the real binaries as a user would and asserts that nothing is lost, nothing traps or hangs,
/// and the message names the problem. `scripts/hostile.sh` replays a generated set of the same
/// kinds of input against the release binaries.
final class HostileInputTests: TemporaryDirectoryTestCase {
    /// Runs an executable with optional standard input; a watchdog kills it after `limit` seconds
    /// (far beyond any of these runs: it turns a hang into a failure instead of a stuck suite).
    func run(_ arguments: [String], executable name: String = "loom", input: String? = nil, limit: Double = 300)
        throws -> (status: Int32, output: String, error: String, signaled: Bool) {
        let process = Process()
        process.executableURL = builtExecutable(name)
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let out = Pipe(), err = Pipe(), inp = Pipe()
        (process.standardOutput, process.standardError, process.standardInput) = (out, err, inp)
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + limit, execute: watchdog)
        // Standard error is drained on another thread, so that neither pipe can fill and block the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let errorData = Box(), group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errorData.data = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        if let input { inp.fileHandleForWriting.write(Data(input.utf8)) }
        try inp.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        watchdog.cancel()
        group.wait()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: errorData.data, as: UTF8.self),
                process.terminationReason == .uncaughtSignal)
    }

    /// The addition architecture in small: reversed input, as the recipe saves it.
    func additionModel(seed: UInt64 = 2) throws -> (SequenceTransformer, URL) {
        var configuration = try SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 8), encoderLayers: [16],
            encoderBidirectional: [true], target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 8,
            decoderHidden: 16, attention: .general)
        configuration.reverseSource = true
        let model = try SequenceTransformer(configuration, using: RandomSource(seed: seed))
        let url = directory.appendingPathComponent("addition.safetensors")
        try model.save(to: url)
        return (model, url)
    }

    /// A small audio model over a 16 kHz mel front end.
    func audioModel(_ change: (inout FeatureConfiguration) -> Void = { _ in }) throws -> URL {
        var features = FeatureConfiguration.preset(.speech, kind: .mel)
        features.melBands = 16
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .audio(features, frameStacking: 1), encoderLayers: [6], target: .characters(CharacterEncoder(alphabet: Array("ab"))),
            targetEmbeddingSize: 4, decoderHidden: 6, attention: .dot), using: RandomSource(seed: 1))
        let url = directory.appendingPathComponent("audio.safetensors")
        try model.save(to: url)
        var changed = features
        change(&changed)
        if changed != features {
            // Rewrite the front end in the file's metadata, as a hostile file would.
            let file = try SafeTensors.read(url)
            var metadata = file.metadata
            var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data((metadata["loom.architecture"] ?? "").utf8)) as? [String: Any])
            var source = try XCTUnwrap(object["source"] as? [String: Any])
            var audio = try XCTUnwrap(source["audio"] as? [String: Any])
            audio["features"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(changed))
            source["audio"] = audio
            object["source"] = source
            metadata["loom.architecture"] = String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
            try SafeTensors.write(file.entries.keys.sorted().map { ($0, try file.tensor($0, as: Float.self)) }, metadata: metadata, to: url)
        }
        return url
    }

    /// 16-bit mono PCM.
    func writeWAV(_ name: String, seconds: Double, rate: Int = 16000) throws -> String {
        let samples = (0..<Int(seconds * Double(rate))).map { Float(0.25 * sin(Double($0) * 0.07)) }
        try wavData(samples, rate: rate).write(to: directory.appendingPathComponent(name))
        return path(name)
    }

    /// A 32-bit float mono WAV with the given samples.
    func writeFloatWAV(_ name: String, _ samples: [Float]) throws -> String {
        var d = Data()
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { d.append(contentsOf: $0) } }
        func u16(_ v: Int) { withUnsafeBytes(of: UInt16(v).littleEndian) { d.append(contentsOf: $0) } }
        d.append(contentsOf: Array("RIFF".utf8)); u32(36 + 4 * samples.count); d.append(contentsOf: Array("WAVEfmt ".utf8))
        u32(16); u16(3); u16(1); u32(16000); u32(64000); u16(4); u16(32)
        d.append(contentsOf: Array("data".utf8)); u32(4 * samples.count)
        for s in samples { withUnsafeBytes(of: s.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
        try d.write(to: directory.appendingPathComponent(name))
        return path(name)
    }

    func makeFIFO(_ name: String) throws -> String {
        guard mkfifo(path(name), 0o644) == 0 else { throw XCTSkip("mkfifo failed") }
        return path(name)
    }

    // MARK: - Data lost

    func testD1EncodeAudioLeavesADirectoryUnderTheOutputNameAlone() throws {
        let wav = try writeWAV("x.wav", seconds: 0.5)
        let keep = directory.appendingPathComponent("o/x.npy/keep")
        try FileManager.default.createDirectory(at: keep, withIntermediateDirectories: true)
        try Data("k".utf8).write(to: keep.appendingPathComponent("f"))
        let r = try run(["encode-audio", wav, "--output", path("o")])
        XCTAssertEqual(r.status, 1, r.error)
        XCTAssertTrue(r.error.contains("x.npy") && r.error.contains("directory"), r.error)
        XCTAssertEqual(try Data(contentsOf: keep.appendingPathComponent("f")), Data("k".utf8))
    }

    /// strace kills the process at the rename that puts the new file in place: the old file must
    /// still be there, whole (before, the old file was deleted first, and neither survived).
    func testD2ReplacingAnNpyKeepsTheOldFileUntilTheNewOneIsComplete() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/strace") else { throw XCTSkip("strace is not installed (.ci/run installs it)") }
        let wav = try writeWAV("x.wav", seconds: 0.5)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("o"), withIntermediateDirectories: true)
        try Data("old".utf8).write(to: directory.appendingPathComponent("o/x.npy"))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/strace")
        process.arguments = ["-f", "-o", "/dev/null", "-e", "inject=rename:signal=SIGKILL", builtExecutable("loom").path, "encode-audio", wav, "--output", path("o")]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        // strace passes on the signal that killed its child; any other end means it could not trace.
        guard process.terminationReason == .uncaughtSignal else { throw XCTSkip("strace could not trace here (ptrace not permitted?)") }
        XCTAssertEqual(try Data(contentsOf: directory.appendingPathComponent("o/x.npy")), Data("old".utf8))
        // The next run replaces it (and clears the killed run's temporary file).
        let r = try run(["encode-audio", wav, "--output", path("o")])
        XCTAssertEqual(r.status, 0, r.error)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("o")), ["x.npy"])
    }

    func testD3EveryInputGetsItsOwnOutputFile() throws {
        for folder in ["a", "b"] { try FileManager.default.createDirectory(at: directory.appendingPathComponent(folder), withIntermediateDirectories: true) }
        let inputs = [try writeWAV("a/s.wav", seconds: 0.2), try writeWAV("b/s.wav", seconds: 0.3), try writeWAV("s-2.wav", seconds: 0.4)]
        let r = try run(["encode-audio"] + inputs + ["--output", path("o")])
        XCTAssertEqual(r.status, 0, r.error)
        let written = try FileManager.default.contentsOfDirectory(atPath: path("o")).sorted()
        XCTAssertEqual(written.count, 3, "\(written)")
        // Three different lengths, so three different files.
        let sizes = Set(try written.map { try Data(contentsOf: directory.appendingPathComponent("o/\($0)")).count })
        XCTAssertEqual(sizes.count, 3)
    }

    func testD4ResumeRefusesACheckpointOfAnotherRunAndKeepsIt() throws {
        let common = ["demo", "--epochs", "3", "--threads", "1", "--checkpoint-dir", path("D")]
        XCTAssertEqual(try run(common).status, 0)
        let before = try FileManager.default.contentsOfDirectory(atPath: path("D")).sorted()
        let contents = try before.map { try Data(contentsOf: directory.appendingPathComponent("D/\($0)")) }
        let other = try run(common + ["--hidden", "16", "--resume"])
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.error.contains("another model"), other.error)
        // A new run (no --resume) into a directory of a longer run: refused, nothing pruned.
        let fresh = try run(["demo", "--epochs", "1", "--threads", "1", "--checkpoint-dir", path("D")])
        XCTAssertNotEqual(fresh.status, 0)
        XCTAssertTrue(fresh.error.contains("already holds checkpoints"), fresh.error)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: path("D")).sorted(), before)
        XCTAssertEqual(try before.map { try Data(contentsOf: directory.appendingPathComponent("D/\($0)")) }, contents)
    }

    func testD5BlankLineIsReportedAndDecodingGoesOn() throws {
        let (model, url) = try additionModel()
        let lines = (0..<201).map { $0 == 64 ? "" : "\($0)+\($0 % 7)" }
        let r = try run(["decode", "--model", url.path, "--max-length", "5"], input: lines.joined(separator: "\n") + "\n")
        XCTAssertEqual(r.status, 1)
        let output = r.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
        XCTAssertEqual(output.count, 201)
        XCTAssertTrue(r.error.contains("input 65") && r.error.contains("empty input"), r.error)
        let good = lines.filter { !$0.isEmpty }
        let expected = try model.decode(model.sourceBatch(texts: good), options: DecodingOptions(maximumLength: 5)).map { $0[0].text }
        XCTAssertEqual(output.enumerated().filter { $0.offset != 64 }.map(\.element), expected)
        XCTAssertEqual(output[64], "")
    }

    // MARK: - Crashes

    func testC1HugeBeamIsAClearError() throws {
        let (_, url) = try additionModel()
        for beam in ["4611686018427387904", "100000000", "257"] {
            let r = try run(["decode", "--model", url.path, "--beam", beam, "1+1"])
            XCTAssertFalse(r.signaled)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.error.contains("--beam must be in 1...256, got \(beam)"), r.error)
        }
        let long = try run(["decode", "--model", url.path, "--max-input-length", "100", String(repeating: "1", count: 1000)])
        XCTAssertEqual(long.status, 1)
        XCTAssertTrue(long.error.contains("1000 characters"), long.error)
    }

    func testC2ResumeWithAnotherBatchSizeIsRefused() throws {
        let common = ["demo", "--epochs", "2", "--threads", "1", "--checkpoint-dir", path("D"), "--checkpoint-every", "3"]
        XCTAssertEqual(try run(common + ["--batch-size", "13"]).status, 0)
        let other = try run(common + ["--batch-size", "4", "--epochs", "3", "--resume"])
        XCTAssertFalse(other.signaled, other.error)
        XCTAssertNotEqual(other.status, 0)
        XCTAssertTrue(other.error.contains("batch_size 13 there, 4 here"), other.error)
        let anyway = try run(common + ["--batch-size", "4", "--epochs", "3", "--resume-anyway"])
        XCTAssertEqual(anyway.status, 0, anyway.error)
        XCTAssertTrue(anyway.error.contains("resuming anyway"), anyway.error)
        let seed = try run(common + ["--batch-size", "4", "--seed", "9", "--epochs", "4", "--resume"])
        XCTAssertTrue(seed.error.contains("seed 1 there, 9 here"), seed.error)
    }

    func testC3RecipeBatchSizeZeroIsAClearError() throws {
        for recipe in ["addition", "addition-regression", "timeseries", "compare-xy", "g2p"] {
            let r = try run(["--quick", "--batch-size", "0", "--output", path(recipe)], executable: recipe)
            XCTAssertFalse(r.signaled, "\(recipe): \(r.error)")
            XCTAssertEqual(r.status, 64, "\(recipe): \(r.error)")
            XCTAssertTrue(r.error.contains("--batch-size must be in 1...65536, got 0"), r.error)
        }
    }

    func testC4CheckpointEveryZeroIsAClearError() throws {
        let r = try run(["demo", "--checkpoint-every", "0", "--checkpoint-dir", path("D")])
        XCTAssertFalse(r.signaled)
        XCTAssertTrue(r.error.contains("--checkpoint-every must be in 1..."), r.error)
    }

    func testC5HugeSizesAreClearErrors() throws {
        let hidden = try run(["--quick", "--hidden", "1000000", "--output", path("a")], executable: "addition")
        XCTAssertEqual(hidden.status, 64)
        XCTAssertTrue(hidden.error.contains("--hidden must be in 1...4096"), hidden.error)
        let (_, url) = try additionModel()
        let batch = try run(["decode", "--model", url.path, "--batch-size", "1000000", "1+1"])
        XCTAssertEqual(batch.status, 64)
        XCTAssertTrue(batch.error.contains("--batch-size must be in 1...4096"), batch.error)
    }

    // MARK: - Hangs and unbounded memory

    func testH1DeviceOrFIFOAsModelFileIsRefused() throws {
        try FileManager.default.createSymbolicLink(atPath: path("z.safetensors"), withDestinationPath: "/dev/zero")
        let zero = try run(["info", path("z.safetensors")])
        XCTAssertEqual(zero.status, 1)
        XCTAssertTrue(zero.error.contains("character device, not a regular file"), zero.error)
        let fifo = try run(["info", try makeFIFO("m.safetensors")])
        XCTAssertEqual(fifo.status, 1)
        XCTAssertTrue(fifo.error.contains("FIFO"), fifo.error)
    }

    func testH2FIFOAsAudioPathIsRefused() throws {
        let fifo = try makeFIFO("a.wav")
        let encode = try run(["encode-audio", fifo, "--output", path("o")])
        XCTAssertEqual(encode.status, 1)
        XCTAssertTrue(encode.error.contains("FIFO"), encode.error)
        let decode = try run(["decode", "--model", try audioModel().path, fifo])
        XCTAssertEqual(decode.status, 1)
        XCTAssertTrue(decode.error.contains("input 1") && decode.error.contains("FIFO"), decode.error)
    }

    /// Standard input stays open while the first result is read: decoding must answer each
    /// batch as it comes (before, it read to the end of input first and this read never returned).
    func testH3DecodeStreamsStandardInput() throws {
        let (_, url) = try additionModel()
        let process = Process()
        process.executableURL = builtExecutable("loom")
        process.arguments = ["decode", "--model", url.path, "--batch-size", "2", "--max-length", "4"]
        let out = Pipe(), inp = Pipe()
        (process.standardOutput, process.standardInput, process.standardError) = (out, inp, FileHandle.nullDevice)
        try process.run()
        let watchdog = DispatchWorkItem { if process.isRunning { process.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + 300, execute: watchdog)
        inp.fileHandleForWriting.write(Data("1+1\n2+2\n".utf8))
        var received = Data()
        while received.filter({ $0 == UInt8(ascii: "\n") }).count < 2 {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            received += chunk
        }
        XCTAssertTrue(process.isRunning, "the first results came before the end of input")
        XCTAssertEqual(received.filter { $0 == UInt8(ascii: "\n") }.count, 2)
        try inp.fileHandleForWriting.close()
        process.waitUntilExit()
        watchdog.cancel()
        XCTAssertEqual(process.terminationStatus, 0)
    }

    func testH4H5ModelFileFrontEndIsBounded() throws {
        let fft = try run(["info", try audioModel { $0.fftLength = 1 << 20; $0.windowLength = 400 }.path])
        XCTAssertEqual(fft.status, 1)
        XCTAssertTrue(fft.error.contains("FFT length 1048576"), fft.error)
        let wav = try writeWAV("long.wav", seconds: 600, rate: 8000)
        let hop = try run(["decode", "--model", try audioModel { $0.hop = 1 }.path, wav])
        XCTAssertEqual(hop.status, 1)
        XCTAssertTrue(hop.error.contains("would exceed"), hop.error)
    }

    // MARK: - Silent wrong results

    func testS1NonFiniteWeightIsRefusedAtLoad() throws {
        let (_, url) = try additionModel()
        let file = try SafeTensors.read(url)
        var tensors = try file.entries.keys.sorted().map { ($0, try file.tensor($0, as: Float.self)) }
        let i = try XCTUnwrap(tensors.firstIndex { $0.0 == "decoder.output.bias" })
        var scalars = tensors[i].1.scalars
        scalars[3] = .nan
        tensors[i].1 = try Tensor(shape: tensors[i].1.shape, scalars: scalars)
        try SafeTensors.write(tensors, metadata: file.metadata, to: url)
        for arguments in [["info", url.path], ["decode", "--model", url.path, "1+1"]] {
            let r = try run(arguments)
            XCTAssertEqual(r.status, 1)
            XCTAssertTrue(r.error.contains("decoder.output.bias") && r.error.contains("non-finite"), r.error)
            XCTAssertEqual(r.output, "")
        }
    }

    func testS2NonFiniteOrHugeAudioIsRefused() throws {
        let nan = try writeFloatWAV("nan.wav", [Float](repeating: 0.1, count: 100) + [.nan] + [Float](repeating: 0.1, count: 4000))
        let huge = try writeFloatWAV("huge.wav", [Float](repeating: 1e30, count: 4000))
        let r = try run(["encode-audio", nan, huge, "--output", path("o")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.error.contains("sample nan at frame 100"), r.error)
        XCTAssertTrue(r.error.contains("sample 1e+30 at frame 0"), r.error)
        XCTAssertEqual((try? FileManager.default.contentsOfDirectory(atPath: path("o"))) ?? [], [])
    }

    /// A model whose output bias makes one control character certain: its outputs are printed
    /// escaped, one line per input (before, a newline in the alphabet split lines apart and an
    /// escape character reached the terminal).
    func testS4ControlCharactersAreEscapedInOutput() throws {
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("ab"))), embeddingSize: 4), encoderLayers: [6],
            target: .characters(CharacterEncoder(alphabet: ["\n", "\u{1B}", "\r"])), targetEmbeddingSize: 4, decoderHidden: 6,
            attention: .dot), using: RandomSource(seed: 3))
        let url = directory.appendingPathComponent("c.safetensors")
        // Indices: 0 padding, 1 start, 2 end, then the alphabet from 3.
        for (index, escape) in [(3, "\\n"), (4, "\\u{1B}"), (5, "\\r")] {
            var bias = [Float](repeating: 0, count: 6)
            bias[index] = 50
            model.namedParameters.first { $0.name == "decoder.output.bias" }?.parameter.data = try Tensor(shape: [6], scalars: bias)
            try model.save(to: url)
            for format in ["txt", "tsv"] {
                let r = try run(["decode", "--model", url.path, "--max-length", "3", "--format", format, "ab", "ba", "a"])
                XCTAssertEqual(r.status, 0, r.error)
                let lines = r.output.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
                let outputs = format == "txt" ? lines : lines.map { String($0.split(separator: "\t").last ?? "") }
                XCTAssertEqual(outputs, [String](repeating: String(repeating: escape, count: 3), count: 3), "\(format): \(lines)")
            }
        }
    }

    func testS5ImpossibleOptionsAreRefused() throws {
        let (_, url) = try additionModel()
        let cases: [(String, [String], String)] = [
            ("loom", ["decode", "--model", url.path, "--min-length", "50", "--max-length", "5", "1+1"], "--min-length must be in 0...5, got 50"),
            ("loom", ["decode", "--model", url.path, "--length-penalty", "nan", "1+1"], "--length-penalty must be a number in 0.0...10.0, got nan"),
            ("loom", ["demo", "--threads", "0"], "--threads must be in 1...256, got 0"),
            ("loom", ["demo", "--threads", "-1"], "--threads must be in 1...256, got -1"),
            ("addition", ["--quick", "--threads", "0", "--output", path("a")], "--threads must be in 1...256, got 0"),
            ("addition", ["--pairs", "1", "--output", path("a")], "--pairs must be in 20...10000000, got 1"),
        ]
        for (name, arguments, message) in cases {
            let r = try run(arguments, executable: name)
            XCTAssertEqual(r.status, 64, "\(arguments): \(r.error)")
            XCTAssertTrue(r.error.contains(message), "\(arguments): \(r.error)")
        }
    }

    func testS6NewRunStartsItsOwnLogAndResumingAFinishedRunKeepsItsLoss() throws {
        let common = ["demo", "--epochs", "2", "--threads", "1", "--run-dir", path("R")]
        XCTAssertEqual(try run(common).status, 0)
        XCTAssertEqual(try run(common).status, 0)
        let log = try String(contentsOfFile: path("R/metrics.jsonl"), encoding: .utf8)
        let epochs = log.split(separator: "\n").filter { $0.contains("\"kind\":\"epoch\"") }
        XCTAssertEqual(epochs.count, 2, log)
        XCTAssertTrue(epochs.allSatisfy { $0.contains("\"time\":") })
        let checkpointed = ["demo", "--epochs", "2", "--threads", "1", "--checkpoint-dir", path("D")]
        let first = try run(checkpointed)
        let again = try run(checkpointed + ["--resume"])
        XCTAssertEqual(again.status, 0, again.error)
        XCTAssertTrue(again.output.contains("had finished all 2 epochs"), again.output)
        func finalLoss(_ output: String) -> String? { output.split(separator: "\n").first { $0.hasPrefix("final loss") }.map(String.init) }
        XCTAssertNotNil(finalLoss(first.output))
        XCTAssertEqual(finalLoss(again.output), finalLoss(first.output))
        XCTAssertFalse(again.output.contains("final loss nan"), again.output)
    }

    // MARK: - Litter and misleading errors

    func testTStaleTemporariesOfDeadProcessesAreRemoved() throws {
        let output = directory.appendingPathComponent("o")
        try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
        // PID 4194305 is above Linux's largest PID, so no process has it; this test's own PID is alive.
        let stale = output.appendingPathComponent(".x.npy.4194305.17.partial")
        let live = output.appendingPathComponent(".y.npy.\(getpid()).18.partial")
        try Data("junk".utf8).write(to: stale)
        try Data("junk".utf8).write(to: live)
        let r = try run(["encode-audio", try writeWAV("x.wav", seconds: 0.2), "--output", output.path])
        XCTAssertEqual(r.status, 0, r.error)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale.path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: live.path))
    }

    func testM1ErrorsQuoteTheInputAsWritten() throws {
        let (_, url) = try additionModel()
        let r = try run(["decode", "--model", url.path, "16*535"])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.error.contains("at position 2 of \"16*535\""), r.error)
    }

    func testM4NegativeBeamNamesTheRange() throws {
        let (_, url) = try additionModel()
        let r = try run(["decode", "--model", url.path, "--beam", "-5", "1+1"])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.error.contains("--beam must be in 1...256, got -5"), r.error)
    }

    func testM5EmptyModelPathIsNamed() throws {
        for arguments in [["decode", "--model", "", "1+1"], ["info", ""]] {
            let r = try run(arguments)
            XCTAssertNotEqual(r.status, 0)
            XCTAssertFalse(r.error.contains("Is a directory"), r.error)
            XCTAssertTrue(r.error.contains("empty"), r.error)
        }
    }

    func testM6ZeroHertzWAVIsExplained() throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try writeWAV("z.wav", seconds: 0.1))))
        for i in 24..<28 { bytes[i] = 0 }
        try Data(bytes).write(to: directory.appendingPathComponent("z.wav"))
        let r = try run(["encode-audio", path("z.wav"), "--output", path("o")])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.error.contains("sample rate of 0 Hz"), r.error)
    }

    func testM7OutputUnderAFileIsAClearError() throws {
        try Data("f".utf8).write(to: directory.appendingPathComponent("file"))
        let recipe = try run(["--quick", "--output", path("file/run")], executable: "compare-xy")
        let encode = try run(["encode-audio", try writeWAV("x.wav", seconds: 0.1), "--output", path("file/o")])
        for r in [recipe, encode] {
            XCTAssertNotEqual(r.status, 0)
            XCTAssertFalse(r.error.contains("NSCocoaErrorDomain"), r.error)
            XCTAssertTrue(r.error.contains("is a file, not a directory"), r.error)
        }
    }
}
