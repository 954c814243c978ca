import LoomLayers
import XCTest

/// Linear, Embedding, Dropout, Activation and Chain: values, errors, and gradients against
/// finite differences in Double over inputs and parameters.
final class LayersTests: XCTestCase {
    let source = RandomSource(seed: 11)

    func check(_ name: String, _ inputs: [Tensor<Double>], _ parameters: [Parameter<Double>],
               file: StaticString = #filePath, line: UInt = #line,
               _ f: ([Tensor<Double>]) throws -> Tensor<Double>) throws {
        let shape = try withoutGradients { try f(inputs) }.shape
        let weights = try Tensor<Double>.randomUniform(shape, lower: -1, upper: 1, using: source)
        let report = try GradientCheck.compare(at: inputs, parameters: parameters) { xs in try (f(xs) * weights).sum() }
        XCTAssertTrue(report.passed, "\(name): \(report)", file: file, line: line)
    }

    func testLinearValuesAndLayout() throws {
        let layer = try Linear<Float>(weight: Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6]), bias: Tensor([10, 20]))
        let y = try layer(Tensor(shape: [1, 3], scalars: [1, 0, -1]))
        XCTAssertEqual(y.scalars, [1 - 3 + 10, 4 - 6 + 20])
        XCTAssertThrowsError(try layer(Tensor.ones([2, 4]))) { XCTAssertTrue("\($0)".contains("[2, 4]")) }
        XCTAssertEqual(layer.parameters.map(\.name), ["weight", "bias"])
    }

    func testLinearGradients() throws {
        let layer = try Linear<Double>(inputSize: 4, outputSize: 3, using: source)
        let x = try Tensor<Double>.randomUniform([2, 5, 4], lower: -1, upper: 1, using: source)
        try check("Linear", [x], layer.parameters) { try layer($0[0]) }
    }

    func testEmbeddingLookupAndGradients() throws {
        let embed = try Embedding<Double>(vocabularySize: 5, embeddingSize: 3, using: source)
        let y = try embed(indices: [4, 1, 4], shape: [1, 3])
        XCTAssertEqual(y.shape, [1, 3, 3])
        XCTAssertEqual(Array(y.scalars[0..<3]), Array(embed.table.data.scalars[12..<15]))
        // A repeated index sums its gradients into one row.
        try check("Embedding", [], embed.parameters) { _ in try embed(indices: [4, 1, 4, 0], shape: [2, 2]) }
        XCTAssertThrowsError(try embed(indices: [5])) { XCTAssertTrue("\($0)".contains("5")) }
        XCTAssertThrowsError(try embed(Tensor([1.5]))) { XCTAssertTrue("\($0)".contains("1.5")) }
        XCTAssertEqual(try embed(Tensor([2, 0])).shape, [2, 3])
    }

    func testDropoutOnlyInTraining() throws {
        let dropout = try Dropout<Float>(probability: 0.25, using: RandomSource(seed: 1))
        let x = try Tensor<Float>.ones([100_000])
        XCTAssertEqual(try dropout(x), x, "inference leaves the input as it is")
        let y = try withLearningPhase(.training) { try dropout(x) }
        let zeros = y.scalars.filter { $0 == 0 }.count
        // Binomial(100000, 0.25): sd 137; 5 sd either side.
        XCTAssertEqual(Double(zeros), 25_000, accuracy: 685)
        XCTAssertTrue(y.scalars.allSatisfy { $0 == 0 || abs($0 - 1 / 0.75) < 1e-6 })
        let forced = try Dropout<Float>(probability: 0.5, alwaysActive: true, using: RandomSource(seed: 2))
        XCTAssertTrue(try forced(x).scalars.contains(0), "alwaysActive drops at inference too")
        XCTAssertThrowsError(try Dropout<Float>(probability: 1))
    }

    func testDropoutGradientWithAFixedMask() throws {
        let x = try Tensor<Double>.randomUniform([3, 4], lower: -1, upper: 1, using: source)
        try check("Dropout", [x], []) { xs in
            // The same seed every call: the same mask for every evaluation.
            let dropout = try Dropout<Double>(probability: 0.5, using: RandomSource(seed: 5))
            return try withLearningPhase(.training) { try dropout(xs[0]) }
        }
    }

    func testChainComposesAndCollectsParameters() throws {
        let first = try Linear<Double>(inputSize: 3, outputSize: 4, using: source)
        let last = try Linear<Double>(inputSize: 4, outputSize: 2, using: source)
        let chain = Chain<Double>(first, Activation(.tanh), last)
        XCTAssertEqual(chain.parameters.count, 4)
        let x = try Tensor<Double>.randomUniform([5, 3], lower: -1, upper: 1, using: source)
        XCTAssertEqual(try chain(x), try last(first(x).tanh()))
        try check("Chain", [x], chain.parameters) { try chain($0[0]) }
        let sigmoidRelu = Chain<Double>(Activation(.sigmoid), Activation(.relu), Activation(.identity))
        XCTAssertEqual(try sigmoidRelu(x), x.sigmoid())
    }
}
