import Foundation
import Loom
import XCTest

/// The edges a new user meets first (issue 25): flags, help, info on every file, plots, and a
/// recipe that is interrupted and resumed.
final class UserEdgesTests: TemporaryDirectoryTestCase {
    func testVersionAndSharedFlags() throws {
        let version = try runLoom(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertEqual(version.output.trimmingCharacters(in: .whitespacesAndNewlines), LoomVersion.current)
        // Every recipe takes the same flags and shows its defaults as values.
        for (recipe, batch) in [("addition", 128), ("compare-xy", 32), ("addition-regression", 64), ("timeseries", 32), ("spoken-digits", 32), ("g2p", 64)] {
            let help = try runExecutable(recipe, ["--help"])
            for flag in ["--output", "--epochs", "--batch-size", "--learning-rate", "--checkpoint-every", "--resume", "--threads", "--seed"] {
                XCTAssertTrue(help.output.contains(flag), "\(recipe) --help lacks \(flag)")
            }
            XCTAssertTrue(help.output.contains("(default: \(batch))"), "\(recipe): \(help.output)")
            XCTAssertFalse(help.output.contains("the recipe's"), help.output)
        }
        XCTAssertTrue(try runExecutable("spoken-digits", ["--help"]).output.contains("--mels"))
        XCTAssertTrue(try runLoom(["demo", "--help"]).output.contains("--output"))
        // Help text wraps to the terminal width: compare with single spaces.
        let decodeHelp = try runLoom(["decode", "--help"]).output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(decodeHelp.contains("values: txt, tsv, json"), decodeHelp)
        let presets = try runLoom(["encode-audio", "--help"]).output
        for preset in ["librosa:", "torchaudio:", "wolfram:", "speech:"] { XCTAssertTrue(presets.contains(preset), presets) }
    }

    /// A bad value of an encode-audio option shows encode-audio's usage, not the top level's.
    func testSubcommandErrorsShowTheirOwnUsage() throws {
        let r = try runLoom(["encode-audio", "x.wav", "--log", "bogus", "--output", directory.path])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.output.contains("--log bogus"), r.output)
        XCTAssertTrue(r.output.contains("Usage: loom encode-audio"), r.output)
    }

    func testDecodeKeepsEveryFormatAlignedAndRefusesNBestAsText() throws {
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("12+"))), embeddingSize: 4), encoderLayers: [6],
            target: .characters(CharacterEncoder(alphabet: Array("12"))), targetEmbeddingSize: 4, decoderHidden: 6), using: RandomSource(seed: 1))
        let url = directory.appendingPathComponent("m.safetensors")
        try model.save(to: url)
        let tsv = try runLoom(["decode", "--model", url.path, "--max-length", "3", "--format", "tsv", "1+2", "1x", "2"])
        // Standard error is mixed in here: its error lines and the note on outputs cut at --max-length.
        let lines = tsv.output.split(separator: "\n").filter { !$0.hasPrefix("error:") && !$0.hasPrefix("note:") }
        XCTAssertEqual(lines.count, 3, tsv.output)
        XCTAssertTrue(lines[1].hasPrefix("1x\terror\t\t"), String(lines[1]))
        XCTAssertTrue(tsv.output.contains("error: input 2 (1x)"), tsv.output)
        let json = try runLoom(["decode", "--model", url.path, "--max-length", "3", "--format", "json", "1+2", "1x"])
        let objects = json.output.split(separator: "\n").filter { $0.hasPrefix("{") }
        XCTAssertEqual(objects.count, 2)
        XCTAssertTrue(objects[1].contains("\"error\""), String(objects[1]))
        let nbest = try runLoom(["decode", "--model", url.path, "--beam", "3", "--nbest", "2", "1+2"])
        XCTAssertEqual(nbest.status, 64)
        XCTAssertTrue(nbest.output.contains("--format tsv or json"), nbest.output)
    }

    /// `loom info` on the weights-only files of compare-xy and on a checkpoint.
    func testInfoDescribesEveryFileLoomWrites() throws {
        let run = directory.appendingPathComponent("xy")
        let recipe = try runExecutable("compare-xy", ["--quick", "--epochs", "2", "--output", run.path])
        XCTAssertEqual(recipe.status, 0, recipe.output)
        let model = run.appendingPathComponent("compare-xy.safetensors").path
        let info = try runLoom(["info", model])
        XCTAssertEqual(info.status, 0, info.output)
        XCTAssertTrue(info.output.contains("sequence-to-one model") && info.output.contains("training task: compare-xy")
                      && info.output.contains("classes Less, Equal, Greater") && info.output.contains("head.weight [3, 32]"), info.output)
        // And `loom decode` applies it: one class per input, the bad input reported in its place.
        let decoded = try runLoom(["decode", "--model", model, "--format", "tsv", "xxy", "yyyx", "xy", "xz"])
        XCTAssertEqual(decoded.status, 1, decoded.output)
        let rows = decoded.output.split(separator: "\n").filter { !$0.hasPrefix("error:") }.map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        XCTAssertEqual(rows.count, 4, decoded.output)
        XCTAssertTrue(rows.prefix(3).allSatisfy { ["Less", "Equal", "Greater"].contains(String($0[3])) }, decoded.output)
        XCTAssertEqual(rows[3][1], "error")
        // A checkpoint of a run, and a weights-only safetensors file, are described too.
        let weightsOnly = directory.appendingPathComponent("w.safetensors")
        try SafeTensors.write([("w", try Tensor<Float>.ones([2, 3]))], metadata: ["note": "mine"], to: weightsOnly)
        let plain = try runLoom(["info", weightsOnly.path])
        XCTAssertTrue(plain.output.contains("weights only") && plain.output.contains("w F32 [2, 3]") && plain.output.contains("note: mine"), plain.output)
        let checkpoint = try XCTUnwrap(Trainer<Float, Int, Int>.checkpoints(in: run.appendingPathComponent("checkpoints")).last)
        let described = try runLoom(["info", checkpoint.path])
        XCTAssertEqual(described.status, 0, described.output)
        XCTAssertTrue(described.output.contains("checkpoint") && described.output.contains("epoch: 2"), described.output)
        // The regression recipe's file prints a number per input.
        let regression = directory.appendingPathComponent("regression")
        XCTAssertEqual(try runExecutable("addition-regression", ["--quick", "--epochs", "2", "--output", regression.path]).status, 0)
        let sums = try runLoom(["decode", "--model", regression.appendingPathComponent("addition-regression.safetensors").path, "12+30", "7+8"])
        XCTAssertEqual(sums.status, 0, sums.output)
        XCTAssertTrue(sums.output.split(separator: "\n").allSatisfy { Double($0) != nil }, sums.output)
    }

    /// Ctrl-C ends a recipe with a checkpoint at that step (status 130); --resume finishes the run
    /// with the same result as an uninterrupted one.
    func testInterruptedRecipeResumesToTheSameResult() throws {
        let common = ["--quick", "--epochs", "3", "--threads", "1", "--checkpoint-every", "1"]
        let whole = try runExecutable("addition", common + ["--output", directory.appendingPathComponent("whole").path])
        XCTAssertEqual(whole.status, 0, whole.output)
        let output = directory.appendingPathComponent("cut")
        let process = try interruptAtFirstCheckpoint("addition", common + ["--output", output.path],
                                                     checkpoints: output.appendingPathComponent("checkpoints"), signal: SIGINT)
        XCTAssertEqual(process.terminationStatus, 130, "stopped by the signal with a checkpoint")
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.appendingPathComponent("report.json").path))
        let resumed = try runExecutable("addition", common + ["--output", output.path, "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resumed from checkpoint-"), resumed.output)
        func report(_ dir: URL) throws -> [String: Any] {
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("report.json"))) as? [String: Any])
        }
        let (a, b) = (try report(directory.appendingPathComponent("whole")), try report(output))
        XCTAssertEqual(a["held_out_exact_match"] as? Double, b["held_out_exact_match"] as? Double)
        XCTAssertEqual(a["held_out_character_accuracy"] as? Double, b["held_out_character_accuracy"] as? Double)
    }
}
