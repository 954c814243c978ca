import Foundation

/// Why a safetensors file was refused; every case names the rule (and the tensor) it broke.
public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
    case headerTooSmall
    case headerTooLarge(UInt64)
    case invalidHeaderLength(Int, fileSize: Int)
    case invalidHeader(String)
    case unknownDType(tensor: String, String)
    case unsupportedDType(tensor: String, String)
    case invalidOffset(tensor: String)
    case overflow(tensor: String)
    case sizeMismatch(tensor: String, expected: Int, actual: Int)
    case incompleteBuffer(covered: Int, size: Int)
    case duplicateKey(String)
    case missingTensor(String)
    case shapeMismatch(tensor: String, expected: [Int], actual: [Int])
    case io(String)

    public var description: String {
        switch self {
        case .headerTooSmall: return "safetensors: file is shorter than the 8-byte header length"
        case let .headerTooLarge(n): return "safetensors: header length \(n) exceeds the limit of 100,000,000 bytes"
        case let .invalidHeaderLength(n, size): return "safetensors: header length \(n) runs past the end of the file (\(size) bytes)"
        case let .invalidHeader(m): return "safetensors: invalid header: \(m)"
        case let .unknownDType(t, d): return "safetensors: unknown dtype \(String(reflecting: d)) for tensor \"\(t)\""
        case let .unsupportedDType(t, d): return "safetensors: tensor \"\(t)\" has dtype \(d); Loom reads F32 and F64"
        case let .invalidOffset(t): return "safetensors: invalid offset for tensor \"\(t)\" (tensors must be contiguous from 0, in order, without overlap)"
        case let .overflow(t): return "safetensors: size of tensor \"\(t)\" overflows"
        case let .sizeMismatch(t, e, a): return "safetensors: tensor \"\(t)\" needs \(e) bytes for its shape and dtype but its offsets span \(a)"
        case let .incompleteBuffer(c, s): return "safetensors: tensors cover \(c) bytes of a \(s)-byte data buffer (the last offset must be the end of the file)"
        case let .duplicateKey(k): return "safetensors: duplicate key \"\(k)\" in the header"
        case let .missingTensor(t): return "safetensors: no tensor named \"\(t)\""
        case let .shapeMismatch(t, e, a): return "safetensors: tensor \"\(t)\" has shape \(a), the model expects \(e)"
        case let .io(m): return m
        }
    }
}

/// The safetensors format: an 8-byte little-endian header length, a JSON header (tensor name ->
/// dtype, shape, data offsets; `__metadata__` string -> string), then the tensors' bytes,
/// row-major, little-endian, contiguous.
///
/// The writer produces the reference implementation's layout (tensors sorted by descending dtype
/// alignment then name, header space-padded to a multiple of 8). The reader treats the file as
/// hostile: every length and offset is checked with overflow-checked arithmetic before anything
/// is allocated, and it is stricter than the reference where the format says so (duplicate keys,
/// a header not starting with "{", non-string metadata are refused).
public struct SafeTensors: Sendable {
    /// One tensor's description in the header.
    public struct Entry: Sendable, Equatable {
        public var dtype: String
        public var shape: [Int]
        /// Byte range within the data buffer.
        public var range: Range<Int>
    }

    /// Bytes per element of every dtype the format defines (sub-byte types as fractions are
    /// not readable here and count as unsupported).
    static let dtypeSizes: [String: Int] = [
        "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F8_E4M3FNUZ": 1, "F8_E5M2FNUZ": 1,
        "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "C64": 8, "F64": 8, "I64": 8, "U64": 8,
    ]
    static let subByteDTypes: Set = ["F4", "F6_E2M3", "F6_E3M2"]
    static let maximumHeader = 100_000_000

    public let entries: [String: Entry]
    public let metadata: [String: String]
    let data: Data
    let dataStart: Int

    /// Reads and validates a file (a regular file only, of at most `limit` bytes: see `UserFile`).
    public static func read(_ url: URL, limit: Int = UserFile.defaultLimit) throws -> SafeTensors {
        return try SafeTensors(data: UserFile.read(url.path, what: "safetensors file", limit: limit))
    }

    /// Validates bytes as a safetensors file.
    public init(data: Data) throws {
        guard data.count >= 8 else { throw SafeTensorsError.headerTooSmall }
        let n = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard n <= UInt64(Self.maximumHeader) else { throw SafeTensorsError.headerTooLarge(n) }
        let headerLength = Int(n)
        guard 8 + headerLength <= data.count else { throw SafeTensorsError.invalidHeaderLength(headerLength, fileSize: data.count) }
        let headerBytes = data.subdata(in: (data.startIndex + 8)..<(data.startIndex + 8 + headerLength))
        guard let text = String(data: headerBytes, encoding: .utf8) else { throw SafeTensorsError.invalidHeader("not UTF-8") }
        guard text.first == "{" else { throw SafeTensorsError.invalidHeader("it must begin with \"{\"") }
        if let duplicate = try Self.duplicateTopLevelKey(text) { throw SafeTensorsError.duplicateKey(duplicate) }
        let object: [String: HeaderValue]
        do { object = try JSONDecoder().decode([String: HeaderValue].self, from: headerBytes) } catch let error as SafeTensorsError {
            throw error
        } catch {
            throw SafeTensorsError.invalidHeader("not the expected JSON (\(Self.describe(error)))")
        }
        var entries: [String: Entry] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in object {
            let info: TensorInfo
            switch value {
            case let .metadata(map): metadata = map; continue
            case let .tensor(t): info = t
            }
            let dtype = info.dtype
            guard info.data_offsets.count == 2 else { throw SafeTensorsError.invalidHeader("tensor \"\(name)\": data_offsets must be [begin, end]") }
            let limit = UInt64(1) << 48
            guard info.shape.allSatisfy({ $0 < limit }), info.data_offsets.allSatisfy({ $0 < limit }) else {
                throw SafeTensorsError.invalidHeader("tensor \"\(name)\": sizes and offsets must be below 2^48")
            }
            let shape = info.shape.map { Int($0) }, offsets = info.data_offsets.map { Int($0) }
            guard let size = Self.dtypeSizes[dtype] else {
                if Self.subByteDTypes.contains(dtype) { throw SafeTensorsError.unsupportedDType(tensor: name, dtype) }
                throw SafeTensorsError.unknownDType(tensor: name, dtype)
            }
            var bytes = size
            for d in shape {
                let (m, o) = bytes.multipliedReportingOverflow(by: d)
                guard !o else { throw SafeTensorsError.overflow(tensor: name) }
                bytes = m
            }
            guard offsets[1] >= offsets[0] else { throw SafeTensorsError.invalidOffset(tensor: name) }
            guard offsets[1] - offsets[0] == bytes else {
                throw SafeTensorsError.sizeMismatch(tensor: name, expected: bytes, actual: offsets[1] - offsets[0])
            }
            entries[name] = Entry(dtype: dtype, shape: shape, range: offsets[0]..<offsets[1])
        }
        // Contiguous from 0 in offset order, ending exactly at the end of the file.
        var position = 0
        for (name, entry) in entries.sorted(by: { ($0.value.range.lowerBound, $0.value.range.upperBound, $0.key) < ($1.value.range.lowerBound, $1.value.range.upperBound, $1.key) }) {
            guard entry.range.lowerBound == position else { throw SafeTensorsError.invalidOffset(tensor: name) }
            position = entry.range.upperBound
        }
        let buffer = data.count - 8 - headerLength
        guard position == buffer else { throw SafeTensorsError.incompleteBuffer(covered: position, size: buffer) }
        self.entries = entries
        self.metadata = metadata
        self.data = data
        dataStart = 8 + headerLength
    }

    struct TensorInfo: Decodable {
        let dtype: String
        let shape: [UInt64]
        let data_offsets: [UInt64]

        enum CodingKeys: String, CodingKey { case dtype, shape, data_offsets }

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            dtype = try c.decode(String.self, forKey: .dtype)
            let name = decoder.codingPath.last?.stringValue ?? "?"
            shape = try Self.naturals(c, .shape, tensor: name)
            data_offsets = try Self.naturals(c, .data_offsets, tensor: name)
        }

        /// A list of non-negative integers, with a message naming the tensor, the field and the
        /// offending value (negative, fractional, or too large) instead of "not valid JSON".
        static func naturals(_ c: KeyedDecodingContainer<CodingKeys>, _ key: CodingKeys, tensor: String) throws -> [UInt64] {
            if let values = try? c.decode([UInt64].self, forKey: key) { return values }
            let field = key.stringValue
            guard let numbers = try? c.decode([Double].self, forKey: key) else {
                throw SafeTensorsError.invalidHeader("tensor \"\(tensor)\": \(field) must be a list of integers")
            }
            let bad = numbers.first { !($0 >= 0 && $0 < 0x1p64 && $0.rounded() == $0) } ?? numbers.first { $0 >= 0x1p63 } ?? numbers[0]
            let reason = bad < 0 ? "is negative" : bad.rounded() != bad ? "is not an integer" : "is too large"
            throw SafeTensorsError.invalidHeader("tensor \"\(tensor)\": \(field) value \(bad) \(reason) (sizes and offsets are integers from 0 to 2^48)")
        }
    }

    /// A top-level header value: `__metadata__` (strings only) or a tensor description.
    enum HeaderValue: Decodable {
        case metadata([String: String])
        case tensor(TensorInfo)

        init(from decoder: Decoder) throws {
            if decoder.codingPath.last?.stringValue == "__metadata__" {
                self = .metadata(try [String: String](from: decoder))
            } else {
                self = .tensor(try TensorInfo(from: decoder))
            }
        }
    }

    public static func describe(_ error: Error) -> String {
        switch error {
        case let DecodingError.typeMismatch(_, c), let DecodingError.valueNotFound(_, c), let DecodingError.keyNotFound(_, c),
             let DecodingError.dataCorrupted(c):
            let path = c.codingPath.map(\.stringValue).joined(separator: ".")
            return path.isEmpty ? c.debugDescription : "\(path): \(c.debugDescription)"
        default: return "\(error)"
        }
    }

    /// The first key repeated at the top level of a JSON object, if any (JSONSerialization keeps
    /// one silently). A small scanner: strings, escapes and nesting depth.
    static func duplicateTopLevelKey(_ text: String) throws -> String? {
        var seen = Set<String>()
        var depth = 0, inString = false, escaped = false, current = "", expectingKey = false
        for c in text.unicodeScalars {
            if inString {
                if escaped { escaped = false; current.unicodeScalars.append(c); continue }
                if c == "\\" { escaped = true; current.unicodeScalars.append(c); continue }
                if c == "\"" {
                    inString = false
                    if depth == 1 && expectingKey {
                        if !seen.insert(current).inserted { return current }
                        expectingKey = false
                    }
                    continue
                }
                current.unicodeScalars.append(c)
                continue
            }
            switch c {
            case "\"": inString = true; current = ""
            case "{", "[": depth += 1; if depth == 1 { expectingKey = true }
            case "}", "]": depth -= 1
            case ",": if depth == 1 { expectingKey = true }
            default: break
            }
        }
        return nil
    }

    /// A tensor as Float or Double (F32 and F64 files convert to either).
    public func tensor<S: TensorScalar>(_ name: String, as: S.Type = S.self) throws -> Tensor<S> {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(name) }
        let count = entry.shape.reduce(1, *)
        let start = data.startIndex + dataStart + entry.range.lowerBound
        let scalars: [S] = try data.withUnsafeBytes { raw -> [S] in
            switch entry.dtype {
            case "F32": return (0..<count).map { S(Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: start - data.startIndex + 4 * $0, as: UInt32.self)))) }
            case "F64": return (0..<count).map { S(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: start - data.startIndex + 8 * $0, as: UInt64.self)))) }
            default: throw SafeTensorsError.unsupportedDType(tensor: name, entry.dtype)
            }
        }
        return try Tensor(shape: entry.shape, scalars: scalars)
    }

    /// An I8 tensor's values (int8 model weights).
    public func int8(_ name: String) throws -> [Int8] {
        guard let entry = entries[name] else { throw SafeTensorsError.missingTensor(name) }
        guard entry.dtype == "I8" else { throw SafeTensorsError.invalidHeader("tensor \"\(name)\" has dtype \(entry.dtype), expected I8") }
        let start = dataStart + entry.range.lowerBound
        return data.withUnsafeBytes { raw in (0..<entry.range.count).map { raw.load(fromByteOffset: start + $0, as: Int8.self) } }
    }

    /// A tensor as the file stores it: dtype, shape and little-endian bytes.
    public struct Stored {
        public var name: String, dtype: String, shape: [Int], bytes: Data
        public init(name: String, dtype: String, shape: [Int], bytes: Data) {
            (self.name, self.dtype, self.shape, self.bytes) = (name, dtype, shape, bytes)
        }

        /// A Float or Double tensor as F32 or F64.
        public init<S: TensorScalar>(name: String, tensor: Tensor<S>) {
            let bytes = tensor.scalars.withUnsafeBytes { Data($0) }  // little-endian hosts only (x86-64, arm64)
            self.init(name: name, dtype: S.self == Float.self ? "F32" : "F64", shape: tensor.shape, bytes: bytes)
        }
    }

    /// The bytes of a file holding `tensors` (written as F32 for Float, F64 for Double) and
    /// `metadata`, in the reference layout.
    public static func serialize<S: TensorScalar>(_ tensors: [(name: String, tensor: Tensor<S>)], metadata: [String: String] = [:]) throws -> Data {
        try serialize(stored: tensors.map { Stored(name: $0.name, tensor: $0.tensor) }, metadata: metadata)
    }

    /// The bytes of a file holding tensors of any dtypes, in the reference layout: wider dtypes
    /// first, then by name.
    public static func serialize(stored tensors: [Stored], metadata: [String: String] = [:]) throws -> Data {
        for t in tensors {
            guard let size = dtypeSizes[t.dtype], t.bytes.count == t.shape.reduce(1, *) * size else {
                throw SafeTensorsError.invalidHeader("tensor \"\(t.name)\": \(t.bytes.count) bytes for dtype \(t.dtype) and shape \(t.shape)")
            }
        }
        let sorted = tensors.sorted { a, b in
            let (x, y) = (dtypeSizes[a.dtype] ?? 0, dtypeSizes[b.dtype] ?? 0)
            return x != y ? x > y : a.name < b.name
        }
        let names = tensors.map(\.name).sorted()
        if let dup = zip(names, names.dropFirst()).first(where: { $0.0 == $0.1 }) { throw SafeTensorsError.duplicateKey(dup.0) }
        if names.contains("__metadata__") { throw SafeTensorsError.invalidHeader("a tensor may not be named __metadata__") }
        var parts: [String] = []
        if !metadata.isEmpty {
            parts.append("\"__metadata__\":{" + metadata.sorted { $0.key < $1.key }.map { "\(JSONText.quoted($0.key)):\(JSONText.quoted($0.value))" }.joined(separator: ",") + "}")
        }
        var offset = 0
        for t in sorted {
            let bytes = t.bytes.count
            parts.append("\(JSONText.quoted(t.name)):{\"dtype\":\"\(t.dtype)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = "{" + parts.joined(separator: ",") + "}"
        let padding = (8 - header.utf8.count % 8) % 8
        header += String(repeating: " ", count: padding)
        var out = Data(capacity: 8 + header.utf8.count + offset)
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: Array(header.utf8))
        for t in sorted { out.append(t.bytes) }
        return out
    }

    /// Writes a file atomically: a temporary file in the same directory, fsync, rename, fsync of
    /// the directory. A crash at any point leaves either the old file or the new one.
    public static func write<S: TensorScalar>(_ tensors: [(name: String, tensor: Tensor<S>)], metadata: [String: String] = [:], to url: URL) throws {
        try AtomicFile.write(serialize(tensors, metadata: metadata), to: url)
    }

    /// The same for tensors of any dtypes.
    public static func write(stored tensors: [Stored], metadata: [String: String] = [:], to url: URL) throws {
        try AtomicFile.write(serialize(stored: tensors, metadata: metadata), to: url)
    }
}

/// JSON text built by hand (safetensors headers, metrics logs), where Foundation's encoders
/// would reorder keys or refuse NaN.
public enum JSONText {
    /// `s` as a JSON string literal, quotes and escapes included.
    public static func quoted(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
}
