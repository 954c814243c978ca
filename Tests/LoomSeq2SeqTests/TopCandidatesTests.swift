@testable import LoomSeq2Seq
import XCTest

/// The beam search's bounded selection against sorting every candidate.
final class TopCandidatesTests: XCTestCase {
    func testKeepsTheSortedPrefixWithTiesBrokenByBeamThenToken() {
        var g = SystemRandomNumberGenerator()
        for trial in 0..<200 {
            let capacity = 1 + trial % 12
            // Few distinct scores, so that ties are common; -inf too.
            let all = (0..<(1 + trial % 97)).map { i in
                (score: [-1.5, -0.25, 0, -3, -Double.infinity][Int.random(in: 0..<5, using: &g)], beam: Int.random(in: 0..<5, using: &g), token: i)
            }.shuffled(using: &g)
            var top = TopCandidates(capacity: capacity)
            for c in all { top.offer(score: c.score, beam: c.beam, token: c.token) }
            let sorted = all.sorted { TopCandidates.before($0, $1) }.prefix(capacity)
            XCTAssertEqual(top.best.map(\.token), sorted.map(\.token), "trial \(trial)")
            XCTAssertEqual(top.best.map(\.score), sorted.map(\.score), "trial \(trial)")
        }
    }
}
