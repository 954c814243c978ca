// Loom's benchmark executable: one JSON line per workload,
// {"workload": NAME, "impl": "loom", "median": X, "min": X, "max": X, "unit": U},
// each the median of at least 5 timed repetitions after a warm-up. Run a release build:
//     swift run -c release Benchmarks [WORKLOAD...]
// Workload definitions are in the foundation issue's table and the README.
import Foundation
import Loom

/// Seconds taken by `body`, on the monotonic clock.
func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

/// Times `body` `repetitions` times after `warmup` untimed runs and prints one line, converting
/// each time to the reported figure with `figure` (e.g. GFLOP/s from seconds).
func report(_ workload: String, unit: String, extra: [String: Any] = [:], repetitions: Int = 7, warmup: Int = 2,
            figure: (Double) -> Double, _ body: () throws -> Void) rethrows -> [Double] {
    for _ in 0..<warmup { try body() }
    let figures = try (0..<max(repetitions, 5)).map { _ in figure(try seconds(body)) }.sorted()
    let median = figures[figures.count / 2]
    let line: [String: Any] = ["workload": workload, "impl": "loom", "median": median, "min": figures.first ?? 0,
                               "max": figures.last ?? 0, "unit": unit].merging(extra) { a, _ in a }
    if let data = try? JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]),
       let text = String(data: data, encoding: .utf8) {
        print(text)
    }
    return figures
}

/// sgemm-peak: C = A B for square float32 matrices, GFLOP/s = 2 n^3 / time.
func sgemmPeak(n: Int) throws {
    let source = RandomSource(seed: 1)
    let a = try Tensor<Float>.randomUniform([n, n], lower: -1, upper: 1, using: source)
    let b = try Tensor<Float>.randomUniform([n, n], lower: -1, upper: 1, using: source)
    var c = try Tensor<Float>.zeros([n, n])
    let flops = 2 * Double(n) * Double(n) * Double(n)
    _ = try report("sgemm-peak", unit: "GFLOP/s", extra: ["n": n, "core": BLAS.coreName, "threads": BLAS.threadCount], figure: { flops / $0 / 1e9 }) {
        a.scalars.withUnsafeBufferPointer { pa in
            b.scalars.withUnsafeBufferPointer { pb in
                c.withUnsafeMutableScalars { pc in
                    guard let ra = pa.baseAddress, let rb = pb.baseAddress, let rc = pc.baseAddress else { return }
                    Float.gemm(transA: false, transB: false, m: n, n: n, k: n, alpha: 1, a: ra, lda: n, b: rb, ldb: n,
                               beta: 0, c: rc, ldc: n)
                }
            }
        }
    }
}

BLAS.selectOptimizedCoreAndRelaunchIfNeeded()
let threads = ProcessInfo.processInfo.environment["LOOM_THREADS"].flatMap(Int.init) ?? 2
BLAS.setThreadCount(threads)
let requested = Set(CommandLine.arguments.dropFirst())
let workloads: [(String, () throws -> Void)] = [
    ("sgemm-peak", { try sgemmPeak(n: 1024); try sgemmPeak(n: 2048) }),
]
for (name, run) in workloads where requested.isEmpty || requested.contains(name) {
    do { try run() } catch { FileHandle.standardError.write(Data("\(name): \(error)\n".utf8)) }
}
