import Foundation
import LoomSeq2Seq
import LoomTensor
import LoomLayers
import XCTest

/// Decoding that cannot run away: the bound from the source's length and the guard against
/// repeating loops, on decoders that never say end-of-sequence.
final class RunawayDecodingTests: XCTestCase {
    /// Never ends: token `next(last, step)` has probability ~1, every other ~e^-30, and
    /// end-of-sequence (0) e^-10000, so that no beam ever ends.
    struct Endless: StepDecoder {
        var endIndex: Int { 0 }
        let vocabulary: Int
        let next: @Sendable (Int, Int) -> Int

        func step(tokens: [Int], state: RecurrentState<Float>) throws -> (logProbabilities: Tensor<Float>, state: RecurrentState<Float>) {
            let step = Int(state.hidden.scalars.first ?? 0)
            var scalars = [Float](repeating: -30, count: tokens.count * vocabulary)
            for (r, last) in tokens.enumerated() {
                scalars[r * vocabulary] = -10_000
                scalars[r * vocabulary + next(last, step)] = 0
            }
            return (try Tensor(shape: [tokens.count, vocabulary], scalars: scalars),
                    RecurrentState(hidden: try Tensor(shape: [tokens.count, 1], scalars: [Float](repeating: Float(step + 1), count: tokens.count))))
        }
    }

    func initial(_ rows: Int) throws -> RecurrentState<Float> { RecurrentState(hidden: try Tensor(shape: [rows, 1], scalars: [Float](repeating: 0, count: rows))) }

    func testTheGuardCatchesShortCyclesOnly() {
        let guardian = RepetitionGuard()
        XCTAssertTrue(guardian.caught([8] + [Int](repeating: 2, count: 12)))
        XCTAssertFalse(guardian.caught([8] + [Int](repeating: 2, count: 11)))
        XCTAssertTrue(guardian.caught([0, 2, 2] + Array([[0, 2], [0, 2], [0, 2], [0, 2], [0, 2], [0, 2]].joined())))
        XCTAssertTrue(guardian.caught(Array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]].joined())))
        XCTAssertFalse(guardian.caught(Array([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5], [1, 2, 3]].joined())), "a cycle of 5 is longer than the guard's 4")
        XCTAssertFalse(guardian.caught([1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 3]))
        XCTAssertFalse(guardian.caught(Array(0..<40)))
        XCTAssertTrue(RepetitionGuard(longestCycle: 1, span: 3).caught([5, 5, 5]))
    }

    func testBoundsFromTheSourceLength() {
        let bound = OutputLengthBound(ratio: 1.5, constant: 2)
        XCTAssertEqual(bound.limit(sourceLength: 0), 2)
        XCTAssertEqual(bound.limit(sourceLength: 3), 7)  // 2 + ceil(4.5)
        XCTAssertEqual(bound.limit(sourceLength: 4), 8)
        let fitted = OutputLengthBound.fitted(sourceLengths: [5, 7, 2], targetLengths: [3, 4, 3])
        XCTAssertEqual(fitted, OutputLengthBound(ratio: 3, constant: 10))  // twice the largest ratio, 3/2
        XCTAssertThrowsError(try OutputLengthBound(ratio: .nan, constant: 1).validate())
        XCTAssertThrowsError(try OutputLengthBound(ratio: 1, constant: -1).validate())
    }

    /// No output is longer than its bound, with greedy, beam and sampling, and each says why it stopped.
    func testNoOutputExceedsItsBound() throws {
        // Counting up never repeats: only the bound or the maximum length stops it.
        let counting = Endless(vocabulary: 64) { last, _ in last % 63 + 1 }
        let bounds = [3, 7, 20, 150]
        let options = DecodingOptions(maximumLength: 100)
        let greedy = try Search.greedy(counting, initial: initial(4), rows: 4, start: 5, options: options, bounds: bounds)
        XCTAssertEqual(greedy.map(\.tokens.count), [3, 7, 20, 100])
        XCTAssertEqual(greedy.map(\.stop), [.lengthLimit, .lengthLimit, .lengthLimit, .maximumLength])
        XCTAssertTrue(greedy.allSatisfy { !$0.finished })
        let sampled = try Search.sample(counting, initial: initial(4), rows: 4, start: 5, options: options, sampling: SamplingOptions(seed: 3), bounds: bounds)
        XCTAssertEqual(sampled.map(\.tokens.count), [3, 7, 20, 100])
        let beam = try Search.beam(counting, initial: initial(4), rows: 4, start: 5, options: DecodingOptions(maximumLength: 100, beamWidth: 3, nBest: 2), bounds: bounds)
        for (hypotheses, bound) in zip(beam, bounds) {
            XCTAssertFalse(hypotheses.isEmpty)
            for h in hypotheses { XCTAssertLessThanOrEqual(h.tokens.count, min(bound, 100)) }
            XCTAssertEqual(hypotheses[0].tokens.count, min(bound, 100))
            XCTAssertEqual(hypotheses[0].stop, bound < 100 ? .lengthLimit : .maximumLength)
        }
    }

    func testALoopEndsAtTheGuard() throws {
        // "8222222...": the runaway seen on human speech.
        let loop = Endless(vocabulary: 10) { _, step in step == 0 ? 8 : 2 }
        let options = DecodingOptions(maximumLength: 100)
        let greedy = try Search.greedy(loop, initial: initial(2), rows: 2, start: 9, options: options)
        XCTAssertEqual(greedy[0].tokens, [8] + [Int](repeating: 2, count: 12))
        XCTAssertEqual(greedy.map(\.stop), [.repetition, .repetition])
        let beam = try Search.beam(loop, initial: initial(1), rows: 1, start: 9, options: DecodingOptions(maximumLength: 100, beamWidth: 2))
        XCTAssertEqual(beam[0][0].tokens.count, 13)
        XCTAssertEqual(beam[0][0].stop, .repetition)
        // Off, the loop runs to the maximum length.
        var off = options
        off.repetitionGuard = nil
        let unguarded = try Search.greedy(loop, initial: initial(1), rows: 1, start: 9, options: off)
        XCTAssertEqual(unguarded[0].tokens.count, 100)
        XCTAssertEqual(unguarded[0].stop, .maximumLength)
    }

    /// A real model made never to say end-of-sequence: every output stops at its bound, which
    /// the model file keeps.
    func testAModelThatNeverEndsStopsAtItsFilesBound() throws {
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("abcdefgh"))), embeddingSize: 8), encoderLayers: [12],
            target: .characters(CharacterEncoder(alphabet: Array("abcdefgh"))), targetEmbeddingSize: 8, decoderHidden: 12,
            attention: .general), using: RandomSource(seed: 5))
        let end = model.configuration.target.endIndex
        let bias = try XCTUnwrap(model.namedParameters.last { $0.name.hasSuffix("bias") && $0.parameter.data.count == model.configuration.target.size })
        var scalars = bias.parameter.data.scalars
        scalars[end] = -1e4
        bias.parameter.data = try Tensor(shape: bias.parameter.data.shape, scalars: scalars)
        model.outputLengthBound = OutputLengthBound(ratio: 0.5, constant: 3)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("endless-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try model.save(to: url)
        let loaded = try SequenceTransformer.load(from: url).model
        XCTAssertEqual(loaded.outputLengthBound, model.outputLengthBound)
        let sources = ["a", "abcd", "abcdefgh", "hgfedcbahgfedcbahgfedcba"]
        var options = DecodingOptions(maximumLength: 1000)
        options.repetitionGuard = nil
        for beamWidth in [1, 3] {
            options.beamWidth = beamWidth
            let outputs = try loaded.decode(loaded.sourceBatch(texts: sources), options: options)
            for (source, output) in zip(sources, outputs) {
                let bound = 3 + Int((0.5 * Double(source.count)).rounded(.up))
                XCTAssertEqual(output[0].hypothesis.tokens.count, bound, source)
                XCTAssertEqual(output[0].hypothesis.stop, .lengthLimit, source)
            }
        }
        // The options' bound replaces the file's.
        options.beamWidth = 1
        options.lengthBound = OutputLengthBound(ratio: 0, constant: 2)
        XCTAssertEqual(try loaded.decode(loaded.sourceBatch(texts: sources), options: options).map { $0[0].hypothesis.tokens.count }, [2, 2, 2, 2])
    }
}
