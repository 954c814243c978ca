import Foundation

/// Progress of a long run: one redrawn line on a terminal, plain lines every `logEvery` updates
/// otherwise (so a log file gets a readable history, not carriage returns).
struct Progress {
    let isTerminal: Bool
    let total: Int
    let logEvery: Int
    let start = Date()
    /// Standard error, for commands whose standard output is data.
    let toStandardError: Bool

    init(total: Int, logEvery: Int, toStandardError: Bool = false) {
        self.total = total
        self.logEvery = max(logEvery, 1)
        self.toStandardError = toStandardError
        isTerminal = isatty(toStandardError ? STDERR_FILENO : STDOUT_FILENO) != 0
    }

    private func emit(_ text: String, terminator: String = "\n") {
        if toStandardError {
            FileHandle.standardError.write(Data((text + terminator).utf8))
        } else {
            print(text, terminator: terminator)
            fflush(stdout)
        }
    }

    /// Shows step `done` of `total` with `fields` (name, value) and an ETA from the mean rate.
    func update(_ done: Int, _ fields: [(String, String)]) {
        let elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        let text = (["\(done)/\(total)"] + fields.map { "\($0) \($1)" } + [String(format: "eta %.1fs", eta)])
            .joined(separator: "  ")
        if isTerminal {
            emit("\r\u{1B}[K" + text, terminator: done == total ? "\n" : "")
        } else if done % logEvery == 0 || done == total {
            emit(text)
        }
    }
}
