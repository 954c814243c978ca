import Foundation
import Loom
import XCTest

/// `loom train`, `loom evaluate` and `loom decode` on your own data, through the real binary.
final class TrainCommandTests: TemporaryDirectoryTestCase {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func json(_ file: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
    }

    /// The committed example: a configuration file plus an overriding flag, then evaluate; the
    /// exact match in evaluation.json equals one computed here from `loom decode`'s outputs, and
    /// the model still decodes after being moved to another folder.
    func testTrainEvaluateDecodeOnTheCommittedPairs() throws {
        let config = root.appendingPathComponent("corpora/numbers/run.json").path
        let train = try runLoom(["train", "--config", config, "--epochs", "2", "--output", path("run")])
        XCTAssertEqual(train.status, 0, train.output)
        let written = try json(path("run/run-config.json"))
        XCTAssertEqual((written["training"] as? [String: Any])?["epochs"] as? Int, 2, "the flag overrides the file")
        XCTAssertEqual((written["vocabulary"] as? [String: Any])?["source"] as? String, "words")
        let report = try json(path("run/report.json"))
        XCTAssertEqual(report["epochs"] as? Int, 2)
        XCTAssertEqual(report["train_examples"] as? Int, 720)
        XCTAssertEqual(report["validation_examples"] as? Int, 80)

        let test = root.appendingPathComponent("corpora/numbers/test.tsv").path
        let evaluation = try runLoom(["evaluate", "--model", path("run/model.safetensors"), "--test", test, "--output", path("eval")])
        XCTAssertEqual(evaluation.status, 0, evaluation.output)
        let figures = try json(path("eval/evaluation.json"))
        let pairs = try String(contentsOfFile: test, encoding: .utf8).split(separator: "\n").map { $0.split(separator: "\t").map(String.init) }
        // Moved elsewhere, the model decodes with the vocabularies stored inside it.
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("moved"), withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: path("run/model.safetensors"), toPath: path("moved/m.safetensors"))
        let process = Process()
        process.executableURL = builtExecutable("loom")
        process.arguments = ["decode", "--model", path("moved/m.safetensors")]
        let (input, output) = (Pipe(), Pipe())
        (process.standardInput, process.standardOutput) = (input, output)
        try process.run()
        input.fileHandleForWriting.write(Data(pairs.map { $0[0] }.joined(separator: "\n").utf8 + [10]))
        try input.fileHandleForWriting.close()
        let decoded = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        process.waitUntilExit()
        XCTAssertEqual(decoded.count, pairs.count)
        let exact = Double(zip(decoded, pairs).filter { String($0.0) == $0.1[1] }.count) / Double(pairs.count)
        XCTAssertEqual(figures["exact_match"] as? Double ?? -1, exact, accuracy: 1e-12)
        XCTAssertEqual(figures["examples"] as? Int, 200)
        let errors = try String(contentsOfFile: path("eval/errors.tsv"), encoding: .utf8).split(separator: "\n").count - 1
        XCTAssertEqual(errors, pairs.count - Int((exact * Double(pairs.count)).rounded()))
    }

    /// Every kind of malformed line is named with its file and line; --set data.skip_bad_lines
    /// leaves them out and counts them.
    func testMalformedLinesAreNamedWithFileAndLine() throws {
        let good = "one\t1\ntwo\t2\nthree\t3\nfour\t4\n"
        let cases: [(String, [UInt8], String)] = [
            ("no tab", Array((good + "five 5\n").utf8), "line 5: no tab"),
            ("two tabs", Array((good + "five\t5\t6\n").utf8), "line 5: 2 tabs"),
            ("empty side", Array((good + "five\t\n").utf8), "line 5: empty target"),
            ("invalid UTF-8", Array(good.utf8) + [0x66, 0xFF, 0x09, 0x35, 0x0A], "line 5: not valid UTF-8"),
            ("byte-order mark", [0xEF, 0xBB, 0xBF] + Array(good.utf8), "line 1: starts with a byte-order mark"),
            ("CRLF", Array(good.replacingOccurrences(of: "\n", with: "\r\n").utf8), "line 1: ends with CR"),
        ]
        for (name, bytes, message) in cases {
            try Data(bytes).write(to: directory.appendingPathComponent("bad.tsv"))
            let r = try runLoom(["train", "--train", path("bad.tsv"), "--epochs", "1", "--output", path("out")])
            XCTAssertEqual(r.status, 1, "\(name): \(r.output)")
            XCTAssertTrue(r.output.contains("bad.tsv \(message)"), "\(name): \(r.output)")
        }
        try Data((good + "five 5\nsix\t6\t6\n").utf8).write(to: directory.appendingPathComponent("bad.tsv"))
        let skipped = try runLoom(["train", "--train", path("bad.tsv"), "--epochs", "1", "--set", "data.skip_bad_lines=true",
                                   "--set", "model.encoder_layers=[8]", "--set", "model.decoder_hidden=8", "--output", path("out")])
        XCTAssertEqual(skipped.status, 0, skipped.output)
        XCTAssertTrue(skipped.output.contains("skipped 2 malformed lines"), skipped.output)
        let unknownKey = try runLoom(["train", "--train", path("bad.tsv"), "--set", "training.epoch=3"])
        XCTAssertEqual(unknownKey.status, 64)
        XCTAssertTrue(unknownKey.output.contains("training.epoch: unknown key"), unknownKey.output)
        try Data("{\n  \"training\": {\n    \"batch_size\": \"big\"\n  }\n}\n".utf8).write(to: directory.appendingPathComponent("c.json"))
        let wrongType = try runLoom(["train", "--config", path("c.json"), "--train", path("bad.tsv")])
        XCTAssertTrue(wrongType.output.contains("c.json line 3: training.batch_size: expected an integer"), wrongType.output)
        let missing = try runLoom(["evaluate", "--model", path("none.safetensors"), "--test", path("bad.tsv")])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.output.contains("none.safetensors"), missing.output)
    }

    /// Test sources with characters never seen in training are encoded as unknown and counted.
    func testUnseenSymbolsAreCounted() throws {
        try Data("ab\tba\nba\tab\naab\tbaa\nbba\tabb\n".utf8).write(to: directory.appendingPathComponent("train.tsv"))
        try Data("abc\tcba\nab\tba\nxy\tyx\n".utf8).write(to: directory.appendingPathComponent("test.tsv"))
        let train = try runLoom(["train", "--train", path("train.tsv"), "--epochs", "1", "--set", "data.validation_fraction=0",
                                 "--set", "model.encoder_layers=[8]", "--set", "model.decoder_hidden=8", "--output", path("run")])
        XCTAssertEqual(train.status, 0, train.output)
        let evaluation = try runLoom(["evaluate", "--model", path("run/model.safetensors"), "--test", path("test.tsv")])
        XCTAssertEqual(evaluation.status, 0, evaluation.output)
        XCTAssertEqual(try json(path("run/evaluation.json"))["sources_with_unknown_symbols"] as? Int, 2)
        // A shared vocabulary: one alphabet learned from both sides, the same in source and target.
        try Data("ab\tcd\nba\tdc\n".utf8).write(to: directory.appendingPathComponent("pairs.tsv"))
        let shared = try runLoom(["train", "--train", path("pairs.tsv"), "--epochs", "1", "--set", "data.validation_fraction=0",
                                  "--set", "vocabulary.shared=true", "--set", "model.encoder_layers=[8]", "--set", "model.decoder_hidden=8",
                                  "--output", path("shared")])
        XCTAssertEqual(shared.status, 0, shared.output)
        let info = try runLoom(["info", path("shared/model.safetensors")])
        XCTAssertTrue(info.output.contains("source: text, characters, 4 symbols") && info.output.contains("target: characters, 4 symbols"), info.output)
    }

    /// A small manifest of recordings (two tones standing for "a" and "b") trains and evaluates
    /// through the same path.
    func testAudioManifestTrainsAndEvaluates() throws {
        var lines: [String] = []
        for i in 0..<12 {
            let (frequency, label) = i % 2 == 0 ? (300.0, "a") : (1200.0, "b")
            let samples = (0..<4000).map { Float(0.4 * sin(2 * Double.pi * frequency * Double($0) / 8000)) }
            try wavData(samples, rate: 8000).write(to: directory.appendingPathComponent("tone\(i).wav"))
            lines.append("tone\(i).wav\t\(label)")
        }
        try Data((["path\ttranscript"] + lines).joined(separator: "\n").utf8 + [10]).write(to: directory.appendingPathComponent("m.tsv"))
        // With deltas and delta-deltas, global normalization, SpecAugment masks (LD) and waveform
        // augmentation (speed, noise, gain) in training.
        let train = try runLoom(["train", "--train", path("m.tsv"), "--epochs", "2", "--set", "data.kind=\"audio\"", "--set", "model.mels=16",
                                 "--set", "model.encoder_layers=[12]", "--set", "model.decoder_hidden=12", "--set", "data.validation_fraction=0.25",
                                 "--set", "training.spec_augment=\"ld\"", "--set", "model.deltas=2", "--set", "model.feature_normalization=\"global\"",
                                 "--set", "training.speed_perturbation=true", "--set", "training.noise_snr=[10, 20]", "--set", "training.gain_db=6",
                                 "--output", path("run")])
        XCTAssertEqual(train.status, 0, train.output)
        let info = try runLoom(["info", path("run/model.safetensors")])
        XCTAssertTrue(info.output.contains("mel 48 features with deltas and delta-deltas") && info.output.contains("global normalization"), info.output)
        // Masks are for audio features: a text run with them is refused, naming the key.
        let text = try runLoom(["train", "--train", path("m.tsv"), "--set", "training.spec_augment=\"ld\"", "--output", path("text")])
        XCTAssertEqual(text.status, 64, text.output)
        XCTAssertTrue(text.output.contains("training.spec_augment: masks audio features"), text.output)
        let textSpeed = try runLoom(["train", "--train", path("m.tsv"), "--set", "training.speed_perturbation=true", "--output", path("text")])
        XCTAssertEqual(textSpeed.status, 64, textSpeed.output)
        XCTAssertTrue(textSpeed.output.contains("training.speed_perturbation: speed, noise, gain and the channel change audio"), textSpeed.output)
        for (setting, message) in [("training.telephone=1.5", "training.telephone"), ("training.noise_colors=[\"purple\"]", "training.noise_colors"),
                                   ("training.silence_padding=[0.5, 0.1]", "training.silence_padding")] {
            let bad = try runLoom(["train", "--train", path("m.tsv"), "--set", "data.kind=\"audio\"", "--set", setting, "--output", path("bad")])
            XCTAssertEqual(bad.status, 64, bad.output)
            XCTAssertTrue(bad.output.contains(message), bad.output)
        }
        let backwards = try runLoom(["train", "--train", path("m.tsv"), "--set", "data.kind=\"audio\"", "--set", "training.noise_snr=[20, 10]",
                                     "--output", path("backwards")])
        XCTAssertEqual(backwards.status, 64, backwards.output)
        XCTAssertTrue(backwards.output.contains("training.noise_snr: must be [low, high]"), backwards.output)
        let evaluation = try runLoom(["evaluate", "--model", path("run/model.safetensors"), "--test", path("m.tsv")])
        XCTAssertEqual(evaluation.status, 0, evaluation.output)
        let figures = try json(path("run/evaluation.json"))
        XCTAssertEqual(figures["examples"] as? Int, 12)
        let wrong = try String(contentsOfFile: path("run/errors.tsv"), encoding: .utf8).split(separator: "\n").count - 1
        XCTAssertEqual(figures["exact_match"] as? Double ?? -1, Double(12 - wrong) / 12, accuracy: 1e-12)
        // A manifest line whose audio does not decode is named with its line.
        try Data("tone0.wav\ta\nnope.wav\tb\n".utf8).write(to: directory.appendingPathComponent("bad.tsv"))
        let bad = try runLoom(["evaluate", "--model", path("run/model.safetensors"), "--test", path("bad.tsv")])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.output.contains("bad.tsv line 2") && bad.output.contains("nope.wav"), bad.output)
    }

    /// A run killed with SIGKILL after a checkpoint resumes to the same final figures as an
    /// uninterrupted run.
    func testKilledRunResumesToTheSameResult() throws {
        let config = root.appendingPathComponent("corpora/numbers/run.json").path
        let common = ["train", "--config", config, "--epochs", "2", "--threads", "1", "--checkpoint-every", "4", "--set", "training.patience=null"]
        let whole = try runLoom(common + ["--output", path("whole")])
        XCTAssertEqual(whole.status, 0, whole.output)
        _ = try interruptAtFirstCheckpoint("loom", common + ["--output", path("cut")], checkpoints: directory.appendingPathComponent("cut/checkpoints"),
                                           signal: SIGKILL)
        let resumed = try runLoom(common + ["--output", path("cut"), "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        let (a, b) = (try json(path("whole/report.json")), try json(path("cut/report.json")))
        XCTAssertEqual(a["steps"] as? Int, b["steps"] as? Int)
        let (va, vb) = (a["validation"] as? [String: Any] ?? [:], b["validation"] as? [String: Any] ?? [:])
        for key in ["exact_match", "character_error_rate", "word_error_rate", "bleu"] {
            XCTAssertEqual(va[key] as? Double, vb[key] as? Double, key)
        }
    }

    /// training.weight_decay reaches the optimizer (AdamW): the same run with it ends with other
    /// weights; 0 is plain Adam, bit for bit the default run.
    func testWeightDecayReachesTraining() throws {
        let config = root.appendingPathComponent("corpora/numbers/run.json").path
        let common = ["train", "--config", config, "--epochs", "1", "--threads", "1", "--set", "model.encoder_layers=[16]", "--set", "model.decoder_hidden=16"]
        for (name, extra) in [("plain", [String]()), ("zero", ["--set", "training.weight_decay=0"]), ("decay", ["--set", "training.weight_decay=0.5"])] {
            let run = try runLoom(common + extra + ["--output", path(name)])
            XCTAssertEqual(run.status, 0, run.output)
        }
        let weights = try ["plain", "zero", "decay"].map { try SafeTensors.read(URL(fileURLWithPath: path("\($0)/model.safetensors"))) }
        let names = weights[0].entries.keys.sorted()
        func values(_ file: SafeTensors) throws -> [[Float]] { try names.map { try file.tensor($0, as: Float.self).scalars } }
        XCTAssertEqual(try values(weights[0]), try values(weights[1]))
        XCTAssertNotEqual(try values(weights[0]), try values(weights[2]))
        let refused = try runLoom(common + ["--set", "training.weight_decay=2", "--output", path("bad")])
        XCTAssertEqual(refused.status, 64, refused.output)
        XCTAssertTrue(refused.output.contains("training.weight_decay"), refused.output)
    }

    /// training.weight_average_decay: the kept weights are the average's (they differ from a run
    /// without it, whose steps are the same); out-of-range settings name their key.
    func testWeightAverageReachesTheModelAndSettingsAreChecked() throws {
        let config = root.appendingPathComponent("corpora/numbers/run.json").path
        let common = ["train", "--config", config, "--epochs", "1", "--threads", "1", "--set", "model.encoder_layers=[16]", "--set", "model.decoder_hidden=16"]
        for (name, extra) in [("plain", [String]()), ("average", ["--set", "training.weight_average_decay=0.99"])] {
            let run = try runLoom(common + extra + ["--output", path(name)])
            XCTAssertEqual(run.status, 0, run.output)
        }
        let weights = try ["plain", "average"].map { try SafeTensors.read(URL(fileURLWithPath: path("\($0)/model.safetensors"))) }
        let names = weights[0].entries.keys.sorted()
        func values(_ file: SafeTensors) throws -> [[Float]] { try names.map { try file.tensor($0, as: Float.self).scalars } }
        XCTAssertNotEqual(try values(weights[0]), try values(weights[1]))
        for (setting, key) in [("training.weight_average_decay=1", "training.weight_average_decay"),
                               ("training.time_warp=5", "training.time_warp"), ("training.reverberation=2", "training.reverberation")] {
            let refused = try runLoom(common + ["--set", setting, "--output", path("bad")])
            XCTAssertEqual(refused.status, 64, refused.output)
            XCTAssertTrue(refused.output.contains(key), refused.output)
        }
    }

    /// Subword vocabularies: SentencePiece trained by `loom train` on the training side, stored
    /// in the model file, so the model decodes from another folder with nothing else.
    func testSentencePieceVocabularyTravelsInTheModelFile() throws {
        let config = root.appendingPathComponent("corpora/numbers/run.json").path
        let train = try runLoom(["train", "--config", config, "--epochs", "1", "--set", "vocabulary.source=\"pieces\"",
                                 "--set", "vocabulary.pieces_size=40", "--set", "vocabulary.pieces_type=\"bpe\"", "--output", path("run")])
        XCTAssertEqual(train.status, 0, train.output)
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("elsewhere"), withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: path("run/model.safetensors"), toPath: path("elsewhere/m.safetensors"))
        let info = try runLoom(["info", path("elsewhere/m.safetensors")])
        XCTAssertTrue(info.output.contains("SentencePiece bpe subwords"), info.output)
        let decoded = try runLoom(["decode", "--model", path("elsewhere/m.safetensors"), "four hundred two", "twelve"])
        XCTAssertEqual(decoded.status, 0, decoded.output)
        XCTAssertEqual(decoded.output.split(separator: "\n", omittingEmptySubsequences: false).count, 3, decoded.output)
    }
}
