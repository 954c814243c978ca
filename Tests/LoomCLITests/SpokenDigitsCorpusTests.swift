import RecipeSupport
import XCTest

/// The spoken-digits corpus plan: voices held out per synthesizer, an unseen synthesizer's split
/// spoken only by it, and the same plan every time.
final class SpokenDigitsCorpusTests: XCTestCase {
    func parameters(_ engines: [SpokenDigitsCorpus.Engine], unseen: [SpokenDigitsCorpus.Engine] = []) -> SpokenDigitsCorpus.Parameters {
        var p = SpokenDigitsCorpus.Parameters(seed: 3, trainUtterances: 600, testUtterances: 200, maximumDigits: 4, heldOutVariants: 12)
        p.engines = engines
        p.unseenEngines = unseen
        p.unseenUtterances = unseen.isEmpty ? 0 : 150
        return p
    }

    func testHeldOutVoicesAndUnseenSynthesizers() {
        let p = parameters([.espeak, .flite], unseen: [.festival])
        let (train, test, unseen) = SpokenDigitsCorpus.plan(p)
        XCTAssertEqual([train.count, test.count, unseen.count], [600, 200, 150])
        for engine in [SpokenDigitsCorpus.Engine.espeak, .flite] {
            let (trainVoices, testVoices) = SpokenDigitsCorpus.voiceSplit(p, engine)
            XCTAssertTrue(Set(trainVoices).isDisjoint(with: testVoices), "\(engine)")
            XCTAssertEqual(testVoices.count, engine == .espeak ? 12 : 1)
            XCTAssertTrue(train.filter { $0.engine == engine }.allSatisfy { trainVoices.contains($0.variant) }, "\(engine)")
            XCTAssertTrue(test.filter { $0.engine == engine }.allSatisfy { testVoices.contains($0.variant) }, "\(engine)")
            // Each engine speaks a fair share (drawn per utterance: 300 of 600 expected).
            XCTAssertGreaterThan(train.filter { $0.engine == engine }.count, 220, "\(engine)")
        }
        XCTAssertTrue(unseen.allSatisfy { $0.engine == .festival })
        XCTAssertEqual(Set(unseen.map(\.variant)), Set(SpokenDigitsCorpus.Engine.festival.voices), "every voice of the unseen synthesizer")
        XCTAssertFalse((train + test).contains { $0.engine == .festival })
        let again = SpokenDigitsCorpus.plan(p)
        XCTAssertEqual(again.train, train)
        XCTAssertEqual(again.unseen, unseen)
    }

    /// espeak-ng alone draws no synthesizer: its corpora are the ones of before the other engines.
    func testEspeakOnlyPlanDrawsNoEngine() {
        let p = parameters([.espeak])
        let (train, test, unseen) = SpokenDigitsCorpus.plan(p)
        XCTAssertTrue(unseen.isEmpty)
        XCTAssertTrue((train + test).allSatisfy { $0.engine == .espeak && $0.voice.contains("+") })
        let (trainVariants, testVariants) = SpokenDigitsCorpus.variantSplit(p)
        XCTAssertTrue(test.allSatisfy { testVariants.contains($0.variant) })
        XCTAssertTrue(train.allSatisfy { trainVariants.contains($0.variant) })
    }
}
