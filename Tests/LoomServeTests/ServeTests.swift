import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Loom
@testable import LoomServe
import XCTest

/// `loom-serve` in process on an ephemeral loopback port, through real HTTP: outputs against the
/// library and `loom decode`, concurrent clients, every error class, the queue limit, timeouts,
/// and shutdown with requests in flight. No assertion depends on timing: where a request must be
/// waiting, the batcher is held until the queue shows it.
final class ServeTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("serve-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    /// A small addition-shaped model with random weights (outputs are arbitrary but fixed).
    func textModel() throws -> URL {
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .text(.characters(CharacterEncoder(alphabet: Array("0123456789+"))), embeddingSize: 8), encoderLayers: [16],
            target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 8, decoderHidden: 16,
            attention: .general), using: RandomSource(seed: 2))
        let url = directory.appendingPathComponent("text.safetensors")
        try model.save(to: url, training: ["task": "serve test"])
        return url
    }

    func audioModel() throws -> URL {
        let features = FeatureConfiguration(kind: .mel, sampleRate: 8000, fftLength: 256, windowLength: 200, hop: 80, melBands: 8, log: .offset(1e-6))
        let model = try SequenceTransformer(SequenceTransformerConfiguration(
            source: .audio(features, frameStacking: 1), encoderLayers: [12],
            target: .characters(CharacterEncoder(alphabet: Array("0123456789"))), targetEmbeddingSize: 8, decoderHidden: 12,
            attention: .general), using: RandomSource(seed: 3))
        let url = directory.appendingPathComponent("audio.safetensors")
        try model.save(to: url)
        return url
    }

    /// A running server and its base URL; `stop()` shuts it down gracefully and waits.
    struct Running {
        let server: DecodeServer
        let base: URL
        let task: Task<Void, Error>

        func stop() async throws {
            await server.shutdown()
            try await task.value
        }
    }

    func start(_ modelURL: URL, limits: ServeLimits = ServeLimits()) async throws -> Running {
        let server = DecodeServer(model: try DecodingModel(contentsOf: modelURL), host: "127.0.0.1", port: 0, limits: limits)
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let task = Task { try await server.run(handlingSignals: false) { continuation.yield($0) } }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw XCTSkip("the server did not report a port") }
        return Running(server: server, base: URL(string: "http://127.0.0.1:\(port)")!, task: task)
    }

    struct Reply {
        /// Scores are read with JSONDecoder: Foundation's JSONSerialization on Linux parses some
        /// doubles one unit in the last place off, JSONDecoder reads them exactly.
        struct Output: Decodable { var text: String; var score: Double }
        struct Item: Decodable { var outputs: [Output] }
        struct Results: Decodable { var results: [Item] }
        let status: Int
        let headers: [AnyHashable: Any]
        let body: Data
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:] }
        var error: String { json["error"] as? String ?? String(decoding: body, as: UTF8.self) }
    }

    func send(_ base: URL, _ path: String, method: String = "POST", body: Data? = nil, type: String? = "application/json") async throws -> Reply {
        var request = URLRequest(url: try XCTUnwrap(URL(string: path, relativeTo: base)))
        request.httpMethod = method
        request.httpBody = body
        if let type { request.setValue(type, forHTTPHeaderField: "Content-Type") }
        request.timeoutInterval = 120
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try XCTUnwrap(response as? HTTPURLResponse)
        return Reply(status: http.statusCode, headers: http.allHeaderFields, body: data)
    }

    func post(_ base: URL, _ object: [String: Any]) async throws -> Reply {
        try await send(base, "v1/decode", body: JSONSerialization.data(withJSONObject: object))
    }

    /// The texts of each input's outputs.
    func texts(_ reply: Reply) -> [[String]] {
        (reply.json["results"] as? [[String: Any]] ?? []).map { ($0["outputs"] as? [[String: Any]] ?? []).map { $0["text"] as? String ?? "?" } }
    }

    func scores(_ reply: Reply) -> [[Double]] {
        ((try? JSONDecoder().decode(Reply.Results.self, from: reply.body))?.results ?? []).map { $0.outputs.map(\.score) }
    }

    /// An executable built beside the test bundle (`loom`, `loom-serve`).
    func builtExecutable(_ name: String) -> URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name)
    }

    // MARK: - Outputs

    func testDecodeMatchesTheLibraryAndLoomDecode() async throws {
        let url = try textModel()
        let running = try await start(url)
        let model = try DecodingModel(contentsOf: url)
        let inputs = ["12+3", "7+70", "999+1", "5+5"]
        for options in [DecodingOptions(maximumLength: 6), DecodingOptions(maximumLength: 6, beamWidth: 3, nBest: 2, lengthPenalty: 0.6)] {
            let reply = try await post(running.base, ["inputs": inputs, "max_length": 6, "beam": options.beamWidth, "nbest": options.nBest,
                                                      "length_penalty": options.lengthPenalty])
            XCTAssertEqual(reply.status, 200, reply.error)
            // One request alone forms its batch, so the batch is the library's: scores equal exactly.
            let expected = try model.decode(inputs.map { try model.prepare(text: $0) }, options: options)
            XCTAssertEqual(texts(reply), expected.map { $0.map(\.text) })
            XCTAssertEqual(scores(reply), expected.map { $0.map(\.hypothesis.score) })
            XCTAssertEqual((reply.json["results"] as? [[String: Any]])?.map { $0["input"] as? String }, inputs)

            let cli = try runLoomDecode(["--model", url.path, "--max-length", "6", "--beam", String(options.beamWidth), "--nbest", String(options.nBest),
                                         "--length-penalty", String(options.lengthPenalty), "--format", "json"] + inputs)
            XCTAssertEqual(cli.map { $0.map(\.text) }, texts(reply))
            XCTAssertEqual(cli.map { $0.map(\.score) }, scores(reply))
        }
        // Sampling with a seed gives what `loom decode --sample --seed` gives for the same inputs.
        let sampled = try await post(running.base, ["inputs": inputs, "max_length": 6, "sample": true, "seed": 7, "temperature": 1.5])
        XCTAssertEqual(sampled.status, 200, sampled.error)
        let cli = try runLoomDecode(["--model", url.path, "--max-length", "6", "--sample", "--seed", "7", "--temperature", "1.5", "--format", "json"] + inputs)
        XCTAssertEqual(cli.map { $0.map(\.text) }, texts(sampled))
        try await running.stop()
    }

    /// An int8 model file serves as any other: the library's int8 outputs, its count in /v1/model.
    func testInt8ModelServesTheLibrarysOutputs() async throws {
        let url = try textModel()
        let (float, _) = try SequenceTransformer.load(from: url)
        float.quantizeWeights()
        let int8 = directory.appendingPathComponent("text-int8.safetensors")
        try float.save(to: int8)
        let running = try await start(int8)
        let model = try DecodingModel(contentsOf: int8)
        XCTAssertEqual(model.quantizedWeightCount, 9)
        let inputs = ["12+3", "7+70", "999+1", "5+5"], options = DecodingOptions(maximumLength: 6, beamWidth: 3)
        let reply = try await post(running.base, ["inputs": inputs, "max_length": 6, "beam": 3])
        XCTAssertEqual(reply.status, 200, reply.error)
        let expected = try model.decode(inputs.map { try model.prepare(text: $0) }, options: options)
        XCTAssertEqual(texts(reply), expected.map { $0.map(\.text) })
        XCTAssertEqual(scores(reply), expected.map { $0.map(\.hypothesis.score) })
        let info = try await send(running.base, "v1/model", method: "GET", type: nil)
        XCTAssertEqual(info.json["int8_weights"] as? Int, 9)
        try await running.stop()
    }

    /// `loom decode --format json`: per input, its outputs' texts and scores.
    func runLoomDecode(_ arguments: [String]) throws -> [[(text: String, score: Double)]] {
        let loom = builtExecutable("loom")
        guard FileManager.default.isExecutableFile(atPath: loom.path) else { throw XCTSkip("the loom executable is not built beside the tests") }
        let process = Process()
        process.executableURL = loom
        process.arguments = ["decode"] + arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return try String(decoding: data, as: UTF8.self).split(separator: "\n").map { line in
            try JSONDecoder().decode(Reply.Item.self, from: Data(line.utf8)).outputs.map { ($0.text, $0.score) }
        }
    }

    func testConcurrentClientsEachGetTheirOwnOutputs() async throws {
        let url = try textModel()
        let running = try await start(url)
        let model = try DecodingModel(contentsOf: url)
        var random = SeededGenerator(seed: 11)
        let requests: [[String]] = (0..<48).map { _ in
            (0..<Int(random.next() % 3 + 1)).map { _ in "\(random.next() % 1000)+\(random.next() % 1000)" }
        }
        let replies = try await withThrowingTaskGroup(of: (Int, Reply).self) { group in
            for (i, inputs) in requests.enumerated() {
                group.addTask { (i, try await self.post(running.base, ["inputs": inputs, "max_length": 8])) }
            }
            var replies = [Reply?](repeating: nil, count: requests.count)
            for try await (i, reply) in group { replies[i] = reply }
            return replies.compactMap { $0 }
        }
        XCTAssertEqual(replies.count, requests.count)
        for (inputs, reply) in zip(requests, replies) {
            XCTAssertEqual(reply.status, 200, reply.error)
            XCTAssertEqual((reply.json["results"] as? [[String: Any]])?.map { $0["input"] as? String }, inputs)
            // Batched with whatever else was queued: the same texts as each input decoded alone.
            // (These inputs' smallest gap between the two best logits of any greedy step is 8.2e-5,
            // some 800 times the rounding that another batch composition brings: no flip.)
            // Scores agree to Float rounding: the products run over another number of rows, which
            // changes the order of sums (measured: 2.4e-7 on scores near -18, a few units in the
            // last place of the per-step log-probabilities); 1e-4 bounds nine steps' worth.
            for (input, (output, score)) in zip(inputs, zip(texts(reply), scores(reply))) {
                let alone = try model.decode([model.prepare(text: input)], options: DecodingOptions(maximumLength: 8))[0]
                XCTAssertEqual(output, alone.map(\.text), input)
                XCTAssertEqual(score.count, 1)
                XCTAssertEqual(score.first ?? .nan, alone[0].hypothesis.score, accuracy: 1e-4, input)
            }
        }
        let metrics = try await send(running.base, "metrics", method: "GET", type: nil)
        let text = String(decoding: metrics.body, as: UTF8.self)
        let decoded = requests.reduce(0) { $0 + $1.count }
        XCTAssertTrue(text.contains("loom_decoded_inputs_total \(decoded)"), text)
        XCTAssertTrue(text.contains("loom_requests_total{route=\"/v1/decode\",status=\"200\"} \(requests.count)"), text)
        XCTAssertTrue(text.contains("loom_batch_size_bucket"), text)
        try await running.stop()
    }

    /// A request known to be on its way holds a forming batch; both then decode together.
    func testARequestOnItsWayJoinsTheBatch() async throws {
        let model = try DecodingModel(contentsOf: try textModel())
        let batcher = DecodeBatcher(model: model, maximumBatch: 64, maximumDelay: 600, maximumQueue: 100)
        let reports = Reports()
        batcher.onBatch = { reports.append($0) }
        batcher.start()
        batcher.beginArrival()
        let first = Task { try await batcher.submit([try model.prepare(text: "1+2")], options: DecodingOptions(maximumLength: 5)) }
        while batcher.queueLength < 1 { try await Task.sleep(nanoseconds: 1_000_000) }
        let second = try await batcher.submit([try model.prepare(text: "3+4"), try model.prepare(text: "5+6")], options: DecodingOptions(maximumLength: 5), arrived: true)
        let firstOutputs = try await first.value
        XCTAssertEqual(firstOutputs.count, 1)
        XCTAssertEqual(second.count, 2)
        XCTAssertEqual(reports.all.map(\.sequences), [3])
        XCTAssertEqual(reports.all.map(\.requests), [2])
        // Different options never share a batch.
        batcher.hold(true)
        let a = Task { try await batcher.submit([try model.prepare(text: "1+2")], options: DecodingOptions(maximumLength: 5)) }
        let b = Task { try await batcher.submit([try model.prepare(text: "1+2")], options: DecodingOptions(maximumLength: 5, beamWidth: 2)) }
        while batcher.queueLength < 2 { try await Task.sleep(nanoseconds: 1_000_000) }
        batcher.hold(false)
        _ = try await (a.value, b.value)
        XCTAssertEqual(reports.all.dropFirst().map(\.sequences), [1, 1])
        batcher.finish()
    }

    final class Reports: @unchecked Sendable {
        private let lock = NSLock()
        private var reports: [DecodeBatcher.BatchReport] = []
        func append(_ r: DecodeBatcher.BatchReport) { lock.withLock { reports.append(r) } }
        var all: [DecodeBatcher.BatchReport] { lock.withLock { reports } }
    }

    /// The answer's JSON is written by hand: it must read back to the same strings and numbers.
    func testHandWrittenJSONReadsBack() throws {
        let texts = ["plain", "quote \" and \\ backslash", "line\nbreak\ttab\r", "control \u{1}\u{1F}", "é 数字 🙂", ""]
        let numbers = [0.0, -0.0012, -13.867597103118896, 1e-300, -2.5e20, 42]
        let outputs = zip(texts, numbers).map { text, x in [(text: text, hypothesis: Hypothesis(tokens: [], logProbability: x, score: x, finished: x < 1))] }
        let bytes = DecodeServer.decodeResponse(texts.map { Optional($0) }, outputs)
        let results = try JSONDecoder().decode(Reply.Results.self, from: Data(bytes))
        XCTAssertEqual(results.results.map { $0.outputs.map(\.text) }, texts.map { [$0] })
        XCTAssertEqual(results.results.map { $0.outputs.map(\.score) }, numbers.map { [$0] })
        let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        XCTAssertEqual((object["results"] as? [[String: Any]])?.map { $0["input"] as? String }, texts)
        var nonFinite: [UInt8] = []
        for x in [Double.nan, .infinity, -.infinity] { JSONText.number(x, into: &nonFinite); nonFinite.append(UInt8(ascii: ",")) }
        XCTAssertEqual(String(decoding: nonFinite, as: UTF8.self), #""NaN","Infinity","-Infinity","#)
    }

    // MARK: - Errors

    func testEveryBadRequestGetsAClearErrorAndTheServerKeepsServing() async throws {
        var limits = ServeLimits()
        limits.maximumBodyBytes = 4096
        limits.maximumInputs = 4
        limits.maximumInputCharacters = 20
        let running = try await start(try textModel(), limits: limits)
        let base = running.base
        func expect(_ reply: Reply, _ status: Int, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertEqual(reply.status, status, reply.error, file: file, line: line)
            XCTAssertTrue(reply.error.contains(fragment), "\(reply.error) lacks \(fragment)", file: file, line: line)
            XCTAssertEqual(reply.json["status"] as? Int, status, file: file, line: line)
        }
        func raw(_ body: String, type: String? = "application/json") async throws -> Reply { try await send(base, "v1/decode", body: Data(body.utf8), type: type) }
        expect(try await raw("{\"inputs\": [\"1+2\""), 400, "not valid JSON")
        expect(try await raw(""), 400, "body is empty")
        expect(try await raw("[1, 2]"), 400, "JSON object")
        expect(try await raw("{\"inputs\": \"1+2\"}"), 400, "field 'inputs' must be an array of strings")
        expect(try await raw("{\"inputs\": [1]}"), 400, "field 'inputs' item 0 must be a string")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"beam\": \"wide\"}"), 400, "field 'beam' must be an integer")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"beam\": 1.5}"), 400, "field 'beam' must be an integer, got 1.5")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"bean\": 2}"), 400, "unknown field 'bean'")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"top_k\": null}"), 400, "field 'top_k' is null")
        expect(try await send(base, "v1/decode?beam=2", body: Data("{\"inputs\": [\"1+2\"]}".utf8)), 400, "query parameter 'beam'")
        expect(try await raw("{\"inputs\": [\"1+2\", \"1x2\"]}"), 400, "inputs item 1")
        expect(try await raw("{\"inputs\": [\"1+2\", \"\"]}"), 400, "empty input")
        expect(try await raw("{\"inputs\": []}"), 400, "at least one input")
        expect(try await raw("{\"beam\": 2}"), 400, "missing field 'inputs'")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"beam\": 17}"), 400, "beam must be in 1...16")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"max_length\": 0}"), 400, "max_length")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"seed\": 3}"), 400, "\"sample\": true")
        expect(try await raw("{\"inputs\": [\"1+2\"], \"sample\": true, \"top_p\": 2}"), 400, "top-p")
        expect(try await raw("{\"inputs\": [\"\(String(repeating: "1", count: 21))\"]}"), 400, "more than the limit of 20")
        expect(try await raw("{\"inputs\": [\"1\", \"2\", \"3\", \"4\", \"5\"]}"), 400, "more than the limit of 4")
        expect(try await raw("{\"inputs\": [\"\(String(repeating: "1", count: 5000))\"]}"), 413, "limit of 4096")
        expect(try await raw("{\"inputs\": [\"1+2\"]}", type: "text/plain"), 415, "Content-Type")
        expect(try await raw("RIFF....WAVE", type: "audio/wav"), 415, "reads text")
        expect(try await raw("{\"audio\": [\"AAAA\"]}"), 400, "reads text")
        expect(try await send(base, "v1/decode", method: "GET", type: nil), 405, "takes POST")
        let wrongMethod = try await send(base, "v1/decode", method: "GET", type: nil)
        XCTAssertEqual(wrongMethod.headers["Allow"] as? String, "POST")
        expect(try await send(base, "v2/decode", body: Data("{}".utf8)), 404, "no such path")
        // Still serving.
        let ok = try await post(base, ["inputs": ["1+2"]])
        XCTAssertEqual(ok.status, 200, ok.error)
        let health = try await send(base, "health", method: "GET", type: nil)
        XCTAssertEqual(health.json["status"] as? String, "ok")
        let info = try await send(base, "v1/model", method: "GET", type: nil)
        XCTAssertEqual(info.json["kind"] as? String, "sequence-transformer")
        XCTAssertEqual(info.json["input"] as? String, "text")
        XCTAssertEqual((info.json["training"] as? [String: String])?["task"], "serve test")
        XCTAssertEqual(info.json["parameters"] as? Int, try DecodingModel(contentsOf: directory.appendingPathComponent("text.safetensors")).parameterCount)
        XCTAssertEqual(info.json["int8_weights"] as? Int, 0)
        let openapi = try await send(base, "openapi.json", method: "GET", type: nil)
        XCTAssertEqual((openapi.json["paths"] as? [String: Any])?.keys.sorted(), ["/health", "/metrics", "/openapi.json", "/v1/decode", "/v1/model"])
        let metrics = String(decoding: try await send(base, "metrics", method: "GET", type: nil).body, as: UTF8.self)
        XCTAssertTrue(metrics.contains("loom_requests_total{route=\"/v1/decode\",status=\"400\"} 21"), metrics)
        XCTAssertTrue(metrics.contains("loom_requests_total{route=\"/v1/decode\",status=\"413\"} 1"), metrics)
        XCTAssertTrue(metrics.contains("loom_requests_total{route=\"/v1/decode\",status=\"415\"} 2"), metrics)
        XCTAssertTrue(metrics.contains("loom_requests_total{route=\"other\",status=\"404\"} 1"), metrics)
        try await running.stop()
    }

    func testAudioBodiesAndBase64MatchTheLibrary() async throws {
        let url = try audioModel()
        let running = try await start(url)
        let model = try DecodingModel(contentsOf: url)
        let samples = (0..<4000).map { (i: Int) -> Float in
            let t = Double(i)
            return Float(0.3 * sin(t * 0.07) + 0.1 * sin(t * 0.31))
        }
        let file = directory.appendingPathComponent("a.wav")
        try AudioWriter.write(Audio(samples: samples, sampleRate: 8000), to: file)
        let wav = try Data(contentsOf: file)
        let expected = try model.decode([model.prepare(audioPath: file.path)], options: DecodingOptions(maximumLength: 5, beamWidth: 2, nBest: 2))
        let rawBody = try await send(running.base, "v1/decode?beam=2&nbest=2&max_length=5", body: wav, type: "audio/wav")
        XCTAssertEqual(rawBody.status, 200, rawBody.error)
        XCTAssertEqual(texts(rawBody), expected.map { $0.map(\.text) })
        XCTAssertEqual(scores(rawBody), expected.map { $0.map(\.hypothesis.score) })
        let base64 = try await post(running.base, ["audio": [wav.base64EncodedString(), wav.base64EncodedString()], "beam": 2, "nbest": 2, "max_length": 5])
        XCTAssertEqual(base64.status, 200, base64.error)
        XCTAssertEqual(texts(base64), [expected[0].map(\.text), expected[0].map(\.text)])
        // Unreadable audio: 400 naming the item, never the temporary file.
        let garbage = try await send(running.base, "v1/decode", body: Data("RIFF\u{1}\u{2}WAVEnot audio".utf8), type: "audio/wav")
        XCTAssertEqual(garbage.status, 400, garbage.error)
        XCTAssertTrue(garbage.error.contains("audio item 0") && !garbage.error.contains("loom-serve-"), garbage.error)
        let notBase64 = try await post(running.base, ["audio": ["%%%"]])
        XCTAssertEqual(notBase64.status, 400)
        XCTAssertTrue(notBase64.error.contains("not base64"), notBase64.error)
        let text = try await post(running.base, ["inputs": ["1+2"]])
        XCTAssertEqual(text.status, 400)
        XCTAssertTrue(text.error.contains("reads audio"), text.error)
        let badQuery = try await send(running.base, "v1/decode?beam=two", body: wav, type: "audio/wav")
        XCTAssertEqual(badQuery.status, 400, badQuery.error)
        let again = try await send(running.base, "v1/decode", body: wav, type: "audio/wav")
        XCTAssertEqual(again.status, 200)
        try await running.stop()
    }

    // MARK: - Limits and shutdown

    func testAFullQueueGets429AndALateRequest503() async throws {
        var limits = ServeLimits()
        limits.maximumQueue = 2
        limits.maximumInputs = 2
        limits.timeout = 0.5
        let running = try await start(try textModel(), limits: limits)
        let batcher = running.server.batcher
        batcher.hold(true)
        let waiting = Task { try await self.post(running.base, ["inputs": ["1+2", "3+4"]]) }
        while batcher.queueLength < 2 { try await Task.sleep(nanoseconds: 1_000_000) }
        let full = try await post(running.base, ["inputs": ["5+6"]])
        XCTAssertEqual(full.status, 429, full.error)
        XCTAssertEqual(full.headers["Retry-After"] as? String, "1")
        // The held request passes its timeout: 503, and it leaves the queue.
        let late = try await waiting.value
        XCTAssertEqual(late.status, 503, late.error)
        XCTAssertTrue(late.error.contains("timeout"), late.error)
        XCTAssertEqual(batcher.queueLength, 0)
        batcher.hold(false)
        let ok = try await post(running.base, ["inputs": ["5+6"]])
        XCTAssertEqual(ok.status, 200, ok.error)
        try await running.stop()
    }

    func testShutdownAnswersEveryQueuedRequest() async throws {
        let url = try textModel()
        let running = try await start(url)
        let batcher = running.server.batcher
        batcher.hold(true)
        let inputs = ["1+2", "30+4", "500+6"]
        let inFlight = inputs.map { input in Task { try await self.post(running.base, ["inputs": [input], "max_length": 6]) } }
        while batcher.queueLength < inputs.count { try await Task.sleep(nanoseconds: 1_000_000) }
        let stopping = Task { try await running.stop() }
        batcher.hold(false)
        let model = try DecodingModel(contentsOf: url)
        for (input, task) in zip(inputs, inFlight) {
            let reply = try await task.value
            XCTAssertEqual(reply.status, 200, reply.error)
            XCTAssertEqual(texts(reply), try model.decode([model.prepare(text: input)], options: DecodingOptions(maximumLength: 6)).map { $0.map(\.text) })
        }
        try await stopping.value
        // Stopped: nothing listens any more.
        do {
            _ = try await send(running.base, "health", method: "GET", type: nil)
            XCTFail("the server still answers after shutdown")
        } catch {}
    }

    func testLoomServeStopsOnSIGTERMWithStatus0() throws {
        let url = try textModel()
        // Through `loom serve`, which becomes loom-serve (exec): the signal reaches the server.
        let executable = builtExecutable("loom")
        guard FileManager.default.isExecutableFile(atPath: builtExecutable("loom-serve").path) else { throw XCTSkip("loom-serve is not built beside the tests") }
        let process = Process()
        process.executableURL = executable
        process.arguments = ["serve", "--model", url.path, "--port", "0"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        // The first line names the port once the server listens.
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        let first = String(decoding: line, as: UTF8.self)
        XCTAssertTrue(first.contains("http://127.0.0.1:"), first)
        let port = first.split(separator: ":").last.flatMap { Int($0.prefix(while: \.isNumber)) } ?? 0
        let ready = expectation(description: "decoded")
        Task {
            let reply = try await self.post(URL(string: "http://127.0.0.1:\(port)")!, ["inputs": ["1+2"]])
            XCTAssertEqual(reply.status, 200, reply.error)
            ready.fulfill()
        }
        wait(for: [ready], timeout: 120)
        kill(process.processIdentifier, SIGTERM)
        let rest = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertTrue(String(decoding: rest, as: UTF8.self).contains("stopped"))
    }
}
