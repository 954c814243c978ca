import Foundation

/// A malformed line of a corpus file, named by file and line.
public struct CorpusLineError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var line: Int
    public var reason: String
    public var description: String { "\(file) line \(line): \(reason)" }
    public init(file: String, line: Int, reason: String) { (self.file, self.line, self.reason) = (file, line, reason) }
}

/// Source/target pairs for training and evaluation: text pairs as TSV (`source<TAB>target`) or
/// as two line-aligned files, or recordings as a manifest (`audio path<TAB>transcript`). One
/// reader for every kind, strict by default: a line without exactly one tab, with an empty side,
/// invalid UTF-8, a byte-order mark or a CR line end is an error naming the file and line; with
/// `skipBadLines` such lines are left out and counted instead.
public struct PairCorpus: Sendable {
    /// One example: the source (text, or an audio path for recordings) and the target text,
    /// with the line it came from.
    public struct Pair: Equatable, Sendable {
        public var source: String
        public var target: String
        public var line: Int
        public init(source: String, target: String, line: Int) {
            (self.source, self.target, self.line) = (source, target, line)
        }
    }

    public var pairs: [Pair]
    /// Lines left out with `skipBadLines`, with why.
    public var skipped: [CorpusLineError]

    /// The largest corpus file read: 2 GiB.
    public static let maximumFileSize = 2 << 30

    /// Reads `source<TAB>target` lines. Blank lines are skipped. `audio` resolves relative
    /// sources against the file's folder (a manifest) and skips a `path<TAB>transcript` header.
    public static func readTSV(_ url: URL, audio: Bool = false, skipBadLines: Bool = false) throws -> PairCorpus {
        let lines = try split(url)
        var pairs: [Pair] = [], skipped: [CorpusLineError] = []
        for (number, line) in lines {
            do {
                let text = try check(line, number: number, file: url.path)
                if text.isEmpty || (audio && text.hasPrefix("#")) { continue }
                let fields = text.split(separator: "\t", omittingEmptySubsequences: false)
                if audio && number == 1 && fields == ["path", "transcript"] { continue }
                guard fields.count == 2 else {
                    throw CorpusLineError(file: url.path, line: number, reason: fields.count == 1
                        ? "no tab: expected source<TAB>target" : "\(fields.count - 1) tabs: expected exactly one (source<TAB>target)")
                }
                let (source, target) = (String(fields[0]), String(fields[1]))
                guard !source.isEmpty, !target.isEmpty else {
                    throw CorpusLineError(file: url.path, line: number, reason: "empty \(source.isEmpty ? "source" : "target")")
                }
                let resolved = audio && !source.hasPrefix("/") ? url.deletingLastPathComponent().appendingPathComponent(source).standardizedFileURL.path : source
                pairs.append(Pair(source: resolved, target: target, line: number))
            } catch let error as CorpusLineError {
                guard skipBadLines else { throw error }
                skipped.append(error)
            }
        }
        return PairCorpus(pairs: pairs, skipped: skipped)
    }

    /// Reads two line-aligned files (line n of one is the translation of line n of the other).
    public static func readParallel(source: URL, target: URL, skipBadLines: Bool = false) throws -> PairCorpus {
        let (a, b) = (try split(source), try split(target))
        guard a.count == b.count else {
            throw CorpusLineError(file: target.path, line: Swift.min(a.count, b.count) + 1,
                                  reason: "\(a.count) lines in \(source.lastPathComponent) but \(b.count) here: the files must be line-aligned")
        }
        var pairs: [Pair] = [], skipped: [CorpusLineError] = []
        for ((number, s), (_, t)) in zip(a, b) {
            do {
                let (sourceText, targetText) = (try check(s, number: number, file: source.path), try check(t, number: number, file: target.path))
                if sourceText.isEmpty && targetText.isEmpty { continue }
                guard !sourceText.isEmpty, !targetText.isEmpty else {
                    throw CorpusLineError(file: sourceText.isEmpty ? source.path : target.path, line: number, reason: "empty line opposite a non-empty one")
                }
                pairs.append(Pair(source: sourceText, target: targetText, line: number))
            } catch let error as CorpusLineError {
                guard skipBadLines else { throw error }
                skipped.append(error)
            }
        }
        return PairCorpus(pairs: pairs, skipped: skipped)
    }

    /// The file's lines as raw bytes with their numbers (split at LF only, so that a CR is seen).
    static func split(_ url: URL) throws -> [(Int, ArraySlice<UInt8>)] {
        let bytes = [UInt8](try UserFile.read(url.path, what: "corpus file", limit: maximumFileSize))
        var lines: [(Int, ArraySlice<UInt8>)] = []
        var start = 0, number = 1
        for (i, b) in bytes.enumerated() where b == 0x0A {
            lines.append((number, bytes[start..<i]))
            start = i + 1
            number += 1
        }
        if start < bytes.count { lines.append((number, bytes[start...])) }
        return lines
    }

    /// A line's text, or the reason it is malformed.
    static func check(_ bytes: ArraySlice<UInt8>, number: Int, file: String) throws -> String {
        if number == 1 && bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            throw CorpusLineError(file: file, line: number, reason: "starts with a byte-order mark (U+FEFF): save the file as UTF-8 without BOM")
        }
        if bytes.last == 0x0D {
            throw CorpusLineError(file: file, line: number, reason: "ends with CR (Windows line ends): convert the file to LF line ends")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw CorpusLineError(file: file, line: number, reason: "not valid UTF-8")
        }
        return text
    }

    /// A seeded split into (train, held out) of `fraction` of the pairs (at least one each).
    public func split(heldOut fraction: Double, seed: UInt64) -> (train: [Pair], heldOut: [Pair]) {
        var generator = SeededGenerator(seed: seed)
        let shuffled = pairs.shuffled(using: &generator)
        let held = Swift.min(Swift.max(Int((Double(pairs.count) * fraction).rounded()), 1), Swift.max(pairs.count - 1, 0))
        return (Array(shuffled[held...]), Array(shuffled[..<held]))
    }
}
