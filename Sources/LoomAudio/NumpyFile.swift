import Foundation
import LoomTensor

/// Errors reading or writing `.npy` files.
public enum NumpyError: Error, CustomStringConvertible, Equatable {
    case malformed(String)
    case io(String)

    public var description: String {
        switch self {
        case let .malformed(m): return "not a readable .npy file: \(m)"
        case let .io(m): return m
        }
    }
}

/// NumPy `.npy` version 1.0 for float32 matrices [rows, columns], little-endian, C order.
///
/// Layout: magic `\x93NUMPY`, version 1.0, a 2-byte little-endian header length, an ASCII dict
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (R, C), }` padded with spaces and ended by
/// a newline so that the data starts at a multiple of 64, then the data.
public enum Numpy {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)
    /// The header is written at this fixed size, so a streaming writer can rewrite the shape in
    /// place once the row count is known.
    static let headerSize = 128

    static func header(rows: Int, columns: Int) -> [UInt8] {
        var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
        let total = headerSize - magic.count - 2 - 2
        dict += String(repeating: " ", count: Swift.max(total - dict.utf8.count - 1, 0)) + "\n"
        let length = UInt16(dict.utf8.count)
        return magic + [1, 0, UInt8(length & 0xFF), UInt8(length >> 8)] + Array(dict.utf8)
    }

    /// Reads a float32 .npy file as (shape, values). The file is treated as hostile: header
    /// length, dict syntax, dtype, order and the data length are all checked.
    public static func read(_ url: URL) throws -> (shape: [Int], values: [Float]) {
        let data: Data
        do { data = try UserFile.read(url.path, what: ".npy file") } catch { throw NumpyError.io("\(error)") }
        return try parse(data)
    }

    public static func parse(_ data: Data) throws -> (shape: [Int], values: [Float]) {
        let bytes = [UInt8](data)
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else { throw NumpyError.malformed("bad magic") }
        guard bytes[6] == 1 else { throw NumpyError.malformed("version \(bytes[6]).\(bytes[7]) (this reader takes 1.0)") }
        let length = Int(bytes[8]) | Int(bytes[9]) << 8
        guard length <= 10_000, 10 + length <= bytes.count else { throw NumpyError.malformed("header length \(length)") }
        guard let text = String(bytes: bytes[10..<(10 + length)], encoding: .ascii) else { throw NumpyError.malformed("header is not ASCII") }
        func value(_ key: String) throws -> String {
            guard let r = text.range(of: "'\(key)':") else { throw NumpyError.malformed("header has no '\(key)'") }
            return String(text[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard try value("descr").hasPrefix("'<f4'") else { throw NumpyError.malformed("dtype is not '<f4'") }
        guard try value("fortran_order").hasPrefix("False") else { throw NumpyError.malformed("Fortran order is not supported") }
        let shapeText = try value("shape")
        guard shapeText.first == "(", let close = shapeText.firstIndex(of: ")") else { throw NumpyError.malformed("bad shape") }
        let parts = shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var shape: [Int] = []
        for p in parts {
            guard let d = Int(p), d >= 0, d <= Int(Int32.max) else { throw NumpyError.malformed("bad dimension \(String(reflecting: p))") }
            shape.append(d)
        }
        let (count, overflow) = shape.reduce((1, false)) { acc, d in
            let (m, o) = acc.0.multipliedReportingOverflow(by: d)
            return (m, acc.1 || o)
        }
        let start = 10 + length
        guard !overflow, count <= (bytes.count - start) / 4, bytes.count - start == count * 4 else {
            throw NumpyError.malformed("shape \(shape) needs \(overflow ? "too many" : "\(count * 4)") data bytes, file has \(bytes.count - start)")
        }
        var values = [Float](repeating: 0, count: count)
        for i in 0..<count {
            let o = start + 4 * i
            let bits = UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
            values[i] = Float(bitPattern: bits)
        }
        return (shape, values)
    }
}

/// Writes a feature matrix row block by row block to a temporary file next to `destination`,
/// and on `commit` fixes the shape in the header, syncs and renames: a failed or interrupted
/// run never leaves a partial file under the destination name.
public final class FeatureFileWriter {
    /// NumPy .npy v1.0 float32, or comma-separated text (one frame per line).
    public enum Format: String, Sendable, CaseIterable { case npy, csv }

    public let destination: URL
    public let format: Format
    public let columns: Int
    public private(set) var rows = 0
    let temporary: URL
    let handle: FileHandle
    private var committed = false

    public init(destination: URL, format: Format, columns: Int) throws {
        self.destination = destination
        self.format = format
        self.columns = columns
        // A directory (or FIFO, device) under the destination name is the user's: refused, not replaced.
        do { try AtomicFile.refuseNonRegularDestination(destination) } catch { throw NumpyError.io("\(error)") }
        temporary = AtomicFile.temporarySibling(of: destination)
        let fd = open(temporary.path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw NumpyError.io("cannot create \(temporary.path): \(String(cString: strerror(errno)))") }
        handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        if format == .npy { try write(Numpy.header(rows: 0, columns: columns)) }
    }

    deinit {
        if !committed {
            try? handle.close()
            try? FileManager.default.removeItem(at: temporary)
        }
    }

    private func write(_ bytes: [UInt8]) throws {
        do { try handle.write(contentsOf: Data(bytes)) } catch { throw NumpyError.io("writing \(temporary.path): \(error.localizedDescription)") }
    }

    /// Appends rows (values.count a multiple of `columns`).
    public func append(_ values: [Float]) throws {
        guard values.count % Swift.max(columns, 1) == 0 else {
            throw NumpyError.io("\(values.count) values are not whole rows of \(columns)")
        }
        rows += values.count / Swift.max(columns, 1)
        switch format {
        case .npy:
            var bytes = [UInt8](repeating: 0, count: values.count * 4)
            for (i, v) in values.enumerated() {
                let b = v.bitPattern
                bytes[4 * i] = UInt8(b & 0xFF); bytes[4 * i + 1] = UInt8((b >> 8) & 0xFF)
                bytes[4 * i + 2] = UInt8((b >> 16) & 0xFF); bytes[4 * i + 3] = UInt8(b >> 24)
            }
            try write(bytes)
        case .csv:
            var text = ""
            for r in 0..<(values.count / Swift.max(columns, 1)) {
                text += values[(r * columns)..<((r + 1) * columns)].map { "\($0)" }.joined(separator: ",") + "\n"
            }
            try write(Array(text.utf8))
        }
    }

    /// Rewrites every value already written (in blocks) through `transform`: the top-dB clamp,
    /// which needs the maximum over the whole file.
    public func rewrite(_ transform: (inout [Float]) -> Void) throws {
        guard format == .npy else {
            throw NumpyError.io("rewrite is only supported for .npy output")
        }
        let block = 65_536 * 4
        var offset = UInt64(Numpy.headerSize)
        let end = UInt64(Numpy.headerSize + rows * columns * 4)
        while offset < end {
            try handle.seek(toOffset: offset)
            let data = try handle.read(upToCount: Int(Swift.min(UInt64(block), end - offset))) ?? Data()
            var values = data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self))) } }
            transform(&values)
            try handle.seek(toOffset: offset)
            try write(values.flatMap { v -> [UInt8] in let b = v.bitPattern; return [UInt8(b & 0xFF), UInt8((b >> 8) & 0xFF), UInt8((b >> 16) & 0xFF), UInt8(b >> 24)] })
            offset += UInt64(data.count)
        }
        try handle.seekToEnd()
    }

    /// Finishes the file: header with the final shape, fsync, rename over `destination`.
    public func commit() throws {
        do {
            if format == .npy {
                try handle.seek(toOffset: 0)
                try write(Numpy.header(rows: rows, columns: columns))
            }
            try handle.synchronize()
            try handle.close()
            // One rename over the old file: a kill at any moment leaves the old file or the new one.
            try AtomicFile.replace(destination, with: temporary)
            committed = true
        } catch let error as NumpyError {
            throw error
        } catch let error as UserFileError {
            throw NumpyError.io("\(error)")
        } catch {
            throw NumpyError.io("finishing \(destination.path): \(error.localizedDescription)")
        }
    }
}
