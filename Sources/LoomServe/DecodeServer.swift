import Foundation
import Hummingbird
import Logging
import Loom
import NIOCore
import ServiceLifecycle

/// What the server accepts and how it batches; every limit is a `loom-serve` option.
public struct ServeLimits: Sendable, Equatable {
    /// The largest request body (JSON or an audio file).
    public var maximumBodyBytes = 8 << 20
    /// The most inputs in one request.
    public var maximumInputs = 64
    /// The longest text input, in characters.
    public var maximumInputCharacters = 1_000
    /// The widest beam (and so the largest n-best) a request may ask for.
    public var maximumBeam = 16
    /// The largest `max_length` a request may ask for.
    public var maximumOutputLength = 1_000
    /// The `max_length` of a request that asks none.
    public var defaultOutputLength = 100
    /// The most inputs decoded together.
    public var maximumBatch = 64
    /// The longest a request waits for others on their way to join its batch, in seconds.
    public var maximumDelay = 0.002
    /// The most inputs waiting; past it requests get 429 with Retry-After.
    public var maximumQueue = 1_024
    /// Seconds a decode request may wait in the queue; one not started by then gets 503 (a
    /// started batch is always answered).
    public var timeout = 30.0

    public init() {}
}

/// `loom-serve`: a model behind HTTP/1.1 (Hummingbird on SwiftNIO).
///
/// - `POST /v1/decode`: JSON `{"inputs": [...]}` (text models) or `{"audio": [base64...]}`, or
///   an audio file as the body with options in the query; answers every input's outputs with
///   scores (see `openapi.json`).
/// - `GET /v1/model`, `GET /health`, `GET /metrics` (Prometheus text), `GET /openapi.json`.
///
/// Requests are decoded in batches by a `DecodeBatcher`; bad requests get a JSON error with
/// status 400 (413 too large, 415 wrong content type, 429 queue full, 503 timeout or shutting
/// down) and the server keeps serving. `run` returns after a graceful shutdown (SIGTERM or
/// SIGINT when it handles signals, or `shutdown()`): no new connections, every queued request
/// answered.
public final class DecodeServer: @unchecked Sendable {
    public let model: DecodingModel
    public let limits: ServeLimits
    public let host: String
    public let port: Int
    let batcher: DecodeBatcher
    let metrics = ServeMetrics()
    let logger: Logger
    /// The OpenAPI document of this server: the committed one narrowed to its model (text or
    /// audio) and its limits.
    let openAPI: [UInt8]
    private let lock = NSLock()
    private var group: ServiceGroup?
    private var stopRequested = false

    public init(model: DecodingModel, host: String = "127.0.0.1", port: Int = 8080, limits: ServeLimits = ServeLimits()) {
        self.model = model
        self.host = host
        self.port = port
        self.limits = limits
        batcher = DecodeBatcher(model: model, maximumBatch: limits.maximumBatch, maximumDelay: limits.maximumDelay, maximumQueue: limits.maximumQueue,
                                timeout: limits.timeout)
        var logger = Logger(label: "loom-serve")
        logger.logLevel = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:)) ?? .warning
        self.logger = logger
        openAPI = Self.openAPIDocument(audio: model.audioFeatures != nil, limits: limits, model: model.name)
        let metrics = self.metrics
        batcher.onBatch = { report in
            metrics.batchSizes.record(Double(report.sequences))
            metrics.batchSeconds.record(.nanoseconds(Int64(report.seconds * 1e9)))
            metrics.sequences.increment(by: Int64(report.sequences))
        }
    }

    /// Serves until a graceful shutdown; `onListening` gets the bound port (useful with port 0).
    public func run(handlingSignals: Bool = true, onListening: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let app = Application(
            responder: CallbackResponder<BasicRequestContext> { [self] request, _ in await respond(to: request) },
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "loom-serve"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? -1) },
            logger: logger)
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: [app], gracefulShutdownSignals: handlingSignals ? [.sigterm, .sigint] : [], logger: logger))
        let stopEarly = lock.withLock {
            self.group = group
            return stopRequested
        }
        batcher.start()
        if stopEarly { await group.triggerGracefulShutdown() }
        defer { batcher.finish() }
        try await group.run()
    }

    /// Stops accepting connections, answers what is in flight, and lets `run` return.
    public func shutdown() async {
        let group = lock.withLock {
            stopRequested = true
            return self.group
        }
        await group?.triggerGracefulShutdown()
    }

    // MARK: - Routing

    func respond(to request: Request) async -> Response {
        let start = ContinuousClock.now
        let path = request.uri.path
        let route = Route(rawValue: path)
        let response: Response
        if let route {
            if request.method == route.method || (request.method == .head && route.method == .get) {
                do { response = try await handle(route, request) } catch {
                    response = errorResponse(error)
                }
            } else {
                var r = errorResponse(ServeError(405, "\(path) takes \(route.method.rawValue), not \(request.method.rawValue)"))
                r.headers[.allow] = route.method.rawValue
                response = r
            }
        } else {
            response = errorResponse(ServeError(404, "no such path: \(path) (paths: \(Route.allCases.map(\.rawValue).sorted().joined(separator: ", ")))"))
        }
        metrics.count(route: route?.rawValue ?? "other", status: Int(response.status.code))
        if route == .decode { metrics.requestSeconds.record(ContinuousClock.now - start) }
        return response
    }

    enum Route: String, CaseIterable {
        case decode = "/v1/decode", model = "/v1/model", health = "/health", metrics = "/metrics", openapi = "/openapi.json"

        var method: HTTPRequest.Method { self == .decode ? .post : .get }
    }

    func handle(_ route: Route, _ request: Request) async throws -> Response {
        switch route {
        case .decode: return try await decode(request)
        case .model: return json(modelDescription)
        case .health: return json(["status": "ok"])
        case .metrics: return text(metricsText(), type: "text/plain; version=0.0.4; charset=utf-8")
        case .openapi: return body(openAPI, type: "application/json")
        }
    }

    func metricsText() -> String {
        metrics.queueLength.set(Double(batcher.queueLength))
        return metrics.text()
    }

    /// `openapi.json` for this model: a text model takes `inputs` (required) and no audio
    /// bodies or query options; an audio model takes `audio` or an audio body. The limits appear
    /// as `maxItems`, `maxLength` and `maximum`, so a client generated from it stays within them.
    static func openAPIDocument(audio: Bool, limits: ServeLimits, model: String) -> [UInt8] {
        guard var document = try? JSONSerialization.jsonObject(with: Data(PackageResources.openapi_json)) as? [String: Any],
              var paths = document["paths"] as? [String: Any], var decode = paths["/v1/decode"] as? [String: Any],
              var post = decode["post"] as? [String: Any], var body = post["requestBody"] as? [String: Any],
              var content = body["content"] as? [String: Any], var components = document["components"] as? [String: Any],
              var schemas = components["schemas"] as? [String: Any], var request = schemas["DecodeRequest"] as? [String: Any],
              var properties = request["properties"] as? [String: Any]
        else { return PackageResources.openapi_json }
        let inputsKey = audio ? "audio" : "inputs"
        properties.removeValue(forKey: audio ? "inputs" : "audio")
        if var inputs = properties[inputsKey] as? [String: Any] {
            inputs["maxItems"] = limits.maximumInputs
            if !audio { inputs["items"] = ["type": "string", "minLength": 1, "maxLength": limits.maximumInputCharacters] }
            properties[inputsKey] = inputs
        }
        for (key, maximum) in [("beam", limits.maximumBeam), ("nbest", limits.maximumBeam), ("max_length", limits.maximumOutputLength),
                               ("min_length", limits.maximumOutputLength)] {
            if var p = properties[key] as? [String: Any] { p["maximum"] = maximum; properties[key] = p }
        }
        request["properties"] = properties
        request["required"] = [inputsKey]
        schemas["DecodeRequest"] = request
        components["schemas"] = schemas
        document["components"] = components
        if !audio {
            content = content.filter { $0.key == "application/json" }
            post.removeValue(forKey: "parameters")
        }
        body["content"] = content
        post["requestBody"] = body
        decode["post"] = post
        paths["/v1/decode"] = decode
        document["paths"] = paths
        if var info = document["info"] as? [String: Any] {
            info["description"] = "\(info["description"] ?? "") This server: \(model), \(audio ? "audio" : "text") inputs."
            document["info"] = info
        }
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data(PackageResources.openapi_json)
        return Array(data)
    }

    // MARK: - Decoding

    func decode(_ request: Request) async throws -> Response {
        batcher.beginArrival()
        var announced = true
        defer { if announced { batcher.abandonArrival() } }
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limits.maximumBodyBytes {
            throw ServeError(413, "the body has \(length) bytes, more than the limit of \(limits.maximumBodyBytes)")
        }
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: limits.maximumBodyBytes) } catch is NIOTooManyBytesError {
            throw ServeError(413, "the body is larger than the limit of \(limits.maximumBodyBytes) bytes")
        }
        let body = Data(buffer.readableBytesView)
        let contentType = (request.headers[.contentType] ?? "application/json").lowercased()
        let parsed: DecodeRequest
        let sources: [DecodingModel.Source]
        let echoes: [String?]
        if contentType.hasPrefix("application/json") {
            if let (key, _) = request.uri.queryParameters.first {
                throw ServeError.bad("query parameter '\(key)': options of a JSON request go in its body (the query is for audio bodies)")
            }
            parsed = try DecodeRequest.parse(json: body)
            (sources, echoes) = try prepare(parsed)
        } else if contentType.hasPrefix("audio/") || contentType.hasPrefix("application/octet-stream") {
            parsed = try DecodeRequest.parse(query: request.uri.queryParameters.map { (String($0.key), String($0.value)) })
            guard model.audioFeatures != nil else { throw ServeError(415, "this model reads text: send application/json with \"inputs\"") }
            (sources, echoes) = ([try audioSource(body, item: 0)], [nil])
        } else {
            throw ServeError(415, "Content-Type \(contentType): send application/json, or an audio file (audio/wav, audio/flac, ...)")
        }
        let options = try parsed.decodingOptions(limits: limits)
        announced = false
        let outputs: DecodeBatcher.Outputs
        do {
            outputs = try await batcher.submit(sources, options: options, arrived: true)
        } catch let refusal as DecodeBatcher.Refusal {
            switch refusal {
            case .queueFull: throw ServeError(429, refusal.description, retryAfter: 1)
            case .shuttingDown, .timedOut: throw ServeError(503, refusal.description)
            }
        }
        for best in outputs.compactMap(\.first) { metrics.countStop(best.hypothesis.stop) }
        return self.body(Self.decodeResponse(echoes, outputs), type: "application/json; charset=utf-8")
    }

    /// The sources of a JSON request, checked; each error names the input.
    func prepare(_ request: DecodeRequest) throws -> ([DecodingModel.Source], [String?]) {
        let audio = model.audioFeatures != nil
        if audio {
            guard request.inputs == nil else { throw ServeError.bad("this model reads audio: send \"audio\" (base64 files), not \"inputs\"") }
            guard let items = request.audio else { throw ServeError.bad("missing field 'audio' (base64 audio files)") }
            try checkCount(items.count, field: "audio")
            return (try items.enumerated().map { i, item in
                guard let data = Data(base64Encoded: item, options: .ignoreUnknownCharacters), !data.isEmpty else {
                    throw ServeError.bad("audio item \(i) is not base64")
                }
                return try audioSource(data, item: i)
            }, [String?](repeating: nil, count: items.count))
        }
        guard request.audio == nil else { throw ServeError.bad("this model reads text: send \"inputs\", not \"audio\"") }
        guard let inputs = request.inputs else { throw ServeError.bad("missing field 'inputs' (an array of strings)") }
        try checkCount(inputs.count, field: "inputs")
        return (try inputs.enumerated().map { i, text in
            do { return try model.prepare(text: text, maximumCharacters: limits.maximumInputCharacters) } catch {
                throw ServeError.bad("inputs item \(i): \(error)")
            }
        }, inputs)
    }

    func checkCount(_ count: Int, field: String) throws {
        guard count >= 1 else { throw ServeError.bad("field '\(field)' is empty: give at least one input") }
        guard count <= limits.maximumInputs else {
            throw ServeError.bad("\(count) inputs, more than the limit of \(limits.maximumInputs) per request")
        }
    }

    /// Features of an audio file held in memory: libsndfile reads it from a private temporary
    /// file, removed at once; errors name the item, not the temporary path.
    func audioSource(_ data: Data, item: Int) throws -> DecodingModel.Source {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("loom-serve-\(UUID().uuidString)")
        guard FileManager.default.createFile(atPath: url.path, contents: data, attributes: [.posixPermissions: 0o600]) else {
            throw ServeError(500, "could not hold the audio in a temporary file")
        }
        defer { try? FileManager.default.removeItem(at: url) }
        do { return try model.prepare(audioPath: url.path) } catch {
            throw ServeError.bad("audio item \(item): " + "\(error)".replacingOccurrences(of: url.path, with: "the audio"))
        }
    }

    // MARK: - Responses

    /// The answer to a decode request, written directly (JSONEncoder was a visible share of a
    /// request's time under load): `{"results": [{"input": ..., "outputs": [{"finished", "log_probability",
    /// "score", "stop", "text"}]}]}`, keys sorted.
    static func decodeResponse(_ echoes: [String?], _ outputs: DecodeBatcher.Outputs) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + 96 * outputs.count)
        out += Array(#"{"results":["#.utf8)
        for (i, (echo, hypotheses)) in zip(echoes, outputs).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ",")) }
            out.append(UInt8(ascii: "{"))
            if let echo {
                out += Array(#""input":"#.utf8)
                JSONText.string(echo, into: &out)
                out.append(UInt8(ascii: ","))
            }
            out += Array(#""outputs":["#.utf8)
            for (j, h) in hypotheses.enumerated() {
                if j > 0 { out.append(UInt8(ascii: ",")) }
                out += Array(#"{"finished":"#.utf8) + Array((h.hypothesis.finished ? "true" : "false").utf8)
                out += Array(#","log_probability":"#.utf8)
                JSONText.number(h.hypothesis.logProbability, into: &out)
                out += Array(#","score":"#.utf8)
                JSONText.number(h.hypothesis.score, into: &out)
                out += Array(#","stop":"#.utf8)
                JSONText.string(h.hypothesis.stop.rawValue, into: &out)
                out += Array(#","text":"#.utf8)
                JSONText.string(h.text, into: &out)
                out.append(UInt8(ascii: "}"))
            }
            out += Array("]}".utf8)
        }
        out += Array("]}\n".utf8)
        return out
    }

    struct ErrorBody: Encodable {
        var error: String
        var status: Int
    }

    struct ModelDescription: Encodable {
        var name, format, kind, input: String
        var parameters: Int
        /// Weight matrices stored in int8 (0 for a Float model).
        var int8_weights: Int
        var summary: String
        var training: [String: String]
        var limits: [String: Double]
    }

    var modelDescription: ModelDescription {
        let kind: String
        switch model.kind {
        case .transformer: kind = "sequence-transformer"
        case .head: kind = "sequence-to-one"
        }
        return ModelDescription(
            name: model.name, format: model.format, kind: kind, input: model.audioFeatures == nil ? "text" : "audio",
            parameters: model.parameterCount, int8_weights: model.quantizedWeightCount, summary: model.summary, training: model.training,
            limits: ["max_body_bytes": Double(limits.maximumBodyBytes), "max_inputs": Double(limits.maximumInputs),
                     "max_input_characters": Double(limits.maximumInputCharacters), "max_beam": Double(limits.maximumBeam),
                     "max_length": Double(limits.maximumOutputLength), "max_batch": Double(limits.maximumBatch),
                     "max_delay_seconds": limits.maximumDelay, "max_queue": Double(limits.maximumQueue), "timeout_seconds": limits.timeout])
    }

    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // JSON has no NaN or infinity: such scores are strings, as in `loom decode --format json`.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return encoder
    }()

    func json<T: Encodable>(_ value: T, status: Int = 200) -> Response {
        let data = (try? Self.encoder.encode(value)) ?? Data("{}".utf8)
        var response = body(Array(data) + [10], type: "application/json; charset=utf-8")
        response.status = HTTPResponse.Status(code: status)
        return response
    }

    func text(_ string: String, type: String) -> Response { body(Array(string.utf8), type: type) }

    func body(_ bytes: [UInt8], type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type], body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    func errorResponse(_ error: Error) -> Response {
        let serveError: ServeError
        switch error {
        case let e as ServeError: serveError = e
        case let e as DecodingModel.InputError: serveError = .bad("\(e)")
        case let e as TensorError: serveError = .bad("\(e)")
        case is CancellationError: serveError = ServeError(503, "the request was cancelled")
        default:
            logger.error("decode failed: \(error)")
            serveError = ServeError(500, "internal error: \(error)")
        }
        var response = json(ErrorBody(error: serveError.message, status: serveError.status), status: serveError.status)
        if let seconds = serveError.retryAfter { response.headers[.retryAfter] = String(seconds) }
        return response
    }
}

/// JSON text written by hand for the hot path (RFC 8259).
enum JSONText {
    /// A string with `"`, `\` and control characters escaped.
    static func string(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out += [92, 34]
            case UInt8(ascii: "\\"): out += [92, 92]
            case 10: out += [92, UInt8(ascii: "n")]
            case 13: out += [92, UInt8(ascii: "r")]
            case 9: out += [92, UInt8(ascii: "t")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    /// A number in its shortest form that reads back exactly; NaN and infinities (which JSON
    /// lacks) as the strings "NaN", "Infinity", "-Infinity", as `loom decode --format json` does.
    static func number(_ x: Double, into out: inout [UInt8]) {
        if x.isFinite { out += Array("\(x)".utf8) } else { string(x.isNaN ? "NaN" : x > 0 ? "Infinity" : "-Infinity", into: &out) }
    }
}
