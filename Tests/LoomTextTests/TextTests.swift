import Foundation
import LoomText
import XCTest

/// Character and word encoders (round trips, unknown handling, JSON), and the class decoder.
final class TextTests: XCTestCase {
    func roundTrip<T: Codable & Equatable>(_ value: T) throws -> T {
        try JSONDecoder().decode(T.self, from: JSONEncoder().encode(value))
    }

    func testCharacterRoundTripForEveryCharacterAndJSON() throws {
        let alphabet = Array("0123456789+- abcXYZéü€😀\t\n")
        let chars = try CharacterEncoder(alphabet: alphabet)
        XCTAssertEqual(chars.size, 3 + alphabet.count)
        let all = String(alphabet)
        let ids = try chars.encode(all, addStart: true, addEnd: true)
        XCTAssertEqual(ids.first, CharacterEncoder.start); XCTAssertEqual(ids.last, CharacterEncoder.end)
        XCTAssertEqual(Set(ids.dropFirst().dropLast()).count, alphabet.count, "each character has its own index")
        XCTAssertEqual(try chars.decode(ids), all)
        for c in alphabet { XCTAssertEqual(try chars.decode(chars.encode(String(c))), String(c)) }
        XCTAssertEqual(try roundTrip(chars), chars)
        XCTAssertEqual(try roundTrip(chars).encode(all), try chars.encode(all))
        // Combining sequences are one character.
        let combining = try CharacterEncoder(alphabet: ["e\u{301}"])
        XCTAssertEqual(try combining.encode("e\u{301}e\u{301}"), [3, 3])
    }

    func testUnknownCharactersAndIgnoreCase() throws {
        let strict = try CharacterEncoder(learningFrom: ["abc"])
        XCTAssertThrowsError(try strict.encode("abxc")) { error in
            XCTAssertEqual(error as? TextEncodingError, .unknownCharacter("x", position: 2, text: "abxc"))
            XCTAssertTrue("\(error)".contains("position 2"))
        }
        let lenient = try CharacterEncoder(learningFrom: ["abc"], unknown: .symbol)
        XCTAssertEqual(try lenient.encode("axb"), [4, 3, 5])
        XCTAssertEqual(try lenient.decode([4, 3, 5], unknownText: "?"), "a?b")
        let folded = try CharacterEncoder(alphabet: Array("abc"), ignoreCase: true)
        XCTAssertEqual(try folded.encode("ABc"), try folded.encode("abc"))
        XCTAssertThrowsError(try CharacterEncoder(alphabet: Array("aA"), ignoreCase: true))
        XCTAssertThrowsError(try strict.decode([99])) { XCTAssertTrue("\($0)".contains("99")) }
        let oneHot: Tensor<Float> = try strict.oneHot("ca")
        XCTAssertEqual(oneHot.shape, [2, 6]); XCTAssertEqual(oneHot.scalars[5], 1); XCTAssertEqual(oneHot.scalars[6 + 3], 1)
        let padded = PaddedIndices([[4, 5, 6], [7]])
        XCTAssertEqual(padded.indices, [4, 7, 5, 0, 6, 0]); XCTAssertEqual(padded.lengths, [3, 1])
    }

    func testWordTokenizer() throws {
        let corpus = ["The cat sat on the mat.", "The dog's bone, the cat's toy!", "Ünïcödé wörds 42 times"]
        let words = try WordTokenizer(learningFrom: corpus, lowercase: true)
        XCTAssertEqual(words.tokenize("The dog's bone, ok?"), ["the", "dog's", "bone", ",", "ok", "?"])
        XCTAssertEqual(words.tokenize("Ünïcödé wörds 42"), ["ünïcödé", "wörds", "42"])
        XCTAssertEqual(words.vocabulary.first, "the", "most frequent first")
        for word in words.vocabulary { XCTAssertEqual(try words.decode(words.encode(word)), word) }
        XCTAssertEqual(try words.decode(words.encode("the cat sat on the mat.")), "the cat sat on the mat.")
        XCTAssertEqual(words.encode("the zebra"), [words.encode("the")[0], WordTokenizer.unknown])
        // Counts (lowercased): the 4, every other token once ("cat's" is one token).
        XCTAssertEqual(try WordTokenizer(learningFrom: corpus, lowercase: true, minimumCount: 2).vocabulary, ["the"])
        let capped = try WordTokenizer(learningFrom: corpus, lowercase: true, maximumSize: 3)
        XCTAssertEqual(capped.vocabulary, Array(words.vocabulary.prefix(3)), "the three most frequent")
        XCTAssertEqual(capped.size, 4 + 3)
        XCTAssertEqual(try roundTrip(words), words)
        XCTAssertThrowsError(try WordTokenizer(vocabulary: [], pattern: "(")) { XCTAssertTrue("\($0)".contains("pattern")) }
    }

    func testClassDecoder() throws {
        let decoder = try ClassDecoder(labels: ["Less", "Equal", "Greater"])
        let p = try Tensor<Double>(shape: [2, 3], scalars: [0.2, 0.5, 0.3, 0.7, 0.1, 0.2])
        XCTAssertEqual(try decoder.decisions(p), ["Equal", "Less"])
        let top = try decoder.top(2, p)
        XCTAssertEqual(top[0].map(\.label), ["Equal", "Greater"]); XCTAssertEqual(top[0][1].probability, 0.3)
        XCTAssertEqual(try decoder.probabilities(p)[1]["Greater"], 0.2)
        XCTAssertThrowsError(try decoder.decisions(Tensor<Double>([0.5, 0.5]))) { XCTAssertTrue("\($0)".contains("[2]")) }
        // Sampling: top-k 1 and a tiny temperature are the decision; frequencies follow p at T = 1.
        let source = RandomSource(seed: 9)
        XCTAssertEqual(try decoder.sample(p, topK: 1, using: source), ["Equal", "Less"])
        XCTAssertEqual(try decoder.sample(p, temperature: 1e-3, using: source), ["Equal", "Less"])
        XCTAssertEqual(try decoder.sample(p, topP: 0.5, using: source), ["Equal", "Less"], "the nucleus of mass 0.5 holds one label")
        let row = Tensor<Double>([0.2, 0.5, 0.3])
        var counts: [String: Int] = [:]
        for _ in 0..<20_000 { counts[try decoder.sample(row, using: source)[0], default: 0] += 1 }
        // Binomial standard deviation at n = 20000, p = 0.5 is 0.0035; 0.02 is over 5 sigma.
        XCTAssertEqual(Double(counts["Equal", default: 0]) / 20_000, 0.5, accuracy: 0.02)
        XCTAssertEqual(Double(counts["Less", default: 0]) / 20_000, 0.2, accuracy: 0.02)
        XCTAssertEqual(try roundTrip(decoder), decoder)
    }
}

final class ErrorRateTests: XCTestCase {
    /// Alignments of fewest edits: pairs rebuild both sides, and the edits they show are the
    /// edit distance.
    func testAlignmentPairsBothSidesWithTheFewestEdits() {
        func shown(_ r: String, _ h: String) -> String {
            ErrorRate.alignment(reference: Array(r), hypothesis: Array(h)).map { "\($0.reference.map(String.init) ?? "-")\($0.hypothesis.map(String.init) ?? "-")" }
                .joined(separator: " ")
        }
        XCTAssertEqual(shown("kitten", "sitting"), "ks ii tt tt ei nn -g")
        XCTAssertEqual(shown("abc", ""), "a- b- c-")
        XCTAssertEqual(shown("", "ab"), "-a -b")
        XCTAssertEqual(shown("flaw", "lawn"), "f- ll aa ww -n")
        for (r, h) in [("intention", "execution"), ("R IY D", "R EH D"), ("abcdef", "azced")] {
            let pairs = ErrorRate.alignment(reference: Array(r), hypothesis: Array(h))
            XCTAssertEqual(String(pairs.compactMap(\.reference)), r)
            XCTAssertEqual(String(pairs.compactMap(\.hypothesis)), h)
            XCTAssertEqual(pairs.filter { $0.reference != $0.hypothesis }.count, ErrorRate.editDistance(Array(r), Array(h)), "\(r) / \(h)")
        }
    }

    func testEditDistanceAndRates() {
        XCTAssertEqual(ErrorRate.editDistance(Array("kitten"), Array("sitting")), 3)
        XCTAssertEqual(ErrorRate.editDistance(Array(""), Array("abc")), 3)
        XCTAssertEqual(ErrorRate.editDistance(Array("abc"), Array("")), 3)
        XCTAssertEqual(ErrorRate.editDistance(Array("419"), Array("419")), 0)
        XCTAssertEqual(ErrorRate.editDistance(Array("flaw"), Array("lawn")), 2)
        // One substitution in "419" and one deletion in "87": 2 errors over 5 reference characters.
        XCTAssertEqual(ErrorRate.characters(hypotheses: ["489", "8"], references: ["419", "87"]), 0.4, accuracy: 1e-12)
        XCTAssertEqual(ErrorRate.characters(hypotheses: ["1234"], references: ["1"]), 3, accuracy: 1e-12, "insertions can exceed 100%")
        XCTAssertEqual(ErrorRate.words(hypotheses: ["the cat sat", "a dog"], references: ["the cat sat down", "a  dog"]), 1.0 / 6, accuracy: 1e-12)
    }
}
