import Foundation
@testable import LoomSeq2Seq
import LoomText
import XCTest

/// Scoring against several accepted references (pronunciation variants, several translations).
final class EvaluationTests: XCTestCase {

    func testAnOutputIsRightWhenItEqualsAnyReference() {
        let m = EvaluationMetrics(hypotheses: ["R EH D", "T AH M EY T OW", "K AE T S"],
                                  referenceSets: [["R IY D", "R EH D"], ["T AH M AA T OW", "T AH M EY T OW"], ["K AE T"]])
        XCTAssertEqual(m.examples, 3)
        XCTAssertEqual(m.exact_match, 2.0 / 3.0, accuracy: 1e-15)
        // Phones against the closest variant: 0 + 0 + 1 insertion, over 3 + 6 + 3 phones.
        XCTAssertEqual(m.word_error_rate, 1.0 / 12.0, accuracy: 1e-15)
        // Single references give the figures of the one-reference form.
        let one = EvaluationMetrics(hypotheses: ["ab", "cd"], references: ["ab", "ce"])
        let sets = EvaluationMetrics(hypotheses: ["ab", "cd"], referenceSets: [["ab"], ["ce"]])
        XCTAssertEqual(one, sets)
        XCTAssertEqual(one.character_error_rate, ErrorRate.characters(hypotheses: ["ab", "cd"], references: ["ab", "ce"]))
    }

    /// The closest reference is the one with fewest edits (the first on a tie), and its length
    /// is the denominator: "abc" against {"abd" (1 edit, 3 long), "abcde" (2 edits)} is 1/3;
    /// against {"xbc" (1 edit, 3), "abcd" (1 edit, 4)} the first wins: 1/3.
    func testClosestReferenceChoosesTheFewestEdits() {
        XCTAssertEqual(ErrorRate.characters(hypotheses: ["abc"], referenceSets: [["abcde", "abd"]]), 1.0 / 3.0, accuracy: 1e-15)
        XCTAssertEqual(ErrorRate.characters(hypotheses: ["abc"], referenceSets: [["xbc", "abcd"]]), 1.0 / 3.0, accuracy: 1e-15)
        XCTAssertEqual(ErrorRate.characters(hypotheses: ["abc"], referenceSets: [["abcd", "xbc"]]), 1.0 / 4.0, accuracy: 1e-15)
    }

    func testSameSourcesAreGroupedIntoOneItem() {
        let examples = [("read", "R IY D", 1), ("loom", "L UW M", 2), ("read", "R EH D", 3), ("read", "R IY D", 4)].map {
            SequenceExample(text: $0.0, features: [], frames: 0, target: $0.1, line: $0.2)
        }
        let grouped = SequenceRun.groupedBySource(examples)
        XCTAssertEqual(grouped.map { $0.text ?? "" }, ["read", "loom"])
        XCTAssertEqual(grouped[0].references, ["R IY D", "R EH D"])
        XCTAssertEqual(grouped[0].line, 1)
        XCTAssertEqual(grouped[1].references, ["L UW M"])
    }
}
