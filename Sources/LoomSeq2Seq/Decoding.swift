import Foundation
import LoomTensor

/// A decoder state whose rows (one per hypothesis) can be picked and reordered: what beam
/// search needs from any decoder. `RecurrentState` conforms, so any decoder built from Loom's
/// recurrent layers can be searched.
public protocol BeamState {
    func selecting(rows: [Int]) throws -> Self
}

/// A decoder advanced one token at a time over N rows.
public protocol StepDecoder {
    associatedtype State: BeamState
    var endIndex: Int { get }
    /// Log-probabilities [N, V] of the next token per row, and the state after `tokens`.
    func step(tokens: [Int], state: State) throws -> (logProbabilities: Tensor<Float>, state: State)
}

/// Why a decoded sequence ended.
public enum StopReason: String, Sendable, Codable, CaseIterable {
    /// The model chose end-of-sequence.
    case end
    /// The options' maximum length.
    case maximumLength = "max_length"
    /// The bound from the source's length (`OutputLengthBound`).
    case lengthLimit = "length_limit"
    /// A short cycle repeated past the guard (`RepetitionGuard`).
    case repetition
}

/// One decoded sequence: its tokens (without start and end), the sum of their
/// log-probabilities, the length-normalized score beams are ranked by, whether it ended
/// with end-of-sequence, and why it stopped.
public struct Hypothesis: Equatable, Sendable {
    public var tokens: [Int]
    public var logProbability: Double
    public var score: Double
    public var finished: Bool
    public var stop: StopReason

    public init(tokens: [Int], logProbability: Double, score: Double, finished: Bool, stop: StopReason? = nil) {
        (self.tokens, self.logProbability, self.score, self.finished) = (tokens, logProbability, score, finished)
        self.stop = stop ?? (finished ? .end : .maximumLength)
    }
}

/// The longest output a source allows: `constant + ceil(ratio x source length)` tokens, where
/// the source length is its tokens (text) or encoder steps (audio, after frame stacking). A
/// model file stores one fitted to its training data (`fitted`), so that a model that never
/// says end-of-sequence still stops near the longest output its data showed.
public struct OutputLengthBound: Codable, Equatable, Sendable {
    public var ratio: Double
    public var constant: Int

    public init(ratio: Double, constant: Int) {
        (self.ratio, self.constant) = (ratio, constant)
    }

    public func limit(sourceLength: Int) -> Int {
        let scaled = (ratio * Double(Swift.max(sourceLength, 0))).rounded(.up)
        return constant + (scaled < 1e9 ? Int(scaled) : 1_000_000_000)
    }

    /// Twice the largest target/source length ratio of the pairs, plus `constant` (default 10):
    /// room for unseen inputs, never the runaway of a looping decoder.
    public static func fitted(sourceLengths: [Int], targetLengths: [Int], constant: Int = 10) -> OutputLengthBound {
        let ratios = zip(sourceLengths, targetLengths).map { Double($1) / Double(Swift.max($0, 1)) }
        let largest = ratios.max() ?? 1
        return OutputLengthBound(ratio: (2 * largest * 1000).rounded(.up) / 1000, constant: constant)
    }

    public func validate() throws {
        guard ratio.isFinite, ratio >= 0, ratio <= 1000, (0...DecodingOptions.maximumOutputLength).contains(constant) else {
            throw TensorError.invalidArgument(op: "decoding", message: "output length bound: ratio must be in 0...1000 and constant in 0...\(DecodingOptions.maximumOutputLength), got \(ratio), \(constant)")
        }
    }
}

/// Ends a hypothesis whose last tokens repeat one cycle of at most `longestCycle` tokens over
/// at least `span` tokens (and at least twice): "2222222222..." or "0202020202...", the loops
/// an attention decoder falls into. A real output repeats that long rarely (a span of 12 stops
/// "222222222222", never a phone number); the length bound catches what this does not.
public struct RepetitionGuard: Codable, Equatable, Sendable {
    public var longestCycle: Int
    public var span: Int

    public init(longestCycle: Int = 4, span: Int = 12) {
        (self.longestCycle, self.span) = (longestCycle, span)
    }

    public func validate() throws {
        guard (1...64).contains(longestCycle), (2...DecodingOptions.maximumOutputLength).contains(span) else {
            throw TensorError.invalidArgument(op: "decoding", message: "repetition guard: longest cycle must be in 1...64 and span in 2...\(DecodingOptions.maximumOutputLength), got \(longestCycle), \(span)")
        }
    }

    /// Whether `tokens` end with a cycle repeated over `span` tokens.
    public func caught(_ tokens: [Int]) -> Bool {
        let n = tokens.count
        guard longestCycle >= 1, n >= span else { return false }
        for cycle in 1...Swift.min(longestCycle, n / 2) {
            let length = Swift.max(span, 2 * cycle)
            guard n >= length else { continue }
            var repeats = true
            for i in (n - length)..<(n - cycle) where tokens[i] != tokens[i + cycle] {
                repeats = false
                break
            }
            if repeats { return true }
        }
        return false
    }
}

/// Limits and search settings for decoding.
public struct DecodingOptions: Sendable, Equatable {
    public var maximumLength = 100
    public var minimumLength = 0
    public var beamWidth = 1
    public var nBest = 1
    /// GNMT length penalty alpha: scores are log p / ((5 + length) / 6)^alpha; 0 = none.
    public var lengthPenalty = 0.0
    /// Draw each token instead of searching (nil: greedy or beam search).
    public var sampling: SamplingOptions?
    /// The bound on each output from its source's length (nil: the model file's, if any).
    public var lengthBound: OutputLengthBound?
    /// The guard against repeating loops (nil: off). On by default.
    public var repetitionGuard: RepetitionGuard? = RepetitionGuard()
    public init(maximumLength: Int = 100, minimumLength: Int = 0, beamWidth: Int = 1, nBest: Int = 1, lengthPenalty: Double = 0) {
        self.maximumLength = maximumLength
        self.minimumLength = minimumLength
        self.beamWidth = beamWidth
        self.nBest = nBest
        self.lengthPenalty = lengthPenalty
    }
}

extension DecodingOptions {
    /// The widest beam accepted: past it the per-step work and memory (rows x beam x vocabulary)
    /// grow without improving results.
    public static let maximumBeamWidth = 256
    /// The longest output accepted.
    public static let maximumOutputLength = 100_000

    /// Checks every setting against its range; the message names the setting, the range and the value.
    public func validate() throws {
        func fail(_ m: String) -> TensorError { .invalidArgument(op: "decoding", message: m) }
        guard (1...Self.maximumBeamWidth).contains(beamWidth) else { throw fail("beam width must be in 1...\(Self.maximumBeamWidth), got \(beamWidth)") }
        guard (1...Swift.max(beamWidth, 1)).contains(nBest) else { throw fail("n-best must be in 1...\(beamWidth) (the beam width), got \(nBest)") }
        guard (1...Self.maximumOutputLength).contains(maximumLength) else {
            throw fail("maximum length must be in 1...\(Self.maximumOutputLength), got \(maximumLength)")
        }
        guard (0...maximumLength).contains(minimumLength) else {
            throw fail("minimum length must be in 0...\(maximumLength) (the maximum length), got \(minimumLength)")
        }
        guard lengthPenalty.isFinite, (0...10).contains(lengthPenalty) else { throw fail("length penalty must be a number in 0...10, got \(lengthPenalty)") }
        try lengthBound?.validate()
        try repetitionGuard?.validate()
        if let s = sampling {
            guard s.temperature.isFinite, s.temperature > 0, s.temperature <= 100 else { throw fail("temperature must be in (0, 100], got \(s.temperature)") }
            if let k = s.topK, k < 1 { throw fail("top-k must be at least 1, got \(k)") }
            if let p = s.topP, !(p > 0 && p <= 1) { throw fail("top-p must be in (0, 1], got \(p)") }
            guard beamWidth == 1, nBest == 1 else { throw fail("sampling draws one sequence per input: beam width and n-best must be 1") }
        }
    }
}

/// Sampling of whole sequences, token by token, from the model's distribution reshaped by
/// temperature, top-k and top-p; reproducible for a seed.
public struct SamplingOptions: Sendable, Equatable {
    public var temperature: Double
    public var topK: Int?
    public var topP: Double?
    public var seed: UInt64
    public init(temperature: Double = 1, topK: Int? = nil, topP: Double? = nil, seed: UInt64 = 1) {
        (self.temperature, self.topK, self.topP, self.seed) = (temperature, topK, topP, seed)
    }
}

/// Greedy and beam search over any `StepDecoder`.
public enum Search {
    static func normalized(_ logp: Double, length: Int, alpha: Double) -> Double {
        alpha == 0 ? logp : logp / Foundation.pow((5 + Double(length)) / 6, alpha)
    }

    /// The stop of a row that has not ended after `tokens`: its length bound, the maximum
    /// length, or the repetition guard; nil while it may go on.
    static func limit(_ tokens: [Int], bound: Int?, options: DecodingOptions) -> StopReason? {
        if let bound, tokens.count >= bound, bound < options.maximumLength { return .lengthLimit }
        if tokens.count >= options.maximumLength { return .maximumLength }
        if options.repetitionGuard?.caught(tokens) == true { return .repetition }
        return nil
    }

    /// Rows decoded in lockstep, one token each per step (greedy and sampling): each row's
    /// hypothesis and whether it goes on.
    struct LockstepRows {
        var hypotheses: [Hypothesis]
        var live: [Bool]
        let bounds: [Int]?
        let options: DecodingOptions

        init(rows: Int, bounds: [Int]?, options: DecodingOptions) {
            (self.bounds, self.options) = (bounds, options)
            hypotheses = []
            live = []
            for r in 0..<rows {
                // A bound of 0 (or a maximum length of 0) stops a row before its first token.
                let stop = limit([], bound: bounds?[r], options: options)
                hypotheses.append(Hypothesis(tokens: [], logProbability: 0, score: 0, finished: false, stop: stop))
                live.append(stop == nil)
            }
        }

        var active: [Int] { live.indices.filter { live[$0] } }

        /// Row r takes `token` (log-probability `logp`): end-of-sequence ends it; any other
        /// token is appended, and the row stops at the first limit it reaches.
        mutating func take(_ token: Int, logp: Double, row r: Int, endIndex: Int) {
            hypotheses[r].logProbability += logp
            if token == endIndex {
                (hypotheses[r].finished, hypotheses[r].stop, live[r]) = (true, .end, false)
            } else {
                hypotheses[r].tokens.append(token)
                if let stop = limit(hypotheses[r].tokens, bound: bounds?[r], options: options) { (hypotheses[r].stop, live[r]) = (stop, false) }
            }
        }
    }

    /// Greedy decoding of N rows in lockstep; each row stops at its own end-of-sequence, its
    /// bound (`bounds[r]`, from its source's length), the repetition guard, or `maximumLength`.
    public static func greedy<D: StepDecoder>(_ decoder: D, initial: D.State, rows: Int, start: Int, options: DecodingOptions,
                                              bounds: [Int]? = nil) throws -> [Hypothesis] {
        var lockstep = LockstepRows(rows: rows, bounds: bounds, options: options)
        var state = initial
        var tokens = [Int](repeating: start, count: rows)
        for t in 0..<Swift.max(options.maximumLength, 0) {
            let active = lockstep.active
            if active.isEmpty { break }
            let (logp, next) = try decoder.step(tokens: tokens, state: state)
            let v = logp.shape[1]
            for r in active {
                var best = 0, bestValue = -Float.infinity
                for k in 0..<v {
                    let value = (k == decoder.endIndex && t < options.minimumLength) ? -Float.infinity : logp.scalars[r * v + k]
                    if value > bestValue { best = k; bestValue = value }
                }
                lockstep.take(best, logp: Double(bestValue), row: r, endIndex: decoder.endIndex)
                tokens[r] = best
            }
            state = next
        }
        var hypotheses = lockstep.hypotheses
        for r in hypotheses.indices {
            hypotheses[r].score = normalized(hypotheses[r].logProbability, length: hypotheses[r].tokens.count + (hypotheses[r].finished ? 1 : 0), alpha: options.lengthPenalty)
        }
        return hypotheses
    }

    /// One sequence drawn per row: each token from the row's log-probabilities through
    /// `Sampling.index` with a generator seeded by `sampling.seed` (the same seed, the same draws).
    public static func sample<D: StepDecoder>(_ decoder: D, initial: D.State, rows: Int, start: Int, options: DecodingOptions,
                                              sampling: SamplingOptions, bounds: [Int]? = nil) throws -> [Hypothesis] {
        var generator = SeededGenerator(seed: sampling.seed)
        var lockstep = LockstepRows(rows: rows, bounds: bounds, options: options)
        var state = initial
        var tokens = [Int](repeating: start, count: rows)
        for t in 0..<options.maximumLength {
            let active = lockstep.active
            if active.isEmpty { break }
            let (logp, next) = try decoder.step(tokens: tokens, state: state)
            let v = logp.shape[1]
            for r in active {
                var logs = (0..<v).map { Double(logp.scalars[r * v + $0]) }
                if t < options.minimumLength { logs[decoder.endIndex] = -.infinity }
                let token = Sampling.index(logProbabilities: logs, temperature: sampling.temperature, topK: sampling.topK,
                                           topP: sampling.topP, unit: generator.nextUnit())
                lockstep.take(token, logp: logs[token], row: r, endIndex: decoder.endIndex)
                tokens[r] = token
            }
            state = next
        }
        var hypotheses = lockstep.hypotheses
        for r in hypotheses.indices { hypotheses[r].score = hypotheses[r].logProbability }
        return hypotheses
    }

    /// Beam search over N sources at once (their beams side by side, `beamWidth` rows each);
    /// returns per source up to `nBest` hypotheses, best first. Works for any `StepDecoder`:
    /// the state is reordered with `selecting(rows:)` after every step.
    ///
    /// A beam that reaches its source's bound (`bounds[s]`) or is caught by the repetition guard
    /// leaves the search as an unfinished hypothesis with that stop (returned, like beams at the
    /// maximum length, when fewer than n-best hypotheses ended); a source whose every beam has
    /// left is done.
    public static func beam<D: StepDecoder>(_ decoder: D, initial: D.State, rows: Int, start: Int, options: DecodingOptions,
                                            bounds: [Int]? = nil) throws -> [[Hypothesis]] {
        let k = Swift.max(options.beamWidth, 1)
        var state = try initial.selecting(rows: (0..<rows).flatMap { Array(repeating: $0, count: k) })
        // Per source: live beams (tokens, log p) in rows s*k ..< s*k + k; only the first is live at first.
        var beams = (0..<rows).map { _ in (0..<k).map { i in (tokens: [Int](), logp: i == 0 ? 0.0 : -Double.infinity) } }
        var finished = [[Hypothesis]](repeating: [], count: rows)
        var done = (0..<rows).map { s in limit([], bound: bounds?[s], options: options) == .lengthLimit }
        var stopped = [[Hypothesis]](repeating: [], count: rows)
        for t in 0..<Swift.max(options.maximumLength, 0) {
            if done.allSatisfy({ $0 }) { break }
            let tokens = beams.flatMap { $0.map { $0.tokens.last ?? start } }
            let (logp, next) = try decoder.step(tokens: tokens, state: state)
            let v = logp.shape[1], scalars = logp.scalars
            var order = [Int](repeating: 0, count: rows * k)
            for s in 0..<rows {
                if done[s] { for i in 0..<k { order[s * k + i] = s * k + i }; continue }
                // The best 2k extensions, best first (ties: lower beam, then lower token): at most
                // k of them end (one per beam), so the k beams that go on are among them. A
                // bounded insertion instead of sorting all k V (V: thousands for word targets).
                var candidates = TopCandidates(capacity: 2 * k)
                scalars.withUnsafeBufferPointer { row in
                    for b in 0..<k where beams[s][b].logp > -Double.infinity {
                        let base = beams[s][b].logp, offset = (s * k + b) * v
                        for w in 0..<v {
                            if w == decoder.endIndex && t < options.minimumLength { continue }
                            candidates.offer(score: base + Double(row[offset + w]), beam: b, token: w)
                        }
                    }
                }
                var nextBeams: [(tokens: [Int], logp: Double)] = []
                for c in candidates.best {
                    if c.token == decoder.endIndex {
                        let tokens = beams[s][c.beam].tokens
                        finished[s].append(Hypothesis(tokens: tokens, logProbability: c.score,
                                                      score: normalized(c.score, length: tokens.count + 1, alpha: options.lengthPenalty), finished: true))
                    } else {
                        order[s * k + nextBeams.count] = s * k + c.beam
                        nextBeams.append((beams[s][c.beam].tokens + [c.token], c.score))
                    }
                    if nextBeams.count == k { break }
                }
                // Beams at their bound or caught looping leave the search (the maximum length
                // ends every beam below, as before).
                for i in nextBeams.indices where nextBeams[i].logp > -Double.infinity {
                    if let stop = limit(nextBeams[i].tokens, bound: bounds?[s], options: options), stop != .maximumLength {
                        stopped[s].append(Hypothesis(tokens: nextBeams[i].tokens, logProbability: nextBeams[i].logp,
                                                     score: normalized(nextBeams[i].logp, length: nextBeams[i].tokens.count, alpha: options.lengthPenalty),
                                                     finished: false, stop: stop))
                        nextBeams[i].logp = -Double.infinity
                    }
                }
                while nextBeams.count < k {
                    order[s * k + nextBeams.count] = s * k
                    nextBeams.append(([], -Double.infinity))
                }
                beams[s] = nextBeams
                if nextBeams.allSatisfy({ $0.logp == -Double.infinity }) { done[s] = true }
                // Done when enough hypotheses ended and no live beam can beat the worst kept one
                // (scores only fall as a beam grows when alpha is 0; with a penalty, stop at k ended).
                let kept = finished[s].sorted { $0.score > $1.score }.prefix(Swift.max(options.nBest, 1))
                if kept.count >= Swift.max(options.nBest, 1), let worst = kept.last,
                   options.lengthPenalty == 0 ? nextBeams.allSatisfy({ $0.logp <= worst.score }) : finished[s].count >= k {
                    done[s] = true
                }
            }
            state = try next.selecting(rows: order)
        }
        return (0..<rows).map { s in
            // Hypotheses that ended come first; when fewer than n-best did, unfinished ones (that
            // left at their bound, were caught looping, or reached the maximum length) fill the
            // list, marked as such.
            var all = finished[s]
            if all.count < Swift.max(options.nBest, 1) {
                all += stopped[s] + beams[s].filter { $0.logp > -Double.infinity }.map {
                    Hypothesis(tokens: $0.tokens, logProbability: $0.logp, score: normalized($0.logp, length: $0.tokens.count, alpha: options.lengthPenalty), finished: false)
                }
            }
            return Array(all.sorted { $0.score > $1.score }.prefix(Swift.max(options.nBest, 1)))
        }
    }
}

/// The best `capacity` of the candidates offered, best first: higher score, then lower beam, then
/// lower token (the order a full sort of all of them gives).
struct TopCandidates {
    let capacity: Int
    private(set) var best: [(score: Double, beam: Int, token: Int)] = []

    init(capacity: Int) {
        self.capacity = capacity
        best.reserveCapacity(capacity + 1)
    }

    @inline(__always)
    static func before(_ a: (score: Double, beam: Int, token: Int), _ b: (score: Double, beam: Int, token: Int)) -> Bool {
        a.score > b.score || (a.score == b.score && (a.beam, a.token) < (b.beam, b.token))
    }

    mutating func offer(score: Double, beam: Int, token: Int) {
        let c = (score: score, beam: beam, token: token)
        if best.count == capacity, let last = best.last, !Self.before(c, last) { return }
        var i = best.count
        while i > 0 && Self.before(c, best[i - 1]) { i -= 1 }
        best.insert(c, at: i)
        if best.count > capacity { best.removeLast() }
    }
}

/// The SequenceTransformer as a step decoder over an encoded batch.
struct TransformerStepper: StepDecoder {
    let model: SequenceTransformer
    let encoded: SequenceTransformer.Encoded
    var endIndex: Int { model.configuration.target.endIndex }

    func step(tokens: [Int], state: SequenceTransformer.DecoderState) throws -> (logProbabilities: Tensor<Float>, state: SequenceTransformer.DecoderState) {
        let (logits, next, _) = try model.step(tokens: tokens, state: state, encoded: encoded)
        return (try logits.logSoftmax(alongAxis: 1), next)
    }
}

extension SequenceTransformer {
    /// Decodes a batch of sources: greedy when `beamWidth` is 1, else beam search. Returns per
    /// source up to `nBest` hypotheses as text with their scores.
    public func decode(_ source: SourceBatch, options: DecodingOptions = DecodingOptions()) throws -> [[(text: String, hypothesis: Hypothesis)]] {
        try options.validate()
        return try withoutGradients {
            let encoded = try encode(source)
            let stepper = TransformerStepper(model: self, encoded: encoded)
            let rows = encoded.outputs.batch, start = configuration.target.startIndex
            // Each row's bound from its source's length: tokens of a text, encoder steps of audio.
            let bounds = (options.lengthBound ?? outputLengthBound).map { bound in encoded.outputs.lengths.map { bound.limit(sourceLength: $0) } }
            let results: [[Hypothesis]]
            if let sampling = options.sampling {
                results = try Search.sample(stepper, initial: try initialState(encoded), rows: rows, start: start, options: options, sampling: sampling, bounds: bounds).map { [$0] }
            } else if options.beamWidth <= 1 && options.nBest <= 1 {
                results = try Search.greedy(stepper, initial: try initialState(encoded), rows: rows, start: start, options: options, bounds: bounds).map { [$0] }
            } else {
                results = try Search.beam(stepper, initial: try initialState(encoded), rows: rows, start: start, options: options, bounds: bounds)
            }
            return try results.map { hs in try hs.map { (try configuration.target.decode($0.tokens), $0) } }
        }
    }
}

extension SequenceTransformer {
    /// Greedy decoding of a single source, with where the decoder looked: the attention weights
    /// of every output step (including the end-of-sequence step) over the encoder steps, each
    /// row summing to 1. Throws for a model without attention or a batch of more than one.
    public func alignment(_ source: SourceBatch, maximumLength: Int = 256) throws -> (text: String, tokens: [Int], weights: [[Float]]) {
        guard configuration.attention != nil || !hasConfiguredParts else { throw TensorError.invalidArgument(op: "SequenceTransformer alignment", message: "the model has no attention") }
        return try withoutGradients {
            let encoded = try encode(source)
            guard encoded.outputs.batch == 1 else {
                throw TensorError.invalidArgument(op: "SequenceTransformer alignment", message: "one source at a time, not \(encoded.outputs.batch)")
            }
            var state = try initialState(encoded)
            var token = configuration.target.startIndex
            var tokens: [Int] = []
            var rows: [[Float]] = []
            for _ in 0..<maximumLength {
                let (logits, next, weights) = try step(tokens: [token], state: state, encoded: encoded)
                rows.append(weights.map { Array($0.scalars) } ?? [])
                token = try logits.argmax(alongAxis: 1)[0]
                state = next
                if token == configuration.target.endIndex { break }
                tokens.append(token)
            }
            return (try configuration.target.decode(tokens), tokens, rows)
        }
    }
}

extension SequenceTransformer {
    /// Encoder steps of a source: its tokens (text), its frames over the frame stacking (audio).
    public func sourceSteps(text: String? = nil, frames: Int = 0) throws -> Int {
        switch configuration.source {
        case let .text(codec, _): return try codec.encode(text ?? "").count
        case let .audio(_, k): return (frames + k - 1) / k
        }
    }

    /// Sets `outputLengthBound` from training examples (`OutputLengthBound.fitted`), so that the
    /// model file bounds every output by its source's length.
    public func fitOutputLengthBound(_ examples: [SequenceExample]) throws {
        var sources: [Int] = [], targets: [Int] = []
        for e in examples {
            sources.append(try sourceSteps(text: e.text, frames: e.frames))
            targets.append(try configuration.target.encode(e.target).count)
        }
        outputLengthBound = OutputLengthBound.fitted(sourceLengths: sources, targetLengths: targets)
    }
}
