import Foundation
import Synchronization
import CLoomKernels

/// The threads that split Loom's work: the calling thread and `threads - 1` persistent workers.
///
/// A step of a recurrent layer takes tens of microseconds, so handing parts of it to a thread
/// pool (microseconds of overhead) would eat the gain; this team hands work over through an
/// atomic word the workers spin on, and puts an idle worker to sleep on a semaphore after a
/// short spell so it does not burn a core between layers.
///
/// The parts of a job are claimed, not assigned: every thread of the team, the caller included,
/// takes the next untaken part until none is left. A caller whose workers are asleep or
/// descheduled runs the parts itself instead of waiting for them to wake; a part computes the
/// same thing on any thread, so results depend on how the work is cut (which depends on the
/// thread count only), never on which thread ran what.
///
/// The size comes from `LOOM_THREADS` when it is set, else from the cores this process may use
/// (its CPU affinity and its control group's CPU quota); `BLAS.setThreadCount` changes it.
public final class WorkerTeam: @unchecked Sendable {
    /// The process-wide team, made after the process-wide settings (malloc's arenas, OpenBLAS
    /// at one thread, the subnormal mode) so that its threads start under them.
    public static let shared: WorkerTeam = {
        _ = BLAS.processDefaults
        return WorkerTeam(threads: defaultThreads)
    }()

    /// The most threads a team runs.
    public static let maximumThreads = 256

    /// Idle spins before a worker sleeps (about a millisecond or two): a training step's serial
    /// stretches between parallel products are shorter than that, so the workers are awake when
    /// the next one comes instead of paying a futex wake-up each time.
    public static let defaultSpinsBeforeSleep = 2_000_000
    private static let spinLimit = Atomic<Int>(defaultSpinsBeforeSleep)

    /// How long an idle worker spins before it sleeps, in spins. A server sets it lower: there
    /// the other cores are wanted for requests between batches, not for spinning.
    public static var spinsBeforeSleep: Int {
        get { spinLimit.load(ordering: .relaxed) }
        set { spinLimit.store(max(0, newValue), ordering: .relaxed) }
    }

    private final class Worker: @unchecked Sendable {
        let index: Int
        let sleeping = Atomic<Bool>(false)
        let wake = DispatchSemaphore(value: 0)
        var started = false
        init(index: Int) { self.index = index }
    }

    /// Threads that take part in a job, the caller included.
    private let active: Atomic<Int>
    /// Every worker slot, made up front so that the array never changes; a slot's thread starts
    /// the first time the team is that large.
    private let workers: [Worker]
    private let resizing = NSLock()
    /// The generation of the latest job.
    private let posted = Atomic<Int>(0)
    /// The latest job in one word: generation (bits 32-62) | part count (16-31) | next untaken
    /// part (0-15). Claiming a part is one compare-exchange on the whole word, so a thread
    /// holding the word of an earlier job can never take a part of a later one.
    private let claim = Atomic<Int>(0)
    /// Parts of the latest job that have finished.
    private let done = Atomic<Int>(0)
    private let busy = NSLock()
    /// Written only while `busy` is held and no part is claimable.
    private nonisolated(unsafe) var generation = 0
    /// Published before the job's word, cleared after all its parts have finished.
    private nonisolated(unsafe) var task: ((Int) -> Void)?

    /// The most parts of one job.
    public static let maximumParts = 0xFFFF

    init(threads: Int) {
        let size = Swift.min(Swift.max(1, threads), Self.maximumThreads)
        active = Atomic(size)
        workers = (0..<(Self.maximumThreads - 1)).map(Worker.init)
        startWorkers(upTo: size - 1)
    }

    /// Threads that take part in a job, the caller included (1: everything runs on the caller).
    public var threads: Int { active.load(ordering: .relaxed) }

    /// Sets how many threads take part in a job (1 to `maximumThreads`), starting workers the
    /// first time the team is that large. Workers past the new size sleep until it grows again.
    public func setThreads(_ count: Int) {
        let size = Swift.min(Swift.max(1, count), Self.maximumThreads)
        resizing.lock()
        defer { resizing.unlock() }
        startWorkers(upTo: size - 1)
        active.store(size, ordering: .sequentiallyConsistent)
        for worker in workers.prefix(size - 1) where worker.sleeping.load(ordering: .sequentiallyConsistent) {
            worker.wake.signal()
        }
    }

    private func startWorkers(upTo count: Int) {
        for worker in workers.prefix(count) where !worker.started {
            worker.started = true
            let thread = Thread { [unowned self] in self.work(worker) }
            thread.name = "loom-worker-\(worker.index + 1)"
            thread.start()
        }
    }

    private func work(_ me: Worker) {
        Self.setInsideJob(true)
        var seen = posted.load(ordering: .acquiring)
        var subnormalsFlushed: Bool?
        while true {
            var spins = 0
            let limit = Self.spinsBeforeSleep
            while true {
                let current = posted.load(ordering: .acquiring)
                let member = me.index < active.load(ordering: .relaxed) - 1
                if current != seen {
                    seen = current
                    if member { break }
                }
                loom_spin_pause()
                spins += 1
                if spins > limit || !member {
                    me.sleeping.store(true, ordering: .sequentiallyConsistent)
                    if posted.load(ordering: .sequentiallyConsistent) == seen { me.wake.wait() }
                    me.sleeping.store(false, ordering: .sequentiallyConsistent)
                    spins = 0
                }
            }
            let flush = BLAS.flushesSubnormals
            if flush != subnormalsFlushed {
                BLAS.applySubnormalMode()
                subnormalsFlushed = flush
            }
            join(seen)
        }
    }

    /// Takes and runs parts of job `job` (a generation) until none is left untaken.
    private func join(_ job: Int) {
        var word = claim.load(ordering: .acquiring)
        while true {
            let next = word & 0xFFFF, parts = (word >> 16) & 0xFFFF
            guard word >> 32 == job, next < parts else { return }
            let (exchanged, original) = claim.compareExchange(expected: word, desired: word + 1, ordering: .acquiringAndReleasing)
            guard exchanged else {
                word = original
                continue
            }
            runPart(next)
            done.add(1, ordering: .releasing)
            word = claim.load(ordering: .acquiring)
        }
    }

    /// One claimed part; its reference to the job's body ends before the part is counted done.
    @inline(never)
    private func runPart(_ part: Int) {
        guard let body = task else { preconditionFailure("WorkerTeam: a claimed part without its job") }
        body(part)
    }

    /// Runs `body(p)` for every part p in 0..<parts, spread over the team (see `tryRun`), and
    /// returns when all are done. When the team is already in use (another thread, or a nested
    /// call) or has one thread, all parts run here, one after the other, so the result is the
    /// same either way.
    public func run(parts: Int = 2, _ body: (Int) -> Void) {
        if !tryRun(parts: parts, body) {
            let outside = !Self.isInsideJob
            if outside { Self.setInsideJob(true) }
            for part in 0..<parts { body(part) }
            if outside { Self.setInsideJob(false) }
        }
    }

    /// Whether the calling thread is doing a job's parts: a worker always; another thread while
    /// it runs `tryRun`'s or `run`'s body (on the team, or one part after the other). Work split
    /// into parts (`inParts`, `BLAS.split`) is split only outside jobs, so that how a product is
    /// cut depends on where it is called, never on whether the team happened to be free.
    public static var isInsideJob: Bool { pthread_getspecific(insideKey) != nil }

    static func setInsideJob(_ inside: Bool) {
        pthread_setspecific(insideKey, inside ? UnsafeRawPointer(bitPattern: 1) : nil)
    }

    private static let insideKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// Runs `body(p)` for every part p in 0..<parts when the team is free: the caller and the
    /// workers each take the next untaken part until none is left, and this returns when all are
    /// done. Returns false without running anything when the team is in use (a nested call, or
    /// another thread) or has one thread, so the caller can do the whole job itself in one piece.
    public func tryRun(parts: Int = 2, _ body: (Int) -> Void) -> Bool {
        precondition(parts <= Self.maximumParts, "\(parts) parts in one job; at most \(Self.maximumParts)")
        let size = threads
        guard parts >= 1, size >= 2, !Self.isInsideJob, busy.try() else { return false }
        defer { busy.unlock() }
        Self.setInsideJob(true)
        defer { Self.setInsideJob(false) }
        withoutActuallyEscaping(body) { escapable in
            task = escapable
            done.store(0, ordering: .relaxed)
            generation = (generation + 1) & 0x7FFF_FFFF
            let job = generation
            claim.store(job << 32 | parts << 16, ordering: .releasing)
            posted.store(job, ordering: .sequentiallyConsistent)
            var woken = 0
            for worker in workers.prefix(size - 1) where woken < parts - 1 {
                if worker.sleeping.load(ordering: .sequentiallyConsistent) {
                    worker.wake.signal()
                    woken += 1
                }
            }
            join(job)
            while done.load(ordering: .acquiring) != parts { loom_spin_pause() }
            task = nil
        }
        return true
    }

    /// Elementwise passes over at least this many elements are split in two parts (the grain size
    /// of PyTorch's parallel CPU kernels is the same 32,768); each further half grain earns one
    /// more part, up to one per thread.
    public static let grain = 1 << 15

    /// Runs `body` over 0..<count: in parts on the team (`inParts`) when the pass touches at
    /// least `grain` elements (one part per half grain, at most one per thread), else in one
    /// piece here. `elements` is that size when an index stands for more than one element (a
    /// row, a panel); by default `count` itself.
    @inline(__always)
    public static func forEachPart(_ count: Int, elements: Int? = nil, _ body: (Range<Int>) -> Void) {
        let size = elements ?? count
        if size >= grain { inParts(count, parts: Swift.min(shared.threads, size / (grain / 2)), body) } else { body(0..<count) }
    }

    /// Runs `body` over 0..<count cut in `parts` (by default one per thread) nearly equal ranges
    /// (`share`), spread over the team when it is free; else as `inParts(_:_:whole:)` says.
    @inline(__always)
    public static func inParts(_ count: Int, parts: Int? = nil, _ body: (Range<Int>) -> Void) {
        let n = Swift.min(parts ?? shared.threads, count)
        inParts(n, { part in body(share(count, part: part, of: n)) }, whole: { body(0..<count) })
    }

    /// Runs `part(p)` for p in 0..<parts on the team when it is free. Outside a job, a busy team
    /// (another thread's job) gets the same parts here, one after the other, so that results
    /// that depend on the cut (a product's rows through OpenBLAS) do not depend on whether the
    /// team was free; inside a job, or with fewer than two parts, `whole()` here.
    @inline(__always)
    public static func inParts(_ parts: Int, _ part: (Int) -> Void, whole: () -> Void) {
        if parts >= 2 {
            if shared.tryRun(parts: parts, part) { return }
            if !isInsideJob {
                for p in 0..<parts { part(p) }
                return
            }
        }
        whole()
    }

    /// Runs `body` over each of `pieces` (ranges covering 0..<count, in order) on the team:
    /// each thread takes the next untaken piece until none is left, when the team is free; else
    /// `body(0..<count)` in one piece here. A thread that is behind (it started late, or the
    /// machine's other tenants slow its core) takes fewer pieces and the others do the rest;
    /// pieces that get smaller towards the end let the threads run out of work at nearly the same
    /// time. Each piece must compute the same thing on any thread, so that results do not depend
    /// on which one ran it.
    public static func inPieces(_ pieces: [Range<Int>], _ body: (Range<Int>) -> Void) {
        let count = pieces.last?.upperBound ?? 0
        guard pieces.count > 1, shared.tryRun(parts: pieces.count, { body(pieces[$0]) }) else { return body(0..<count) }
    }

    /// Part `part` of 0..<count cut in `parts` nearly equal ranges, the longer ones first; with
    /// a `multiple` above 1, each even cut is rounded down to a whole position and then up to a
    /// multiple (the last part takes what is left).
    @inline(__always)
    public static func share(_ count: Int, part: Int, of parts: Int, multiple: Int = 1) -> Range<Int> {
        func cut(_ p: Int) -> Int {
            guard p < parts else { return count }
            if multiple == 1 { return p * (count / parts) + Swift.min(p, count % parts) }
            return Swift.min(count, (count * p / parts + multiple - 1) / multiple * multiple)
        }
        return cut(part)..<cut(part + 1)
    }

    /// The threads to use when nothing else is said: `LOOM_THREADS` when it is a whole number from
    /// 1 to `maximumThreads` (anything else is reported on standard error and ignored), else
    /// `availableCores`.
    public static let defaultThreads: Int = {
        let (count, problem) = threads(fromEnvironment: ProcessInfo.processInfo.environment, available: availableCores)
        if let problem { FileHandle.standardError.write(Data("warning: \(problem)\n".utf8)) }
        return count
    }()

    /// The thread count `environment` asks for through `LOOM_THREADS`, or `available` and why not.
    public static func threads(fromEnvironment environment: [String: String], available: Int) -> (count: Int, problem: String?) {
        guard let text = environment["LOOM_THREADS"]?.trimmingCharacters(in: .whitespaces), !text.isEmpty else {
            return (available, nil)
        }
        guard let count = Int(text), (1...maximumThreads).contains(count) else {
            return (available, "LOOM_THREADS=\(text) is not a whole number from 1 to \(maximumThreads); using \(available) threads")
        }
        return (count, nil)
    }

    /// Cores this process may use: the CPUs of its affinity mask, capped by its control group's
    /// CPU quota (a container's `--cpus`), at least 1.
    public static var availableCores: Int {
        let allowed = Int(loom_allowed_cpus())
        var cores = allowed > 0 ? allowed : ProcessInfo.processInfo.activeProcessorCount
        if let quota = controlGroupQuota { cores = Swift.min(cores, quota) }
        return Swift.min(Swift.max(1, cores), maximumThreads)
    }

    /// The CPU quota of the process's control group, rounded up to whole cores; nil when none.
    static var controlGroupQuota: Int? {
        func read(_ path: String) -> [Substring]? {
            (try? String(contentsOfFile: path, encoding: .utf8)).map { $0.split(whereSeparator: \.isWhitespace) }
        }
        func cores(_ quota: Substring, _ period: Substring) -> Int? {
            guard let q = Double(quota), let p = Double(period), q > 0, p > 0 else { return nil }
            return Int((q / p).rounded(.up))
        }
        if let v2 = read("/sys/fs/cgroup/cpu.max"), v2.count == 2 { return cores(v2[0], v2[1]) }
        if let quota = read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")?.first, let period = read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")?.first {
            return cores(quota, period)
        }
        return nil
    }
}
