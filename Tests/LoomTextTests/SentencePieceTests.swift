import Foundation
import LoomText
import XCTest

/// SentencePiece subwords through Debian's library: trained here, every text round-trips
/// (text -> pieces -> text), Loom's special ids hold, and the model survives JSON.
final class SentencePieceTests: XCTestCase {
    let corpus: [String] = {
        let words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "to", "house", "quickly", "slowly", "big", "small", "red"]
        var generator = SeededGenerator(seed: 3)
        return (0..<400).map { _ in (0..<Int.random(in: 3...8, using: &generator)).map { _ in words.randomElement(using: &generator)! }.joined(separator: " ") }
    }()

    func testRoundTripAndSpecialIds() throws {
        for type in [SentencePieceCodec.ModelType.unigram, .bpe] {
            let pieces = try SentencePieceCodec(learningFrom: corpus, size: 60, type: type)
            XCTAssertLessThanOrEqual(pieces.size, 60)
            XCTAssertGreaterThan(pieces.size, 20)
            for text in corpus.prefix(100) {
                let ids = try pieces.encode(text)
                XCTAssertFalse(ids.contains { $0 < 4 }, "no special id inside \(text): \(ids)")
                XCTAssertEqual(try pieces.decode(ids), text, "\(type)")
                // Padding and start are skipped, end stops.
                XCTAssertEqual(try pieces.decode([1] + ids + [2, 5, 6]), text)
            }
            // Characters never seen in training are the unknown id.
            XCTAssertTrue(try pieces.encode("zebra ☃").contains(SentencePieceCodec.unknown))
            let copy = try JSONDecoder().decode(SentencePieceCodec.self, from: JSONEncoder().encode(pieces))
            XCTAssertEqual(copy, pieces)
            XCTAssertEqual(try copy.encode(corpus[0]), try pieces.encode(corpus[0]))
        }
        XCTAssertThrowsError(try SentencePieceCodec(model: Data("not a model".utf8), type: .unigram))
        XCTAssertThrowsError(try SentencePieceCodec(learningFrom: corpus, size: 2))
    }
}
