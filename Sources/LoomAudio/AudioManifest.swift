import Foundation
import LoomTensor

/// A speech corpus as a manifest: a UTF-8 text file of `audio path<TAB>transcript` lines.
/// Relative paths are relative to the manifest's directory; blank lines, lines starting with `#`
/// and a first line `path<TAB>transcript` (a header) are skipped. A line without exactly one
/// tab, or with an empty path or transcript, is an error naming the file and line.
public struct AudioManifest: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        /// The audio file, absolute.
        public var path: String
        public var transcript: String
        public init(path: String, transcript: String) {
            self.path = path
            self.transcript = transcript
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries }

    /// Parses manifest text; `directory` resolves relative paths, `name` appears in errors.
    public init(text: String, directory: URL, name: String = "manifest") throws {
        var entries: [Entry] = []
        // "\r\n" is one Character in Swift, so Windows line ends split here too.
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            if line.trimmingCharacters(in: .whitespaces).isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
            if index == 0, fields.count == 2, fields[0] == "path", fields[1] == "transcript" { continue }
            guard fields.count == 2 else {
                throw AudioError.invalidParameter("\(name) line \(index + 1): expected `path<TAB>transcript`, found \(fields.count) tab-separated fields")
            }
            let path = String(fields[0]), transcript = fields[1].trimmingCharacters(in: .whitespaces)
            guard !path.isEmpty, !transcript.isEmpty else {
                throw AudioError.invalidParameter("\(name) line \(index + 1): empty \(path.isEmpty ? "path" : "transcript")")
            }
            let resolved = (path.hasPrefix("/") ? URL(fileURLWithPath: path) : directory.appendingPathComponent(path)).standardizedFileURL.path
            entries.append(Entry(path: resolved, transcript: transcript))
        }
        self.entries = entries
    }

    /// Reads a manifest file.
    public static func read(_ url: URL) throws -> AudioManifest {
        let data: Data
        do { data = try UserFile.read(url.path, what: "manifest", limit: 1 << 30) } catch {
            throw AudioError.invalidParameter("cannot read the manifest \(url.path): \(error)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw AudioError.invalidParameter("\(url.path) is not UTF-8 text")
        }
        return try AudioManifest(text: text, directory: url.deletingLastPathComponent(), name: url.path)
    }

    /// The manifest text with paths relative to `directory` where they lie inside it.
    public func text(relativeTo directory: URL) throws -> String {
        let prefix = directory.standardizedFileURL.path + "/"
        return try entries.enumerated().map { index, e in
            guard !e.transcript.contains(where: \.isNewline), !e.transcript.contains("\t"), !e.path.contains(where: \.isNewline), !e.path.contains("\t") else {
                throw AudioError.invalidParameter("a manifest entry cannot hold a tab or line break: \(e.path)")
            }
            var path = e.path.hasPrefix(prefix) && e.path.count > prefix.count ? String(e.path.dropFirst(prefix.count)) : e.path
            // A relative path that would read as a comment, or as the header on the first line,
            // is written as ./path so that it reads back as the entry it is.
            if path.hasPrefix("#") || (index == 0 && path == "path" && e.transcript == "transcript") { path = "./" + path }
            return "\(path)\t\(e.transcript)\n"
        }.joined()
    }
}
