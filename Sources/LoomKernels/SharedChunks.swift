import CLoomKernels
import Synchronization

/// The large products of two tasks that run at once on the two threads of `WorkerTeam` (the two
/// directions of a bidirectional layer), cut into chunks either thread may take.
///
/// Each task runs on its own thread, so a task that finishes first used to wait for the other:
/// on a shared machine two cores often run at different speeds for a while, and a training step
/// lost that difference per layer. A task posts each
/// batch of chunks (`run`) and takes chunks, its own first, then the other task's, until neither
/// has any left untaken; at its end (`end`) it keeps taking the other's until that one ends too.
/// Work flows to whichever thread is free; nothing waits for a thread that is behind. A task
/// whose partner has ended (`hasEnded`: its thread only helps now) may also post small batches,
/// such as the two halves of each recurrent step it has left.
///
/// Which thread runs which chunk depends on timing, so a chunk must compute the same thing
/// wherever it runs: results that add chunks together add them in an order of their own (by
/// chunk), never in the order the chunks happened to run.
public final class SharedChunks: @unchecked Sendable {
    final class Side: @unchecked Sendable {
        /// The posted batch in one word: phase (bits 48-62) | chunk count (24-47) | next
        /// untaken chunk (0-23). Taking a chunk is one compare-exchange on the whole word, so a
        /// thread holding a stale word of an earlier batch can never take a chunk of a later one.
        let word = Atomic<Int>(0)
        let completed = Atomic<Int>(0)
        let active = Atomic<Bool>(false)
        /// Set by `end` (and cleared by `begin`): the task has finished and its thread only helps.
        let ended = Atomic<Bool>(false)
        /// Set before its batch is published, cleared after all its chunks are complete.
        var body: ((_ chunk: Int) -> Void)?
    }

    private let sides = [Side(), Side()]

    /// The largest number of chunks in one batch.
    public static let maximumChunks = (1 << 24) - 1

    public init() {}

    /// Marks task `side` (0 or 1) as running: the other task's `end` helps it until its own `end`.
    public func begin(_ side: Int) {
        sides[side].ended.store(false, ordering: .relaxed)
        sides[side].active.store(true, ordering: .sequentiallyConsistent)
    }

    /// Whether task `side` has ended (`end`): its thread then does nothing but take the other
    /// task's chunks, so that the other may cut even small jobs into chunks for it.
    public func hasEnded(_ side: Int) -> Bool {
        sides[side].ended.load(ordering: .relaxed)
    }

    /// Runs `body(chunk)` once for every chunk in 0..<count and returns when all are
    /// complete. Takes this task's chunks first and then the other task's, and returns once this
    /// batch is complete and neither task has a chunk left untaken. Chunks may run in any order
    /// and concurrently (on the two threads); each must write only memory no other chunk of either
    /// task touches.
    public func run(_ side: Int, count: Int, _ body: @escaping (_ chunk: Int) -> Void) {
        precondition(count <= Self.maximumChunks, "\(count) chunks in one batch; at most \(Self.maximumChunks)")
        guard count > 0 else { return }
        let me = sides[side], other = sides[1 - side]
        // Escaping, not `withoutActuallyEscaping`: a helper may still hold its reference to the
        // body for a moment after its chunk is counted complete.
        let phase = ((me.word.load(ordering: .relaxed) >> 48) + 1) & 0x7FFF
        me.body = body
        me.completed.store(0, ordering: .relaxed)
        me.word.store(phase << 48 | count << 24, ordering: .releasing)
        while true {
            if let chunk = take(me) {
                body(chunk)
                me.completed.add(1, ordering: .releasing)
            } else if !help(other) {
                if me.completed.load(ordering: .acquiring) == count { break }
                loom_spin_pause()
            }
        }
        me.body = nil
    }

    /// Ends task `side`: takes the other task's chunks until that task has ended too (the time
    /// would otherwise go to waiting for it). Returns at once when the other task is not running.
    public func end(_ side: Int) {
        sides[side].ended.store(true, ordering: .relaxed)
        sides[side].active.store(false, ordering: .sequentiallyConsistent)
        let other = sides[1 - side]
        while other.active.load(ordering: .sequentiallyConsistent) {
            if !help(other) { loom_spin_pause() }
        }
    }

    /// Takes the next untaken chunk of `side`'s posted batch, if any.
    private func take(_ side: Side) -> Int? {
        var word = side.word.load(ordering: .acquiring)
        while true {
            let next = word & 0xFF_FFFF, count = (word >> 24) & 0xFF_FFFF
            guard next < count else { return nil }
            let (exchanged, original) = side.word.compareExchange(expected: word, desired: word + 1, ordering: .acquiringAndReleasing)
            if exchanged { return next }
            word = original
        }
    }

    /// Runs one chunk of the other task's batch on this thread; false when none is left.
    private func help(_ side: Side) -> Bool {
        guard let chunk = take(side) else { return false }
        // Published before the batch's word; the batch cannot complete while this chunk runs.
        guard let body = side.body else { preconditionFailure("SharedChunks: a taken chunk without its body") }
        body(chunk)
        side.completed.add(1, ordering: .releasing)
        return true
    }

    /// Cuts 0..<count into pieces of decreasing size, the fractions `shares` of it (summing to
    /// 1), each a multiple of `multiple` but the last: big pieces first for little per-call
    /// overhead, small ones last so that both threads run out of work at nearly the same time.
    public static func pieces(_ count: Int, shares: [Double], multiple: Int = 1) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var start = 0, total = 0.0
        for share in shares where start < count {
            total += share
            var end = Swift.min(count, Int((Double(count) * total).rounded()))
            end = Swift.min(count, (end + multiple - 1) / multiple * multiple)
            if end > start { result.append(start..<end) }
            start = Swift.max(start, end)
        }
        if start < count { result.append(start..<count) }
        return result
    }
}

/// One task's handle on a `SharedChunks`: where its kernel posts its chunks.
public struct ChunkSharing: @unchecked Sendable {
    public let chunks: SharedChunks
    public let side: Int

    public init(_ chunks: SharedChunks, side: Int) {
        self.chunks = chunks
        self.side = side
    }

    /// Whether the other task has ended (`SharedChunks.hasEnded`).
    public var otherHasEnded: Bool { chunks.hasEnded(1 - side) }

    /// `SharedChunks.run` for this task's side.
    public func run(count: Int, _ body: @escaping (_ chunk: Int) -> Void) {
        chunks.run(side, count: count, body)
    }
}
