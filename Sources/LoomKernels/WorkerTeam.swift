import Foundation
import Synchronization
import CLoomKernels

/// Two threads (the caller and one persistent worker) that split the work of one recurrent step.
///
/// A step of a recurrent layer takes tens of microseconds, so handing half of it to a thread
/// pool (microseconds of overhead) would eat the gain; this team hands work over through an
/// atomic counter the worker spins on, and puts the worker to sleep on a semaphore after a
/// short idle spell so it does not burn a core between layers.
///
/// The worker's half is claimed, not assigned: whichever thread claims it first runs it. A
/// caller done with its own half while the worker has not started (asleep, or descheduled by
/// the system) runs the second half itself instead of waiting for the worker to wake.
public final class WorkerTeam: @unchecked Sendable {
    /// The process-wide team; `nil` on a one-core machine.
    public static let shared: WorkerTeam? = ProcessInfo.processInfo.activeProcessorCount >= 2 ? WorkerTeam() : nil

    /// Idle spins before the worker sleeps (about a millisecond or two): a training step's
    /// serial stretches between parallel products are shorter than that, so the worker is
    /// awake when the next one comes instead of paying a futex wake-up each time.
    public static let defaultSpinsBeforeSleep = 2_000_000
    private static let spinLimit = Atomic<Int>(defaultSpinsBeforeSleep)

    /// How long the idle worker spins before it sleeps, in spins. A server sets it lower: there
    /// the other core is wanted for requests between batches, not for spinning.
    public static var spinsBeforeSleep: Int {
        get { spinLimit.load(ordering: .relaxed) }
        set { spinLimit.store(max(0, newValue), ordering: .relaxed) }
    }

    private let posted = Atomic<Int>(0)
    private let finished = Atomic<Int>(0)
    /// The last generation whose second half a thread has taken.
    private let claimed = Atomic<Int>(0)
    private let sleeping = Atomic<Bool>(false)
    private let wake = DispatchSemaphore(value: 0)
    private let busy = NSLock()
    private nonisolated(unsafe) var task: ((Int) -> Void)?

    private init() {
        let thread = Thread { [unowned self] in self.work() }
        thread.name = "loom-worker"
        thread.start()
    }

    private func work() {
        Self.setInsideJob(true)
        var seen = 0
        var subnormalsFlushed: Bool?
        while true {
            var spins = 0
            let limit = Self.spinsBeforeSleep
            while posted.load(ordering: .acquiring) == seen {
                loom_spin_pause()
                spins += 1
                if spins > limit {
                    sleeping.store(true, ordering: .sequentiallyConsistent)
                    if posted.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    sleeping.store(false, ordering: .sequentiallyConsistent)
                    spins = 0
                }
            }
            seen = posted.load(ordering: .acquiring)
            // Already taken by the caller: nothing to do for this generation.
            guard claimed.compareExchange(expected: seen - 1, desired: seen, ordering: .acquiringAndReleasing).exchanged else {
                continue
            }
            let flush = BLAS.flushesSubnormals
            if flush != subnormalsFlushed {
                BLAS.applySubnormalMode()
                subnormalsFlushed = flush
            }
            task?(1)
            finished.store(seen, ordering: .releasing)
        }
    }

    /// Runs `body(0)` on the calling thread and `body(1)` on the worker (or here, when the worker
    /// has not taken it by the time `body(0)` returns), returning when both are done. When the
    /// team is already in use (another thread, or a nested call) both parts run here, one after
    /// the other, so the result is the same either way.
    public func run(_ body: (Int) -> Void) {
        if !tryRun(body) {
            let outside = !Self.isInsideJob
            if outside { Self.setInsideJob(true) }
            body(0)
            body(1)
            if outside { Self.setInsideJob(false) }
        }
    }

    /// Whether the calling thread is doing a job's parts: the worker always; another thread while
    /// it runs `tryRun`'s or `run`'s body (on the team, or one part after the other). Work split
    /// into halves (`inHalves`, `BLAS.split`) is split only outside jobs, so that how a product
    /// is cut depends on where it is called, never on whether the team happened to be free.
    public static var isInsideJob: Bool { pthread_getspecific(insideKey) != nil }

    static func setInsideJob(_ inside: Bool) {
        pthread_setspecific(insideKey, inside ? UnsafeRawPointer(bitPattern: 1) : nil)
    }

    private static let insideKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body(0)` here and `body(1)` on the worker, like `run`, when the team is free;
    /// returns false without running anything when it is in use (a nested call, or another
    /// thread) or switched off (`BLAS.setThreadCount` with a count other than 2), so the caller
    /// can do the whole job itself in one piece.
    public func tryRun(_ body: (Int) -> Void) -> Bool {
        // Inside a job (on the team or one part after the other) the team is not taken again.
        guard BLAS.usesTeam, !Self.isInsideJob, busy.try() else { return false }
        defer { busy.unlock() }
        Self.setInsideJob(true)
        defer { Self.setInsideJob(false) }
        withoutActuallyEscaping(body) { escapable in
            task = escapable
            let generation = posted.add(1, ordering: .sequentiallyConsistent).newValue
            if sleeping.load(ordering: .sequentiallyConsistent) { wake.signal() }
            escapable(0)
            if claimed.compareExchange(expected: generation - 1, desired: generation, ordering: .acquiringAndReleasing).exchanged {
                escapable(1)
            } else {
                while finished.load(ordering: .acquiring) != generation { loom_spin_pause() }
            }
            task = nil
        }
        return true
    }

    /// Elementwise passes over at least this many elements are split across the team (the
    /// grain size of PyTorch's parallel CPU kernels is the same 32,768).
    public static let grain = 1 << 15

    /// Runs `body` over 0..<count: in two halves on the team (`inHalves`) when the pass touches
    /// at least `grain` elements, else in one piece here. `elements` is that size when an index
    /// stands for more than one element (a row, a panel); by default `count` itself.
    @inline(__always)
    public static func forEachHalf(_ count: Int, elements: Int? = nil, _ body: (Range<Int>) -> Void) {
        if (elements ?? count) >= grain { inHalves(count, body) } else { body(0..<count) }
    }

    /// Runs `body` over 0..<count in two halves, the first here and the second on the worker,
    /// when there is a team and it is free (not already running both directions of a layer, or
    /// the job around this one); else as `inTwoParts` says.
    @inline(__always)
    public static func inHalves(_ count: Int, _ body: (Range<Int>) -> Void) {
        inTwoParts({ part in body(half(count, part: part)) }, whole: { body(0..<count) })
    }

    /// Runs `part(0)` here and `part(1)` on the worker when there is a team and it is free.
    /// Outside a job, a busy team (another thread's job) gets the same two parts here, one after
    /// the other, so that results that depend on the cut (a product's rows through OpenBLAS) do
    /// not depend on whether the team was free; inside a job, or with no team, `whole()` here.
    @inline(__always)
    public static func inTwoParts(_ part: (Int) -> Void, whole: () -> Void) {
        if let team = shared {
            if team.tryRun(part) { return }
            if BLAS.usesTeam && !isInsideJob {
                part(0)
                part(1)
                return
            }
        }
        whole()
    }

    /// Runs `body` over each of `pieces` (ranges covering 0..<count, in order) on both threads:
    /// each takes the next untaken piece from a shared counter until none is left, when there is
    /// a team and it is free; else `body(0..<count)` in one piece here. A thread that is behind
    /// (it started late, or the machine's other tenants slow its core) takes fewer pieces and
    /// the other does the rest; pieces that get smaller towards the end let both threads run out
    /// of work at nearly the same time. Each piece must compute the same thing on either thread,
    /// so that results do not depend on which one ran it.
    public static func inPieces(_ pieces: [Range<Int>], _ body: (Range<Int>) -> Void) {
        let count = pieces.last?.upperBound ?? 0
        guard pieces.count > 1, let team = shared else { return body(0..<count) }
        let next = ChunkCounter()
        let ran = team.tryRun { _ in
            while true {
                let piece = next.value.add(1, ordering: .relaxed).oldValue
                guard piece < pieces.count else { return }
                body(pieces[piece])
            }
        }
        if !ran { body(0..<count) }
    }

    /// Rows `part` of `count` split in two (part 0 the first half).
    @inline(__always)
    public static func half(_ count: Int, part: Int) -> Range<Int> {
        let middle = (count + 1) / 2
        return part == 0 ? 0..<middle : middle..<count
    }
}

/// The next untaken piece of one `WorkerTeam.inPieces` call.
final class ChunkCounter: Sendable {
    let value = Atomic<Int>(0)
}
