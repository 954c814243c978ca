import CBLAS
import CLoomKernels
import Foundation
import Synchronization

/// Settings of the OpenBLAS library every matrix product goes through.
public enum BLAS {
    /// Sets the number of threads Loom uses (`WorkerTeam.shared`'s size): for matrix products,
    /// recurrent steps, elementwise passes and the directions of a bidirectional layer. Results
    /// are bit-reproducible for a fixed thread count: how a product is cut depends on it.
    ///
    /// Loom cuts each large product into parts itself, one per thread of `WorkerTeam`, and keeps
    /// OpenBLAS at one thread: the recurrent kernels hand work to the same team every few
    /// microseconds, and OpenBLAS's own pool, spinning on `sched_yield` between calls, would
    /// compete with it for the cores (measured: a quarter of lstm-small-train's time went to
    /// `sched_yield`). One thread is single-threaded throughout.
    public static func setThreadCount(_ count: Int) {
        _ = processDefaults
        WorkerTeam.shared.setThreads(count)
    }

    /// Sets OpenBLAS's own thread count; at one thread, also stops its idle pool thread, which
    /// otherwise spins on `sched_yield` for its first ~0.1 s, taking a core from Loom's team.
    /// `openblas_set_num_threads` starts the pool again, so the stop comes after it.
    static func setOpenBLASThreads(_ count: Int) {
        openblas_set_num_threads(Int32(count))
        if count == 1 { _ = loom_stop_blas_pool() }
    }

    /// The number of threads Loom uses (`setThreadCount`; by default `WorkerTeam.defaultThreads`).
    public static var threadCount: Int {
        _ = processDefaults
        return WorkerTeam.shared.threads
    }

    /// Whether work is split over more than one thread.
    public static var usesTeam: Bool { threadCount >= 2 }

    /// Whether subnormal floats are flushed to zero (on by default, as in TensorFlow; PyTorch's
    /// `torch.set_flush_denormal(True)`). Late in training, gradients and Adam's moments drift
    /// into the subnormal range, where each operation takes a microcode assist: measured on the
    /// addition recipe, throughput fell from 4,842 to 3,274 examples/s over 8 epochs without it.
    /// The mode is per thread: the thread that makes the first product, Loom's worker (before
    /// its next task) and the Trainer's thread follow this setting; others call
    /// `applySubnormalMode()`.
    public static var flushesSubnormals: Bool { flushSubnormals.load(ordering: .relaxed) }

    static let flushSubnormals = Atomic<Bool>(true)

    /// Turns flushing on or off for the calling thread and Loom's worker.
    public static func setFlushSubnormals(_ on: Bool) {
        flushSubnormals.store(on, ordering: .relaxed)
        applySubnormalMode()
    }

    /// Puts the calling thread in the mode `flushesSubnormals` says.
    public static func applySubnormalMode() {
        _ = loom_flush_subnormals(flushesSubnormals ? 1 : 0)
    }

    /// Process-wide settings made once, before the first product: OpenBLAS at one thread (Loom's
    /// team does the splitting); subnormals flushed on the calling thread; and glibc's malloc told to serve blocks of up to 32 MiB from its heap and keep 512 MiB of freed memory
    /// for reuse (32 MiB is the largest threshold glibc accepts on 64-bit). Without that, every temporary above its dynamic mmap threshold (a few MiB: the
    /// gate buffers of one recurrent layer) is a fresh mmap whose pages fault in again on first
    /// touch (measured: 7% of lstm-small-train in page faults). All threads share one malloc
    /// arena: the worker's own arena handed its freed gate buffers back to the system, so every
    /// backward pass it ran faulted them in again (measured on lstm-medium-train: 4% of the time
    /// clearing pages and the main thread waiting 7% for the worker, down to under 1% and 2%).
    static let processDefaults: Void = {
        loom_configure_malloc(32 << 20, 512 << 20)
        applySubnormalMode()
        setOpenBLASThreads(1)
    }()

    /// Products below this many multiply-adds (m n k) run on one thread: handing half to the
    /// worker costs about a microsecond, which small products do not repay.
    static let splitThreshold = 1 << 17

    /// Whether a product of `multiplyAdds` (m n k) is split over the team: large enough, and the
    /// team has more than one thread.
    @inline(__always)
    static func splits(multiplyAdds: Int) -> Bool {
        multiplyAdds >= splitThreshold && threadCount >= 2
    }

    /// Runs `product(rows, columns)` over parts of an [m, n] result: one part per thread (at most
    /// one per `splitThreshold` multiply-adds) when the product is large and there is more than
    /// one thread (on the team, or as `WorkerTeam.inParts` says), else one call over everything.
    /// The longer side is cut: rows, or columns at multiples of 16.
    @inline(__always)
    static func split(m: Int, n: Int, k: Int, _ product: (_ rows: Range<Int>, _ columns: Range<Int>) -> Void) {
        guard splits(multiplyAdds: m * n * k) else {
            product(0..<m, 0..<n)
            return
        }
        let parts = Swift.min(threadCount, m * n * k / splitThreshold)
        if cutsRows(m: m, n: n) {
            WorkerTeam.inParts(m, parts: parts) { rows in product(rows, 0..<n) }
            return
        }
        let cuts = Swift.min(parts, (n + 15) / 16)
        WorkerTeam.inParts(cuts, { part in product(0..<m, WorkerTeam.share(n, part: part, of: cuts, multiple: 16)) },
                           whole: { product(0..<m, 0..<n) })
    }

    /// Whether `split` cuts an [m, n] result by rows (else by columns).
    @inline(__always)
    static func cutsRows(m: Int, n: Int) -> Bool { m >= n }

    /// OpenBLAS's description of its build (version, target core, threading).
    public static var configuration: String {
        guard let text = openblas_get_config() else { return "unknown" }
        return String(cString: text)
    }
}

extension BLAS {
    /// The kernel family OpenBLAS chose for this CPU (e.g. "SkylakeX", "Haswell").
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// Makes sure OpenBLAS runs the kernels this CPU can run.
    ///
    /// Debian's OpenBLAS 0.3.21 picks its kernels by CPU model at load time and does not know
    /// recent Xeons: it falls back to "Prescott" (SSE3) and reaches a quarter of the machine's
    /// sgemm throughput (measured here: 44 GFLOP/s instead of 200). The choice can only be made
    /// before the library loads, through `OPENBLAS_CORETYPE`; so an executable calls this first
    /// thing, and when the fallback is in use on a CPU with AVX-512 (or AVX2 and FMA) it sets the
    /// variable and re-executes itself once. A user's own `OPENBLAS_CORETYPE` is always kept.
    public static func selectOptimizedCoreAndRelaunchIfNeeded() {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OPENBLAS_CORETYPE"] == nil, ["Prescott", "Core2", "Nehalem", "Sandybridge"].contains(coreName),
              let flags = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
                  .split(separator: "\n").first(where: { $0.hasPrefix("flags") })
        else { return }
        let has = Set(flags.split(separator: " ").map(String.init))
        let core: String
        if has.isSuperset(of: ["avx512f", "avx512bw", "avx512vl", "avx512dq"]) {
            core = "SkylakeX"
        } else if has.isSuperset(of: ["avx2", "fma"]) {
            core = "Haswell"
        } else {
            return
        }
        setenv("OPENBLAS_CORETYPE", core, 1)
        let arguments = CommandLine.arguments.map { strdup($0) } + [nil]
        execv("/proc/self/exe", arguments)
        // execv returns only on failure: carry on with the kernels already loaded.
        for argument in arguments { free(argument) }
    }
}
