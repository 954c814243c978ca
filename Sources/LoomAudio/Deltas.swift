/// Delta and delta-delta features (librosa.feature.delta with its defaults: width 9, mode
/// "interp"): the first and second time derivatives of each feature, as the slope of the line and
/// twice the curvature of the parabola fitted by least squares to the 9 frames around a frame.
/// The first and last 4 frames take the fit of the first and last 9 (a line's slope and a
/// parabola's curvature are the same all along it); an utterance of fewer than 9 frames takes the
/// fit over all its frames (librosa refuses those; a derivative needs 2 frames, a second
/// derivative 3, and is 0 with fewer).
///
/// With order 1 each frame becomes [features, deltas]; with 2, [features, deltas, delta-deltas].
public enum Deltas {
    /// The frame count of the fitting window.
    public static let width = 9

    /// `values` [frames, features] row-major with each frame's derivatives up to `order` (1 or 2)
    /// appended: [frames, features x (1 + order)].
    public static func appended(_ values: [Float], frames: Int, features: Int, order: Int) -> [Float] {
        guard order > 0, frames > 0, features > 0 else { return values }
        let size = features * (1 + order)
        var out = [Float](repeating: 0, count: frames * size)
        let half = width / 2
        for t in 0..<frames {
            for k in 0..<features { out[t * size + k] = values[t * features + k] }
        }
        // The window of frame t: 9 frames centred on t moved inside the utterance, or all of it.
        func window(_ t: Int) -> Range<Int> {
            guard frames >= width else { return 0..<frames }
            let centre = Swift.min(Swift.max(t, half), frames - 1 - half)
            return (centre - half)..<(centre + half + 1)
        }
        for derivative in 1...Swift.min(order, 2) {
            var cachedWindow: Range<Int>?
            var weights: [Double] = []
            for t in 0..<frames {
                let w = window(t)
                if w != cachedWindow {
                    weights = Self.weights(count: w.count, derivative: derivative)
                    cachedWindow = w
                }
                for k in 0..<features {
                    var sum = 0.0
                    for (i, f) in w.enumerated() { sum += weights[i] * Double(values[f * features + k]) }
                    out[t * size + derivative * features + k] = Float(sum)
                }
            }
        }
        return out
    }

    /// Least-squares weights over `count` equally spaced frames: the slope of the fitted line
    /// (derivative 1: (n - mean) / sum (n - mean)^2) or twice the leading coefficient of the
    /// fitted parabola (derivative 2: 2 q(n) / sum q^2, with q(n) = (n - mean)^2 - its mean,
    /// orthogonal to 1 and n). Zero weights when the frames cannot determine it.
    static func weights(count: Int, derivative: Int) -> [Double] {
        let centre = Double(count - 1) / 2
        let n = (0..<count).map { Double($0) - centre }
        if derivative == 1 {
            let norm = n.reduce(0) { $0 + $1 * $1 }
            return norm > 0 ? n.map { $0 / norm } : n.map { _ in 0 }
        }
        let squares = n.map { $0 * $0 }
        let mean = squares.reduce(0, +) / Double(count)
        let q = squares.map { $0 - mean }
        let norm = q.reduce(0) { $0 + $1 * $1 }
        return count >= 3 && norm > 0 ? q.map { 2 * $0 / norm } : q.map { _ in 0 }
    }
}
