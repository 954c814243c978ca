import Foundation
import Loom
import RecipeSupport
import XCTest

/// The g2p recipe's preparation: the CMUdict format and the split by word.
final class G2PTests: TemporaryDirectoryTestCase {

    func testDictionaryFormatVariantsStressAndBadLines() throws {
        let text = """
            ;;; a comment line
            LOOM  L UW1 M
            read R IY1 D
            read(2) R EH1 D
            read(3) R IY0 D  # differs from read only in stress
            hello\tHH AH0 L OW1

            c3 S IY1 TH R IY1
            nophones
            bad L uw M
            apple AE1 P AH0 L\r
            """
        var bytes = Array(text.utf8)
        bytes += [0x0A, 0x66, 0xFF, 0x20, 0x46, 0x0A]   // "f\xFF F": not UTF-8, line 12
        let d = PronouncingDictionary.parse(Data(bytes), file: "test.dict")
        XCTAssertEqual(d.words.map(\.word), ["loom", "read", "hello", "apple"])
        XCTAssertEqual(d.words[1].pronunciations, ["R IY D", "R EH D"], "variants kept in order, stress stripped, duplicates merged")
        XCTAssertEqual(d.words[0].pronunciations, ["L UW M"])
        XCTAssertEqual(d.words[3].pronunciations, ["AE P AH L"], "a CR line end is tolerated")
        XCTAssertEqual(d.outsideAlphabet, ["c3"])
        XCTAssertEqual(d.malformed.map(\.line), [9, 10, 12])
        XCTAssertTrue(d.malformed[0].description.hasPrefix("test.dict line 9: no phones"), d.malformed[0].description)
        XCTAssertTrue(d.malformed[1].description.contains("\"uw\" is not an ARPAbet phone"), d.malformed[1].description)
        XCTAssertTrue(d.malformed[2].description.contains("not valid UTF-8"))
        XCTAssertEqual(d.phones, ["AE", "AH", "D", "EH", "HH", "IY", "L", "M", "OW", "P", "R", "UW"])
    }

    /// FNV-1a of the word modulo 100 (values computed independently in Python): 0-9 test,
    /// 10-12 validation, the rest training, whatever the order or variants in the file.
    func testSplitByWordIsAStableHash() {
        XCTAssertEqual(FNV1a.hash("a"), 0xaf63_dc4c_8601_ec8c, "the published FNV-1a 64 test vector")
        XCTAssertEqual(FNV1a.hash("foobar"), 0x8594_4171_f739_67e8, "the published FNV-1a 64 test vector")
        XCTAssertEqual(PronouncingDictionary.part(of: "read"), .test)          // 1
        XCTAssertEqual(PronouncingDictionary.part(of: "aardema"), .validation)
        XCTAssertEqual(PronouncingDictionary.part(of: "loom"), .train)         // 48
        let words = (0..<20_000).map { "w\($0)" }
        let test = words.filter { PronouncingDictionary.part(of: $0) == .test }.count
        let validation = words.filter { PronouncingDictionary.part(of: $0) == .validation }.count
        // Binomial spread: 2,000 +- 42 and 600 +- 24 (one standard deviation); 5 sigma allowed.
        XCTAssertEqual(Double(test), 2000, accuracy: 5 * 42)
        XCTAssertEqual(Double(validation), 600, accuracy: 5 * 24)
    }

    func testMissingOrUnusableDictionaryIsAClearError() throws {
        let missing = try runExecutable("g2p", ["--dictionary", path("none.dict"), "--output", path("run")])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.output.contains("none.dict"), missing.output)
        // Too few words for every part of the split: said, nothing trained.
        try Data("loom L UW M\nread R IY D\n".utf8).write(to: directory.appendingPathComponent("tiny.dict"))
        let tiny = try runExecutable("g2p", ["--dictionary", path("tiny.dict"), "--output", path("run")])
        XCTAssertNotEqual(tiny.status, 0)
        XCTAssertTrue(tiny.output.contains("no words fall in the"), tiny.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("run/g2p.safetensors")))
    }
}
