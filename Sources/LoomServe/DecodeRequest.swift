import Foundation
import Loom

/// A request the server refuses, with the HTTP status and a message naming the problem.
public struct ServeError: Error, CustomStringConvertible, Equatable {
    public var status: Int
    public var message: String
    /// Seconds after which a retry may succeed (`Retry-After`, with 429).
    public var retryAfter: Int?

    public init(_ status: Int, _ message: String, retryAfter: Int? = nil) {
        (self.status, self.message, self.retryAfter) = (status, message, retryAfter)
    }

    public var description: String { "\(status): \(message)" }
    static func bad(_ message: String) -> ServeError { ServeError(400, message) }
}

/// The body of `POST /v1/decode` (JSON). Text models take `inputs`; audio models take `audio`
/// (files in any format libsndfile reads, base64-encoded). Every other field is optional and
/// named as in `loom decode`'s options. Unknown fields are refused, so a misspelt option is
/// never silently ignored.
///
///     {"inputs": ["12+30", "7+5"], "beam": 5, "nbest": 2}
public struct DecodeRequest: Decodable, Equatable {
    public var inputs: [String]?
    public var audio: [String]?
    public var beam: Int?
    public var nbest: Int?
    public var max_length: Int?
    public var min_length: Int?
    public var length_penalty: Double?
    public var sample: Bool?
    public var temperature: Double?
    public var top_k: Int?
    public var top_p: Double?
    public var seed: UInt64?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case inputs, audio, beam, nbest, max_length, min_length, length_penalty, sample, temperature, top_k, top_p, seed
    }

    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init() {}

    public init(from decoder: Decoder) throws {
        let all = try decoder.container(keyedBy: AnyKey.self)
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = all.allKeys.map(\.stringValue).sorted().first(where: { !known.contains($0) }) {
            throw ServeError.bad("unknown field '\(unknown)' (fields: \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        // null is not a value for any field: leave the field out for its default.
        if let key = c.allKeys.sorted(by: { $0.rawValue < $1.rawValue }).first(where: { (try? c.decodeNil(forKey: $0)) == true }) {
            throw ServeError.bad("field '\(key.rawValue)' is null: leave it out for its default")
        }
        inputs = try c.decodeIfPresent([String].self, forKey: .inputs)
        audio = try c.decodeIfPresent([String].self, forKey: .audio)
        beam = try c.decodeIfPresent(Int.self, forKey: .beam)
        nbest = try c.decodeIfPresent(Int.self, forKey: .nbest)
        max_length = try c.decodeIfPresent(Int.self, forKey: .max_length)
        min_length = try c.decodeIfPresent(Int.self, forKey: .min_length)
        length_penalty = try c.decodeIfPresent(Double.self, forKey: .length_penalty)
        sample = try c.decodeIfPresent(Bool.self, forKey: .sample)
        temperature = try c.decodeIfPresent(Double.self, forKey: .temperature)
        top_k = try c.decodeIfPresent(Int.self, forKey: .top_k)
        top_p = try c.decodeIfPresent(Double.self, forKey: .top_p)
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed)
    }

    /// Parses a JSON body; every failure is a 400 naming the field and what was expected.
    public static func parse(json body: Data) throws -> DecodeRequest {
        guard !body.isEmpty else { throw ServeError.bad("the body is empty: send a JSON object such as {\"inputs\": [\"...\"]}") }
        do {
            return try JSONDecoder().decode(DecodeRequest.self, from: body)
        } catch let error as ServeError {
            throw error
        } catch let DecodingError.typeMismatch(type, context) {
            throw ServeError.bad("\(field(context.codingPath)) must be \(describe(type))")
        } catch let DecodingError.valueNotFound(type, context) {
            throw ServeError.bad("\(field(context.codingPath)) must be \(describe(type)), not null")
        } catch let DecodingError.dataCorrupted(context) {
            guard let value = try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) else {
                throw ServeError.bad("the body is not valid JSON")
            }
            // Valid JSON with a number of the wrong kind (1.5 or -1 where a count belongs).
            if let object = value as? [String: Any] {
                for key in ["beam", "nbest", "max_length", "min_length", "top_k", "seed"] {
                    guard let number = object[key] as? NSNumber else { continue }
                    let value = "\(number)"
                    if key == "seed" ? UInt64(value) == nil : Int(value) == nil {
                        throw ServeError.bad("field '\(key)' must be \(key == "seed" ? "an integer in 0...2^64-1" : "an integer"), got \(value)")
                    }
                }
            }
            let detail = context.codingPath.isEmpty ? "" : "\(field(context.codingPath)): "
            throw ServeError.bad(detail + context.debugDescription)
        } catch {
            throw ServeError.bad("the body is not a valid request: \(error)")
        }
    }

    /// Options from a query string, for an audio body (`POST /v1/decode?beam=5`).
    public static func parse(query: [(String, String)]) throws -> DecodeRequest {
        var object: [String: Any] = [:]
        for (key, value) in query {
            // Each value is read as JSON (numbers, true/false) so that types are checked as in a body.
            if let number = Double(value), number.isFinite { object[key] = value.contains(where: { ".eE".contains($0) }) ? number : Int(value) ?? number }
            else if value == "true" || value == "false" { object[key] = value == "true" }
            else { object[key] = value }
        }
        if object["inputs"] != nil || object["audio"] != nil { throw ServeError.bad("with an audio body, give only options in the query (not inputs or audio)") }
        return try parse(json: JSONSerialization.data(withJSONObject: object))
    }

    static func field(_ path: [CodingKey]) -> String {
        guard let first = path.first else { return "the body" }
        var name = "field '\(first.stringValue)'"
        if let index = path.dropFirst().first?.intValue { name += " item \(index)" }
        return name
    }

    static func describe(_ type: Any.Type) -> String {
        if String(describing: type).hasPrefix("Array") { return "an array of strings" }
        switch type {
        case is String.Type: return "a string"
        case is Int.Type, is UInt64.Type: return "an integer"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        default: return "a JSON object"
        }
    }

    /// The decoding options, checked against their ranges and the server's limits.
    public func decodingOptions(limits: ServeLimits) throws -> DecodingOptions {
        var options = DecodingOptions(maximumLength: max_length ?? limits.defaultOutputLength, minimumLength: min_length ?? 0,
                                      beamWidth: beam ?? 1, nBest: nbest ?? 1, lengthPenalty: length_penalty ?? 0)
        if sample == true {
            options.sampling = SamplingOptions(temperature: temperature ?? 1, topK: top_k, topP: top_p, seed: seed ?? 1)
        } else if temperature != nil || top_k != nil || top_p != nil || seed != nil {
            throw ServeError.bad("temperature, top_k, top_p and seed apply to sampling: add \"sample\": true")
        }
        if !(1...limits.maximumBeam).contains(options.beamWidth) {
            throw ServeError.bad("beam must be in 1...\(limits.maximumBeam) on this server, got \(options.beamWidth)")
        }
        if !(1...limits.maximumOutputLength).contains(options.maximumLength) {
            throw ServeError.bad("max_length must be in 1...\(limits.maximumOutputLength) on this server, got \(options.maximumLength)")
        }
        do { try options.validate() } catch { throw ServeError.bad("\(error)") }
        return options
    }
}
