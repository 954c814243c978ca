import Foundation

/// A value in a metrics log line.
public enum LogValue: Sendable, Equatable {
    case number(Double)
    case integer(Int)
    case text(String)
    case object([String: LogValue])

    /// JSON text. Non-finite numbers become the strings "NaN", "Infinity", "-Infinity" (JSON has
    /// no such numbers, and Foundation's encoders throw on them).
    var json: String {
        switch self {
        case let .number(x):
            if x.isNaN { return "\"NaN\"" }
            if x.isInfinite { return x > 0 ? "\"Infinity\"" : "\"-Infinity\"" }
            return "\(x)"
        case let .integer(i): return "\(i)"
        case let .text(s): return JSONText.quoted(s)
        case let .object(map):
            return "{" + map.sorted { $0.key < $1.key }.map { LogValue.text($0.key).json + ":" + $0.value.json }.joined(separator: ",") + "}"
        }
    }
}

/// A JSON-lines metrics log: one object per line, appended and flushed as training goes.
public final class MetricsLog {
    public let url: URL
    private let handle: FileHandle

    /// Opens `url` for appending (a resumed run continues the same log), creating it if needed.
    public init(url: URL, truncate: Bool = false) throws {
        self.url = url
        try UserFile.makeDirectory(url.deletingLastPathComponent())
        if truncate || !FileManager.default.fileExists(atPath: url.path) {
            guard FileManager.default.createFile(atPath: url.path, contents: nil) else {
                throw TrainingError.io("cannot create the metrics log \(url.path)")
            }
        }
        guard let handle = FileHandle(forWritingAtPath: url.path) else { throw TrainingError.io("cannot open the metrics log \(url.path)") }
        handle.seekToEndOfFile()
        self.handle = handle
    }

    deinit { try? handle.close() }

    /// Now in ISO 8601 with milliseconds, UTC: the `time` field of log lines.
    public static func timestamp() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: Date())
    }

    public func write(_ fields: [String: LogValue]) {
        handle.write(Data((LogValue.object(fields).json + "\n").utf8))
    }
}

/// Progress of a long run: one redrawn line on a terminal, plain lines every `logEvery` updates
/// otherwise (a log file gets a readable history, not carriage returns).
public struct ProgressLine {
    public let isTerminal: Bool
    public let logEvery: Int
    let toStandardError: Bool

    public init(logEvery: Int = 50, toStandardError: Bool = false) {
        self.logEvery = Swift.max(logEvery, 1)
        self.toStandardError = toStandardError
        isTerminal = isatty(toStandardError ? STDERR_FILENO : STDOUT_FILENO) != 0
    }

    /// Shows `text` for update number `count`; `final` ends the line on a terminal.
    public func show(_ text: String, count: Int, final: Bool = false) {
        if isTerminal {
            emit("\r\u{1B}[K" + text, terminator: final ? "\n" : "")
        } else if final || count % logEvery == 0 {
            emit(text, terminator: "\n")
        }
    }

    /// A line that is always printed (end of epoch, warnings).
    public func line(_ text: String) {
        emit((isTerminal ? "\r\u{1B}[K" : "") + text, terminator: "\n")
    }

    private func emit(_ text: String, terminator: String) {
        if toStandardError {
            FileHandle.standardError.write(Data((text + terminator).utf8))
        } else {
            print(text, terminator: terminator)
            fflush(stdout)
        }
    }

    /// "1m05s" style durations for ETAs.
    public static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" : s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}

/// Line plots as standalone SVG, with axes, ticks and a legend; no dependency.
public enum SVGPlot {
    /// One named line of points.
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public init(name: String, points: [(x: Double, y: Double)]) {
            self.name = name
            self.points = points
        }
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func label(_ v: Double) -> String {
        abs(v) >= 1e5 || (abs(v) < 1e-3 && v != 0) ? String(format: "%g", v) : String(format: "%.6g", v)
    }

    /// Ticks at 1, 2 or 5 times a power of ten covering `low...high` with about `target`
    /// intervals; the first and last tick enclose the data. `integers` keeps the step at 1 or
    /// more (epochs).
    public static func linearTicks(_ low: Double, _ high: Double, target: Int = 5, integers: Bool = false) -> [Double] {
        guard low.isFinite, high.isFinite else { return [0, 1] }
        let (a, b) = high > low ? (low, high) : (low - 0.5, low + 0.5)
        let raw = (b - a) / Double(Swift.max(target, 1))
        let power = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        var step = [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= raw * 0.999 } ?? 10 * power
        if integers { step = Swift.max(1, step.rounded(.up)) }
        let first = Foundation.floor(a / step + 1e-9) * step, last = Foundation.ceil(b / step - 1e-9) * step
        let count = Int(((last - first) / step).rounded())
        // Multiples of the step, computed from integers so that 0.1 * 3 prints as 0.3.
        return (0...count).map { k in ((first / step).rounded() + Double(k)) * step }
    }

    /// Ticks for a logarithmic axis over positive `low...high`: powers of ten, with 2 and 5
    /// between them when the range spans under two decades.
    public static func logTicks(_ low: Double, _ high: Double) -> [Double] {
        let a = Foundation.floor(Foundation.log10(low)), b = Foundation.ceil(Foundation.log10(Swift.max(high, low * 1.0001)))
        let multiples: [Double] = b - a < 2 ? [1, 2, 5] : [1]
        var ticks: [Double] = []
        for e in Int(a)...Int(b) {
            for m in multiples {
                let t = m * Foundation.pow(10, Double(e))
                ticks.append(t)
            }
        }
        // Keep one tick at or below the data and one at or above.
        let lower = ticks.last { $0 <= low * 1.0000001 } ?? ticks[0], upper = ticks.first { $0 >= high * 0.9999999 } ?? ticks[ticks.count - 1]
        return ticks.filter { $0 >= lower && $0 <= upper }
    }

    /// The SVG text of a plot; non-finite points (and on a log axis, non-positive ones) are
    /// skipped. Axes run between ticks at 1-2-5 steps (`integerX` for epochs; `logY` for losses,
    /// which fall over decades), a light grid marks each tick, and the legend sits to the right
    /// of the data.
    public static func render(_ series: [Series], title: String, xLabel: String, yLabel: String,
                              logY: Bool = false, integerX: Bool = false, width: Double = 720, height: Double = 400) -> String {
        let usable = { (p: (x: Double, y: Double)) in p.x.isFinite && p.y.isFinite && (!logY || p.y > 0) }
        let finite = series.flatMap(\.points).filter(usable)
        let xTicks = linearTicks(finite.map(\.x).min() ?? 0, finite.map(\.x).max() ?? 1, integers: integerX)
        let (ylow, yhigh) = (finite.map(\.y).min() ?? (logY ? 0.1 : 0), finite.map(\.y).max() ?? 1)
        let yTicks = logY ? logTicks(ylow, yhigh) : linearTicks(ylow, yhigh)
        let (x0, x1) = (xTicks[0], xTicks[xTicks.count - 1] > xTicks[0] ? xTicks[xTicks.count - 1] : xTicks[0] + 1)
        let scaleY = { (y: Double) in logY ? Foundation.log10(y) : y }
        let (y0, y1) = (scaleY(yTicks[0]), yTicks.count > 1 ? scaleY(yTicks[yTicks.count - 1]) : scaleY(yTicks[0]) + 1)
        let legendWidth = 20 + 7 * Double(series.map(\.name.count).max() ?? 0)
        let (left, right, top, bottom) = (70.0, 20.0 + legendWidth, 40.0, 50.0)
        let pw = width - left - right, ph = height - top - bottom
        func px(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func py(_ y: Double) -> Double { top + (1 - (scaleY(y) - y0) / (y1 - y0)) * ph }
        var svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for fx in xTicks {
            svg += "<line class=\"grid\" x1=\"\(px(fx))\" y1=\"\(top)\" x2=\"\(px(fx))\" y2=\"\(top + ph)\" stroke=\"#e6e6e6\"/>"
            svg += "<line x1=\"\(px(fx))\" y1=\"\(top + ph)\" x2=\"\(px(fx))\" y2=\"\(top + ph + 5)\" stroke=\"#444\"/>"
            svg += "<text class=\"xtick\" x=\"\(px(fx))\" y=\"\(top + ph + 18)\" text-anchor=\"middle\">\(label(fx))</text>\n"
        }
        for fy in yTicks {
            svg += "<line class=\"grid\" x1=\"\(left)\" y1=\"\(py(fy))\" x2=\"\(left + pw)\" y2=\"\(py(fy))\" stroke=\"#e6e6e6\"/>"
            svg += "<line x1=\"\(left - 5)\" y1=\"\(py(fy))\" x2=\"\(left)\" y2=\"\(py(fy))\" stroke=\"#444\"/>"
            svg += "<text class=\"ytick\" x=\"\(left - 8)\" y=\"\(py(fy) + 4)\" text-anchor=\"end\">\(label(fy))</text>\n"
        }
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(pw)\" height=\"\(ph)\" fill=\"none\" stroke=\"#444\"/>\n"
        svg += "<text x=\"\(left + pw / 2)\" y=\"\(height - 10)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        let yTitle = logY ? "\(yLabel) (log scale)" : yLabel
        svg += "<text x=\"16\" y=\"\(top + ph / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(top + ph / 2))\">\(escape(yTitle))</text>\n"
        for (i, s) in series.enumerated() {
            let color = colors[i % colors.count]
            let points = s.points.filter(usable)
            if points.count > 1 {
                svg += "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\" points=\"" + points.map { String(format: "%.2f,%.2f", px($0.x), py($0.y)) }.joined(separator: " ") + "\"/>\n"
            } else if let p = points.first {
                svg += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"3\" fill=\"\(color)\"/>\n"
            }
            let legendX = left + pw + 14
            svg += "<rect class=\"legend\" x=\"\(legendX)\" y=\"\(top + 10 + 18 * Double(i))\" width=\"12\" height=\"3\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(legendX + 18)\" y=\"\(top + 15 + 18 * Double(i))\">\(escape(s.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// A matrix as an image: one cell per entry, white (the smallest value) to dark blue (the
    /// largest), rows labeled (an attention alignment: output tokens by encoder steps).
    public static func heatmap(_ values: [[Double]], rowLabels: [String], title: String, xLabel: String, yLabel: String,
                               cell: Double = 10) -> String {
        let rows = values.count, columns = values.map(\.count).max() ?? 0
        let finite = values.joined().filter(\.isFinite)
        let (low, high) = (finite.min() ?? 0, finite.max() ?? 1)
        let (left, right, top, bottom) = (70.0, 20.0, 40.0, 50.0)
        let cw = Swift.max(cell, Swift.min(600 / Double(Swift.max(columns, 1)), 40)), ch = Swift.max(cell, 16)
        let width = left + right + cw * Double(columns), height = top + bottom + ch * Double(rows)
        var svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"\(width / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(escape(title))</text>\n"
        for (r, row) in values.enumerated() {
            for (c, v) in row.enumerated() where v.isFinite {
                let level = high > low ? (v - low) / (high - low) : 0
                // White to #08306b, linearly in each channel.
                let (red, green, blue) = (255 - level * (255 - 8), 255 - level * (255 - 48), 255 - level * (255 - 107))
                svg += String(format: "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"rgb(%d,%d,%d)\"/>", left + cw * Double(c),
                              top + ch * Double(r), cw, ch, Int(red.rounded()), Int(green.rounded()), Int(blue.rounded()))
            }
            let label = r < rowLabels.count ? rowLabels[r] : ""
            svg += "<text x=\"\(left - 8)\" y=\"\(top + ch * (Double(r) + 0.5) + 4)\" text-anchor=\"end\">\(escape(label))</text>\n"
        }
        svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(cw * Double(columns))\" height=\"\(ch * Double(rows))\" fill=\"none\" stroke=\"#444\"/>\n"
        let tickEvery = Swift.max(1, columns / 10)
        for c in stride(from: 0, to: columns, by: tickEvery) {
            svg += "<text x=\"\(left + cw * (Double(c) + 0.5))\" y=\"\(top + ch * Double(rows) + 16)\" text-anchor=\"middle\">\(c)</text>"
        }
        svg += "\n<text x=\"\(left + cw * Double(columns) / 2)\" y=\"\(height - 10)\" text-anchor=\"middle\">\(escape(xLabel))</text>\n"
        svg += "<text x=\"16\" y=\"\(top + ch * Double(rows) / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 16 \(top + ch * Double(rows) / 2))\">\(escape(yLabel))</text>\n"
        return svg + "</svg>\n"
    }

    /// Writes the plot atomically.
    public static func write(_ series: [Series], title: String, xLabel: String, yLabel: String, logY: Bool = false,
                             integerX: Bool = false, to url: URL) throws {
        try AtomicFile.write(Data(render(series, title: title, xLabel: xLabel, yLabel: yLabel, logY: logY, integerX: integerX).utf8), to: url)
    }
}
