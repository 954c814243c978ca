import Foundation
@testable import LoomText
import XCTest

/// Corpus BLEU and the 13a tokenization against sacreBLEU 2.6.0 (Tests/Fixtures/bleu_sacrebleu.json,
/// written by scripts/make_bleu_fixture.py from the corpora in that script).
final class BLEUTests: XCTestCase {
    struct Fixture: Decodable {
        struct Corpus: Decodable {
            var name: String, hypotheses: [String], references: [String], score: Double, counts: [Int], totals: [Int], bp: Double
            var sys_len: Int, ref_len: Int
        }
        struct MultiReference: Decodable {
            var name: String, hypotheses: [String], streams: [[String]], score: Double, counts: [Int], totals: [Int], bp: Double
            var sys_len: Int, ref_len: Int
        }
        var corpora: [Corpus]
        var tokenized: [[String]]
        var multi_reference: [MultiReference]
    }

    func fixture() throws -> Fixture {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/bleu_sacrebleu.json")
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func testTokenizationMatchesSacreBLEU13a() throws {
        for pair in try fixture().tokenized {
            XCTAssertEqual(BLEU.tokenize13a(pair[0]), pair[1], "tokenizing \(pair[0])")
        }
    }

    func testCorpusBLEUMatchesSacreBLEU() throws {
        for corpus in try fixture().corpora {
            let score = BLEU.corpus(hypotheses: corpus.hypotheses, references: corpus.references)
            XCTAssertEqual(score.correct, corpus.counts, corpus.name)
            XCTAssertEqual(score.total, corpus.totals, corpus.name)
            XCTAssertEqual(score.hypothesisLength, corpus.sys_len, corpus.name)
            XCTAssertEqual(score.referenceLength, corpus.ref_len, corpus.name)
            XCTAssertEqual(score.brevityPenalty, corpus.bp, accuracy: 1e-12, corpus.name)
            // The same operations in Double in the same order: equal to rounding of a few ulps of 100.
            XCTAssertEqual(score.score, corpus.score, accuracy: 1e-9, corpus.name)
        }
    }

    /// Several references per segment, given to sacreBLEU as reference streams.
    func testMultiReferenceBLEUMatchesSacreBLEU() throws {
        for corpus in try fixture().multi_reference {
            let sets = corpus.hypotheses.indices.map { i in corpus.streams.map { $0[i] } }
            let score = BLEU.corpus(hypotheses: corpus.hypotheses, referenceSets: sets)
            XCTAssertEqual(score.correct, corpus.counts, corpus.name)
            XCTAssertEqual(score.total, corpus.totals, corpus.name)
            XCTAssertEqual(score.referenceLength, corpus.ref_len, corpus.name)
            XCTAssertEqual(score.brevityPenalty, corpus.bp, accuracy: 1e-12, corpus.name)
            XCTAssertEqual(score.score, corpus.score, accuracy: 1e-9, corpus.name)
        }
    }
}
