import Foundation

/// Bulk zero-fill and copy through memset and memcpy.
///
/// Generic code over `TensorScalar` that is not specialized (a generic layer in one module
/// calling a generic tensor op in another) would otherwise initialize and copy arrays one
/// element at a time through the type's value witnesses: measured at 9% of an LSTM training
/// step before these helpers. Every `TensorScalar` is a plain IEEE float, so all-zero bytes are
/// +0 and a byte copy is a value copy.
public enum Memory {
    /// `count` zeros.
    @inlinable
    public static func zeros<S: TensorScalar>(_ count: Int) -> [S] {
        [S](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { zero(base, count: count) }
            initialized = count
        }
    }

    /// `count` elements left as they come from the allocator, for outputs that the caller
    /// writes in full before anyone reads them (zeroing them first was ~5% of a small training
    /// step). Every TensorScalar is a plain float, so any bit pattern is a valid value.
    @inlinable
    public static func uninitialized<S: TensorScalar>(_ count: Int) -> [S] {
        [S](unsafeUninitializedCapacity: count) { _, initialized in initialized = count }
    }

    /// `count` copies of `value`.
    public static func filled<S: TensorScalar>(_ value: S, count: Int) -> [S] {
        // Zeros by memset; otherwise a loop in the concrete type, which stores whole vectors
        // (an in-place combine with a broadcast scalar ran scalar: its output aliases its input).
        if value == 0 { return zeros(count) }
        var out: [S] = uninitialized(count)
        out.withUnsafeMutableBufferPointer { o in
            guard let base = o.baseAddress else { return }
            if S.self == Float.self {
                fill(UnsafeMutableRawPointer(base).assumingMemoryBound(to: Float.self), unsafeBitCast(value, to: Float.self), count)
            } else if S.self == Double.self {
                fill(UnsafeMutableRawPointer(base).assumingMemoryBound(to: Double.self), unsafeBitCast(value, to: Double.self), count)
            } else {
                base.initialize(repeating: value, count: count)
            }
        }
        return out
    }

    /// Called with a concrete type (specialized here), unlike `filled`'s generic S.
    private static func fill<T>(_ p: UnsafeMutablePointer<T>, _ value: T, _ count: Int) {
        WorkerTeam.forEachPart(count) { r in for i in r { p[i] = value } }
    }

    /// A new array holding `count` elements read from `source`.
    @inlinable
    public static func array<S: TensorScalar>(copying source: UnsafePointer<S>, count: Int) -> [S] {
        [S](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { copy(source, to: base, count: count) }
            initialized = count
        }
    }

    /// Copies `count` elements; the ranges must not overlap. Large copies run in two halves on
    /// the worker team, like the other elementwise passes.
    @inlinable
    public static func copy<S: TensorScalar>(_ source: UnsafePointer<S>, to destination: UnsafeMutablePointer<S>, count: Int) {
        WorkerTeam.forEachPart(count) { r in
            memcpy(destination + r.lowerBound, source + r.lowerBound, r.count * MemoryLayout<S>.stride)
        }
    }

    /// Zeroes `count` elements (large ones in parts on the worker team).
    @inlinable
    public static func zero<S: TensorScalar>(_ destination: UnsafeMutablePointer<S>, count: Int) {
        WorkerTeam.forEachPart(count) { r in memset(destination + r.lowerBound, 0, r.count * MemoryLayout<S>.stride) }
    }

    /// Builds an array of `count` elements that `body` writes, every one of them (no zeroing
    /// first: for copies and concatenations that cover the whole output).
    @inlinable
    public static func fullyWritten<S: TensorScalar>(_ count: Int, by body: (UnsafeMutablePointer<S>) -> Void) -> [S] {
        [S](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { body(base) }
            initialized = count
        }
    }

    /// Builds an array of `count` zeros and lets `body` write into it.
    @inlinable
    public static func build<S: TensorScalar>(_ count: Int, _ body: (UnsafeMutablePointer<S>) -> Void) -> [S] {
        var out: [S] = zeros(count)
        out.withUnsafeMutableBufferPointer { o in if let base = o.baseAddress { body(base) } }
        return out
    }
}
