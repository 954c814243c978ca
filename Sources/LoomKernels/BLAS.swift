import CBLAS
import Foundation

/// Settings of the OpenBLAS library every matrix product goes through.
public enum BLAS {
    /// Sets the number of threads OpenBLAS uses for one product. Results are bit-reproducible
    /// only for a fixed thread count: the split of a product's inner sums depends on it.
    public static func setThreadCount(_ count: Int) {
        openblas_set_num_threads(Int32(max(1, count)))
    }

    /// The number of threads OpenBLAS currently uses.
    public static var threadCount: Int { Int(openblas_get_num_threads()) }

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
