import Foundation
import XCTest

/// Every recipe's quick mode, end to end: a real (small) training run whose report must clearly
/// beat chance, plus the saved model and plots it promises.
final class RecipeTests: XCTestCase {

    func runQuick(_ recipe: String, _ extra: [String] = []) throws -> (report: [String: Any], directory: URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("recipe-\(recipe)-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let (status, output) = try runExecutable(recipe, ["--quick", "--threads", "2", "--output", dir.path] + extra)
        XCTAssertEqual(status, 0, output)
        let data = try Data(contentsOf: dir.appendingPathComponent("report.json"))
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any], output)
        // Typed values under the keys every recipe shares.
        XCTAssertEqual(report["task"] as? String, recipe)
        XCTAssertNotNil(report["epochs"] as? Int, "\(report)")
        XCTAssertNotNil(report["wall_time_seconds"] as? Double, "\(report)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("metrics.jsonl").path)
                      || FileManager.default.fileExists(atPath: dir.appendingPathComponent("stateful/metrics.jsonl").path), "metrics log")
        return (report, dir)
    }

    /// A share in report.json (a number in 0...1) as a percentage; -1 when missing.
    func percentage(_ value: Any?) -> Double { (value as? Double).map { 100 * $0 } ?? -1 }

    func testAdditionQuick() throws {
        let (report, dir) = try runQuick("addition")
        // Chance: an exact 1-3 digit sum is about 1 in 200, a character about 1 in 10.
        XCTAssertGreaterThan(percentage(report["held_out_character_accuracy"]), 30, "\(report)")
        XCTAssertGreaterThan(percentage(report["held_out_exact_match"]), 3, "\(report)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("addition.safetensors").path))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("loss.svg").path))
    }

    func testCompareXYQuick() throws {
        let (report, _) = try runQuick("compare-xy")
        XCTAssertGreaterThan(percentage(report["training_accuracy"]), 90, "\(report)")
        XCTAssertGreaterThan(percentage(report["unseen_lengths_accuracy"]), 80, "chance is 1/3: \(report)")
    }

    func testAdditionRegressionQuick() throws {
        let (report, _) = try runQuick("addition-regression")
        // Rounding to the exact sum by chance (a spread of predictions over ~200 values): ~1%.
        XCTAssertGreaterThan(percentage(report["held_out_rounds_correct"]), 10, "\(report)")
    }

    func testTimeseriesQuick() throws {
        let (report, dir) = try runQuick("timeseries")
        // The walk's steps are -1, 0, 1: predicting no change scores 0.816; a broken model far worse.
        let stateful = report["stateful_rmse"] as? Double ?? 99
        XCTAssertLessThan(stateful, 1.5, "\(report)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("predictions.svg").path))
    }

    /// Synthesized speech (espeak-ng, installed by .ci/run) to digits, then `loom decode` on the
    /// saved model with test recordings: voices the model never heard.
    func testSpokenDigitsQuick() throws {
        let corpus = FileManager.default.temporaryDirectory.appendingPathComponent("spoken-digits-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: corpus) }
        let (report, dir) = try runQuick("spoken-digits", ["--corpus", corpus.path, "--engines", "espeak-ng,flite", "--unseen-engines", "festival"])
        // Chance: a 1-3 digit string guessed exactly about 1 time in 370; characters ~90% wrong.
        XCTAssertLessThan(percentage(report["test_character_error_rate"]), 40, "\(report)")
        XCTAssertGreaterThan(percentage(report["test_sequence_accuracy"]), 30, "\(report)")
        // A synthesizer never heard: far harder, still far above chance.
        XCTAssertEqual(report["unseen_engine_examples"] as? Int, 100, "\(report)")
        XCTAssertGreaterThan(percentage(report["unseen_engine_sequence_accuracy"]), 5, "\(report)")
        let voices = try String(contentsOf: corpus.appendingPathComponent("utterances.tsv"), encoding: .utf8).split(separator: "\n").dropFirst()
            .map { $0.split(separator: "\t").map(String.init) }
        for (split, engines) in [("train", ["espeak-ng", "flite"]), ("test", ["espeak-ng", "flite"]), ("unseen", ["festival"])] {
            XCTAssertEqual(Set(voices.filter { $0[0].hasPrefix(split + "/") }.map { $0[3] }), Set(engines), split)
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("alignment.svg").path))
        let test = try String(contentsOf: corpus.appendingPathComponent("test.tsv"), encoding: .utf8)
            .split(separator: "\n").prefix(20).map { $0.split(separator: "\t").map(String.init) }
        let (status, output) = try runLoom(["decode", "--model", dir.appendingPathComponent("spoken-digits.safetensors").path]
                                           + test.map { corpus.appendingPathComponent($0[0]).path })
        XCTAssertEqual(status, 0, output)
        let heard = output.split(separator: "\n").map(String.init)
        XCTAssertEqual(heard.count, test.count, output)
        XCTAssertGreaterThanOrEqual(zip(heard, test).filter { $0.0 == $0.1[1] }.count, 6, "decoded \(heard) for \(test.map { $0[1] })")
    }

    /// The small-data settings are checked before any work: a bad value is named at once.
    func testSpokenDigitsRefusesBadRegularization() throws {
        for (arguments, named) in [(["--spec-augment", "heavy"], "--spec-augment"), (["--ctc-weight", "1"], "--ctc-weight"),
                                   (["--deltas", "3"], "--deltas"), (["--dropout", "-0.1"], "--dropout"), (["--normalization", "none"], "--normalization"),
                                   (["--noise-snr", "20:10"], "--noise-snr"), (["--noise-snr", "loud"], "--noise-snr"), (["--gain-db", "-1"], "--gain-db"),
                                   (["--engines", "espeak-ng,sam"], "--engines"), (["--engines", "flite", "--unseen-engines", "flite"], "--unseen-engines")] {
            let (status, output) = try runExecutable("spoken-digits", arguments + ["--output", "/nonexistent/never-written"])
            XCTAssertEqual(status, 64, output)
            XCTAssertTrue(output.contains(named), output)
        }
    }

    /// CMUdict from Debian's pocketsphinx-en-us (installed by .ci/run): 4,000 words, a small
    /// model. Chance is far off: a word is right only when every phone is; a model that learned
    /// nothing gets every word wrong and most phones.
    func testG2PQuick() throws {
        let (report, dir) = try runQuick("g2p")
        XCTAssertLessThan(percentage(report["test_word_error_rate_greedy"]), 85, "\(report)")
        XCTAssertLessThan(percentage(report["test_phone_error_rate_beam"]), 35, "\(report)")
        XCTAssertGreaterThan(report["test_words"] as? Int ?? 0, 300, "\(report)")
        let decoded = try runLoom(["decode", "--model", dir.appendingPathComponent("g2p.safetensors").path, "loom", "phone"])
        XCTAssertEqual(decoded.status, 0, decoded.output)
        let lines = decoded.output.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, decoded.output)
        // Phones: capital ARPAbet symbols separated by spaces.
        XCTAssertTrue(lines.allSatisfy { !$0.isEmpty && $0.split(separator: " ").allSatisfy { $0.allSatisfy(\.isUppercase) } }, decoded.output)
    }
}
