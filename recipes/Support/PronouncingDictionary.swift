import Foundation
import Loom

/// A pronouncing dictionary in the CMUdict format: one pronunciation per line, the word then its
/// ARPAbet phones separated by spaces (`loom L UW1 M`); further variants are written `word(2)`;
/// `;;;` lines and `#` to the end of a line are comments. Stress digits are stripped (`UW1` ->
/// `UW`) and words lowercased, so variants that differed only in stress become one.
///
/// Reading never stops at a bad line: a line without phones, with a phone that is not ARPAbet
/// (capital letters and at most one stress digit 0-2) or that is not UTF-8 is reported with its
/// number and skipped; words with a character outside `alphabet` are left out and counted.
public struct PronouncingDictionary {
    /// Words in first-seen order, each with its distinct pronunciations ("L UW M").
    public var words: [(word: String, pronunciations: [String])] = []
    /// Lines left out, with their numbers and why.
    public var malformed: [CorpusLineError] = []
    /// Words left out for a character outside `alphabet`.
    public var outsideAlphabet: [String] = []

    /// Letters, and the apostrophe, hyphen and period that CMUdict spells words with.
    public static let alphabet = Set("abcdefghijklmnopqrstuvwxyz'-.")

    /// Where Debian's `pocketsphinx-en-us` package installs CMUdict (about 134,700 lines).
    public static let debianPath = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict"

    /// Every distinct phone, sorted.
    public var phones: [String] {
        Set(words.flatMap { $0.pronunciations.flatMap { $0.split(separator: " ").map(String.init) } }).sorted()
    }

    /// Reads a dictionary file (bounded, regular files only).
    public static func read(_ url: URL) throws -> PronouncingDictionary {
        parse(try UserFile.read(url.path, what: "pronouncing dictionary", limit: 1 << 30), file: url.path)
    }

    /// Parses dictionary bytes; `file` names the source in line reports.
    public static func parse(_ data: Data, file: String) -> PronouncingDictionary {
        var dictionary = PronouncingDictionary()
        var index: [String: Int] = [:]
        var outside = Set<String>()
        let bytes = [UInt8](data)
        var number = 0, start = 0
        while start < bytes.count {
            let end = bytes[start...].firstIndex(of: 0x0A) ?? bytes.count
            defer { start = end + 1 }
            number += 1
            var line = bytes[start..<end]
            if line.last == 0x0D { line = line.dropLast() }
            func bad(_ reason: String) { dictionary.malformed.append(CorpusLineError(file: file, line: number, reason: reason)) }
            guard var text = String(validating: line, as: UTF8.self) else { bad("not valid UTF-8"); continue }
            if text.hasPrefix(";;;") { continue }
            if let hash = text.firstIndex(of: "#") { text = String(text[..<hash]) }
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            guard fields.count >= 2 else { bad("no phones after \"\(fields[0])\""); continue }
            var word = fields[0].lowercased()
            if word.hasSuffix(")"), let open = word.lastIndex(of: "(") {
                let variant = word[word.index(after: open)..<word.index(before: word.endIndex)]
                if !variant.isEmpty && variant.allSatisfy({ $0.isASCII && $0.isNumber }) { word = String(word[..<open]) }
            }
            guard !word.isEmpty else { bad("no word before the phones"); continue }
            var phones: [String] = []
            for field in fields.dropFirst() {
                var phone = Substring(field)
                if let last = phone.last, ("0"..."2").contains(last) { phone = phone.dropLast() }
                guard !phone.isEmpty, phone.allSatisfy({ $0.isASCII && $0.isUppercase }) else {
                    phones = []
                    bad("\"\(field)\" is not an ARPAbet phone (capital letters and an optional stress digit 0-2)")
                    break
                }
                phones.append(String(phone))
            }
            guard !phones.isEmpty else { continue }
            guard word.allSatisfy(alphabet.contains) else {
                if outside.insert(word).inserted { dictionary.outsideAlphabet.append(word) }
                continue
            }
            let pronunciation = phones.joined(separator: " ")
            if let i = index[word] {
                if !dictionary.words[i].pronunciations.contains(pronunciation) { dictionary.words[i].pronunciations.append(pronunciation) }
            } else {
                index[word] = dictionary.words.count
                dictionary.words.append((word, [pronunciation]))
            }
        }
        return dictionary
    }

    /// The side of the split a word falls on, from a stable hash of the word alone (FNV-1a of
    /// its UTF-8, modulo 100): 0-9 test (10%), 10-12 validation (3%), the rest training. Every
    /// variant of a word falls on its side, and the split does not depend on the file's order.
    public enum Part: String, CaseIterable { case train, validation, test }

    public static func part(of word: String) -> Part {
        switch FNV1a.hash(word) % 100 {
        case 0..<10: return .test
        case 10..<13: return .validation
        default: return .train
        }
    }
}
