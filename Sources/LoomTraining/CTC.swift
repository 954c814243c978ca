import Foundation

extension Loss {
    /// How per-sequence losses are combined into one value.
    public enum Reduction: Sendable {
        /// Each sequence's loss divided by its target length (at least 1), then the mean over the
        /// batch (PyTorch's `reduction="mean"` for `ctc_loss`).
        case mean
        /// The sum over the batch.
        case sum
    }

    /// Connectionist temporal classification loss (Graves et al. 2006): minus the log of the
    /// probability of `targets[b]` summed over every frame-level alignment of it to the first
    /// `inputLengths[b]` frames, where an alignment emits one class or `blank` per frame and
    /// collapses to the target by merging repeats and then dropping blanks (so a repeated label
    /// needs a blank between its two frames). PyTorch's `ctc_loss` after `log_softmax`.
    ///
    /// Shapes: `logits` [T, B, C] unnormalized scores, time-major; `inputLengths` B frame
    /// counts (at most T; frames past them are ignored and get no gradient); `targets` B label
    /// sequences of classes in 0..<C other than `blank` (a target may be empty).
    ///
    /// Fused: the value runs the forward (alpha) and backward (beta) recursions in log space in
    /// Double, and the gradient with respect to the logits is, at frame t < inputLengths[b],
    /// softmax(t, k) - sum over positions s of the blank-extended target labelled k of
    /// alpha_t(s) beta_t(s) / (p(target) y_t(k)) (Graves et al. 2006, eq. 16), times the
    /// reduction's weight. A target no alignment fits (too long for its frames) has an infinite
    /// loss; with `zeroInfinity` its loss is 0 and it has no gradient (PyTorch's `zero_infinity`).
    ///
    /// ```swift
    /// let loss = try Loss.ctc(logits: encoderScores, inputLengths: [50, 42], targets: [[3, 1, 4], [1, 5]])
    /// ```
    public static func ctc<S: TensorScalar>(
        logits: Tensor<S>, inputLengths: [Int], targets: [[Int]], blank: Int = 0, reduction: Reduction = .mean,
        zeroInfinity: Bool = false
    ) throws -> Tensor<S> {
        func fail(_ message: String) -> TensorError { .invalidArgument(op: "ctc", message: message) }
        guard logits.rank == 3, logits.shape[2] > 0 else {
            throw TensorError.rank(op: "ctc", expected: "logits [T, B, C] with C > 0", shape: logits.shape)
        }
        let (frames, batch, classes) = (logits.shape[0], logits.shape[1], logits.shape[2])
        guard inputLengths.count == batch, targets.count == batch else {
            throw fail("logits \(logits.shape) hold \(batch) sequences but \(inputLengths.count) input lengths and \(targets.count) targets were given")
        }
        guard (0..<classes).contains(blank) else { throw fail("blank \(blank) is not a class in 0..<\(classes)") }
        for b in 0..<batch {
            guard (0...frames).contains(inputLengths[b]) else {
                throw fail("input length \(inputLengths[b]) of sequence \(b) is not in 0...\(frames)")
            }
            if let bad = targets[b].first(where: { $0 == blank || !(0..<classes).contains($0) }) {
                throw fail("target label \(bad) of sequence \(b) is \(bad == blank ? "the blank" : "not a class in 0..<\(classes)")")
            }
        }
        let logProbabilities = try Tensor<Double>(shape: [frames * batch, classes], scalars: logits.scalars.map(Double.init)).logSoftmax().scalars
        // Sequences are independent: in pieces over the team, each writing its own slot.
        var alignments = [CTCAlignment?](repeating: nil, count: batch)
        alignments.withUnsafeMutableBufferPointer { slots in
            let pieces = (0..<batch).map { $0..<($0 + 1) }
            WorkerTeam.inPieces(pieces) { sequences in
                for b in sequences {
                    slots[b] = CTCAlignment(logProbabilities, batch: batch, classes: classes, sequence: b, frames: inputLengths[b],
                                            target: targets[b], blank: blank)
                }
            }
        }
        var losses = [Double](repeating: 0, count: batch)
        var counted = [CTCAlignment?](repeating: nil, count: batch)
        for b in 0..<batch {
            guard let alignment = alignments[b] else { continue }
            let infinite = alignment.logLikelihood == -.infinity
            losses[b] = infinite && zeroInfinity ? 0 : -alignment.logLikelihood
            counted[b] = infinite && zeroInfinity ? nil : alignment
        }
        let weights = (0..<batch).map { b in
            reduction == .sum ? 1 : 1 / (Double(batch) * Double(Swift.max(1, targets[b].count)))
        }
        let value = zip(losses, weights).reduce(0) { $0 + $1.0 * $1.1 }
        let shape = logits.shape
        return Tensor(S(value)).recorded(from: [logits]) { g in
            let seed = Double(g.scalars[0])
            var dx = [S](repeating: 0, count: frames * batch * classes)
            for b in 0..<batch {
                guard let alignment = counted[b] else { continue }
                alignment.addGradient(into: &dx, logProbabilities: logProbabilities, batch: batch, scale: seed * weights[b])
            }
            return [try? Tensor(shape: shape, scalars: dx)]
        }
    }
}

/// How one sequence's target aligns to its frames: log p(target | input) and, at each frame,
/// the posterior probability that an alignment emits each class there (its occupancy).
///
/// Two computations of the same quantities: `scaled`, the recursions over probabilities
/// rescaled at every frame (Rabiner's scaling; a few multiply-adds per lattice cell), and
/// `logSpace`, the same recursions over log probabilities (an exp and a log per addition),
/// the reference the tests hold `scaled` to and the fallback when a probability underflows
/// Double (a class's log-probability below -745 everywhere a path could go).
struct CTCAlignment {
    let frames: Int, sequence: Int, classes: Int
    /// log p(target | input); -infinity when no alignment fits.
    let logLikelihood: Double
    /// [frames, classes]: the expected number of alignments' emissions of class k at frame t,
    /// over p (each frame's row sums to 1). Empty when no alignment fits.
    let occupancy: [Double]

    init(_ logProbabilities: [Double], batch: Int, classes: Int, sequence b: Int, frames: Int, target: [Int], blank: Int) {
        let labels = [blank] + target.flatMap { [$0, blank] }
        // Each label takes a frame, and a repeated label a blank frame between its two.
        let needed = target.count + zip(target, target.dropFirst()).filter { $0 == $1 }.count
        guard frames >= needed, frames > 0 else {
            self.init(frames: frames, sequence: b, classes: classes, logLikelihood: frames >= needed ? 0 : -.infinity, occupancy: [])
            return
        }
        self = Self.scaled(logProbabilities, batch: batch, classes: classes, sequence: b, frames: frames, labels: labels, blank: blank)
            ?? Self.logSpace(logProbabilities, batch: batch, classes: classes, sequence: b, frames: frames, labels: labels, blank: blank)
    }

    init(frames: Int, sequence: Int, classes: Int, logLikelihood: Double, occupancy: [Double]) {
        (self.frames, self.sequence, self.classes, self.logLikelihood, self.occupancy) = (frames, sequence, classes, logLikelihood, occupancy)
    }

    /// Whether position s of the blank-extended labels may be reached from s - 2 (skipping the
    /// blank between): not for a blank, nor for a repeat of the label before the blank.
    @inline(__always)
    static func skips(_ labels: [Int], _ s: Int, blank: Int) -> Bool { s >= 2 && labels[s] != blank && labels[s] != labels[s - 2] }

    /// The recursions over probabilities, each frame's row rescaled to sum 1 (alpha, and beta
    /// without the frame's own emission); nil when a row underflows to 0.
    static func scaled(_ logProbabilities: [Double], batch: Int, classes: Int, sequence b: Int, frames: Int, labels: [Int],
                       blank: Int) -> CTCAlignment? {
        let width = labels.count
        var emission = [Double](repeating: 0, count: frames * width)
        for t in 0..<frames {
            for s in 0..<width { emission[t * width + s] = Foundation.exp(logProbabilities[(t * batch + b) * classes + labels[s]]) }
        }
        var alpha = [Double](repeating: 0, count: frames * width)
        var beta = alpha
        var logScale = 0.0
        alpha[0] = emission[0]
        if width > 1 { alpha[1] = emission[1] }
        for t in 0..<frames {
            let row = t * width
            if t > 0 {
                for s in 0..<width {
                    var sum = alpha[row - width + s]
                    if s > 0 { sum += alpha[row - width + s - 1] }
                    if skips(labels, s, blank: blank) { sum += alpha[row - width + s - 2] }
                    alpha[row + s] = sum * emission[row + s]
                }
            }
            var total = 0.0
            for s in 0..<width { total += alpha[row + s] }
            guard total > 0, total.isFinite else { return nil }
            for s in 0..<width { alpha[row + s] /= total }
            logScale += Foundation.log(total)
        }
        let last = (frames - 1) * width
        let end = alpha[last + width - 1] + (width > 1 ? alpha[last + width - 2] : 0)
        guard end > 0 else { return nil }
        beta[last + width - 1] = 1
        if width > 1 { beta[last + width - 2] = 1 }
        for t in stride(from: frames - 2, through: 0, by: -1) {
            let row = t * width, next = row + width
            var total = 0.0
            for s in 0..<width {
                var sum = emission[next + s] * beta[next + s]
                if s + 1 < width { sum += emission[next + s + 1] * beta[next + s + 1] }
                if s + 2 < width && skips(labels, s + 2, blank: blank) { sum += emission[next + s + 2] * beta[next + s + 2] }
                beta[row + s] = sum
                total += sum
            }
            guard total > 0, total.isFinite else { return nil }
            for s in 0..<width { beta[row + s] /= total }
        }
        var occupancy = [Double](repeating: 0, count: frames * classes)
        for t in 0..<frames {
            var total = 0.0
            for s in 0..<width { total += alpha[t * width + s] * beta[t * width + s] }
            guard total > 0, total.isFinite else { return nil }
            for s in 0..<width { occupancy[t * classes + labels[s]] += alpha[t * width + s] * beta[t * width + s] / total }
        }
        return CTCAlignment(frames: frames, sequence: b, classes: classes, logLikelihood: logScale + Foundation.log(end), occupancy: occupancy)
    }

    /// The same recursions over log probabilities (Graves et al. 2006: alpha and beta both
    /// including the frame's emission, so alpha beta counts it twice and is divided by it once).
    static func logSpace(_ logProbabilities: [Double], batch: Int, classes: Int, sequence b: Int, frames: Int, labels: [Int],
                         blank: Int) -> CTCAlignment {
        let width = labels.count
        func lp(_ t: Int, _ s: Int) -> Double { logProbabilities[(t * batch + b) * classes + labels[s]] }
        var alpha = [Double](repeating: -.infinity, count: frames * width)
        var beta = alpha
        alpha[0] = lp(0, 0)
        if width > 1 { alpha[1] = lp(0, 1) }
        for t in 1..<Swift.max(frames, 1) {
            for s in 0..<width {
                var sum = alpha[(t - 1) * width + s]
                if s > 0 { sum = logAdd(sum, alpha[(t - 1) * width + s - 1]) }
                if skips(labels, s, blank: blank) { sum = logAdd(sum, alpha[(t - 1) * width + s - 2]) }
                alpha[t * width + s] = sum + lp(t, s)
            }
        }
        let last = (frames - 1) * width
        beta[last + width - 1] = lp(frames - 1, width - 1)
        if width > 1 { beta[last + width - 2] = lp(frames - 1, width - 2) }
        for t in stride(from: frames - 2, through: 0, by: -1) {
            for s in 0..<width {
                var sum = beta[(t + 1) * width + s]
                if s + 1 < width { sum = logAdd(sum, beta[(t + 1) * width + s + 1]) }
                if s + 2 < width && skips(labels, s + 2, blank: blank) { sum = logAdd(sum, beta[(t + 1) * width + s + 2]) }
                beta[t * width + s] = sum + lp(t, s)
            }
        }
        let logLikelihood = logAdd(alpha[last + width - 1], width > 1 ? alpha[last + width - 2] : -.infinity)
        var occupancy = [Double](repeating: 0, count: frames * classes)
        guard logLikelihood > -.infinity else {
            return CTCAlignment(frames: frames, sequence: b, classes: classes, logLikelihood: logLikelihood, occupancy: [])
        }
        for t in 0..<frames {
            var posterior = [Double](repeating: -.infinity, count: classes)
            for s in 0..<width {
                posterior[labels[s]] = logAdd(posterior[labels[s]], alpha[t * width + s] + beta[t * width + s] - lp(t, s))
            }
            for k in 0..<classes where posterior[k] > -.infinity { occupancy[t * classes + k] = Foundation.exp(posterior[k] - logLikelihood) }
        }
        return CTCAlignment(frames: frames, sequence: b, classes: classes, logLikelihood: logLikelihood, occupancy: occupancy)
    }

    /// Adds `scale` times d(-log p)/d(logits) of this sequence to `dx` ([T, B, C]): at each of its
    /// frames, softmax minus occupancy (Graves et al. 2006, eq. 16). A target no alignment fits
    /// has an infinite loss and slope: its frames get NaN, as in PyTorch.
    func addGradient<S: TensorScalar>(into dx: inout [S], logProbabilities: [Double], batch: Int, scale: Double) {
        let feasible = logLikelihood > -.infinity
        for t in 0..<frames {
            let row = (t * batch + sequence) * classes
            for k in 0..<classes {
                dx[row + k] = feasible ? dx[row + k] + S(scale * (Foundation.exp(logProbabilities[row + k]) - occupancy[t * classes + k])) : .nan
            }
        }
    }

    /// log(exp(a) + exp(b)) without overflow; -infinity is the log of 0.
    static func logAdd(_ a: Double, _ b: Double) -> Double {
        if a == -.infinity { return b }
        if b == -.infinity { return a }
        return Swift.max(a, b) + Foundation.log1p(Foundation.exp(-Swift.abs(a - b)))
    }
}

/// Decoding of frame-level class scores trained with `Loss.ctc`.
public enum CTC {
    /// Best path decoding: the most likely class of each of the first `lengths[b]` frames, repeats
    /// merged, blanks dropped (Graves et al. 2006). `logits` [T, B, C]; returns B label sequences.
    public static func greedy<S: TensorScalar>(logits: Tensor<S>, lengths: [Int], blank: Int = 0) throws -> [[Int]] {
        guard logits.rank == 3, logits.shape[2] > 0 else {
            throw TensorError.rank(op: "CTC.greedy", expected: "logits [T, B, C] with C > 0", shape: logits.shape)
        }
        let (frames, batch, classes) = (logits.shape[0], logits.shape[1], logits.shape[2])
        guard lengths.count == batch, lengths.allSatisfy({ (0...frames).contains($0) }) else {
            throw TensorError.invalidArgument(op: "CTC.greedy", message: "lengths \(lengths) do not fit \(batch) sequences of at most \(frames) frames")
        }
        return (0..<batch).map { b in
            var labels: [Int] = []
            var previous = blank
            for t in 0..<lengths[b] {
                let row = (t * batch + b) * classes
                var best = 0
                for k in 1..<classes where logits.scalars[row + k] > logits.scalars[row + best] { best = k }
                if best != blank && best != previous { labels.append(best) }
                previous = best
            }
            return labels
        }
    }
}
