import Foundation
import LoomKernels
import XCTest

/// The team of threads: every part and piece runs once at any team size, any thread may take
/// them, and how work is cut depends on the thread count only, never on whether the team is
/// free. No assertion here depends on which thread ran a piece or on timing: the suite must pass
/// with the other cores busy, and at team sizes above the machine's core count.
final class WorkerTeamTests: XCTestCase {
    /// Runs `body` with the team at each of 1 to 4 threads, restoring the size afterwards.
    private func atEachThreadCount(_ body: (Int) throws -> Void) rethrows {
        let previous = BLAS.threadCount
        defer { BLAS.setThreadCount(previous) }
        for threads in [1, 2, 3, 4] {
            BLAS.setThreadCount(threads)
            XCTAssertEqual(BLAS.threadCount, threads)
            try body(threads)
        }
    }

    func testEveryPartRunsOnceAtEveryTeamSize() throws {
        let team = WorkerTeam.shared
        try atEachThreadCount { threads in
            // A part is run by whichever thread claims it first: with instant parts mostly the
            // caller, with a slow first one mostly the workers. Either way each runs once, and
            // its writes are visible when `run` returns.
            for slowFirstPart in [false, true] {
                for parts in [1, 2, 3, 5, 16, 100] {
                    let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: parts)
                    defer { counts.deallocate() }
                    counts.initialize(repeating: 0)
                    for _ in 0..<50 {
                        team.run(parts: parts) { part in
                            if part == 0 && slowFirstPart {
                                let start = DispatchTime.now().uptimeNanoseconds
                                while DispatchTime.now().uptimeNanoseconds - start < 20_000 {}
                            }
                            XCTAssertTrue(WorkerTeam.isInsideJob)
                            counts[part] += 1
                        }
                    }
                    XCTAssertEqual(Array(counts), [Int](repeating: 50, count: parts), "\(threads) threads, \(parts) parts")
                }
            }
            XCTAssertFalse(WorkerTeam.isInsideJob, "the mark ends with the job")
        }
    }

    func testSharesCoverTheRangeInOrder() {
        for count in [0, 1, 2, 7, 16, 33, 100, 1001] {
            for parts in 1...5 {
                for multiple in [1, 8, 16] {
                    let ranges = (0..<parts).map { WorkerTeam.share(count, part: $0, of: parts, multiple: multiple) }
                    XCTAssertEqual(ranges.first?.lowerBound, 0)
                    XCTAssertEqual(ranges.last?.upperBound, count)
                    for (a, b) in zip(ranges, ranges.dropFirst()) {
                        XCTAssertEqual(a.upperBound, b.lowerBound, "count \(count), \(parts) parts, multiple \(multiple)")
                        XCTAssertTrue(b.lowerBound % multiple == 0 || b.lowerBound == count)
                    }
                    if multiple == 1 {
                        // Nearly equal: lengths differ by at most one, the longer first.
                        let lengths = ranges.map(\.count)
                        XCTAssertLessThanOrEqual((lengths.max() ?? 0) - (lengths.min() ?? 0), 1)
                        XCTAssertEqual(lengths, lengths.sorted(by: >))
                    }
                }
            }
        }
        // Two parts are today's halves: the first takes the odd element.
        XCTAssertEqual(WorkerTeam.share(101, part: 0, of: 2), 0..<51)
        XCTAssertEqual(WorkerTeam.share(101, part: 1, of: 2), 51..<101)
        // Columns of a product: the even cut rounded down, then up to a multiple of 16.
        XCTAssertEqual(WorkerTeam.share(33, part: 0, of: 2, multiple: 16), 0..<16)
        XCTAssertEqual(WorkerTeam.share(100, part: 1, of: 3, multiple: 16), 48..<80)
    }

    func testPiecesCoverEveryRowOnceAtEveryTeamSize() throws {
        try atEachThreadCount { threads in
            for (count, size) in [(0, 16), (1, 16), (16, 16), (17, 16), (128, 16), (100, 16), (1000, 7)] {
                let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
                defer { counts.deallocate() }
                counts.initialize(repeating: 0)
                let pieces = stride(from: 0, to: count, by: size).map { $0..<min($0 + size, count) }
                for _ in 0..<50 {
                    WorkerTeam.inPieces(pieces) { rows in
                        // One of the pieces, or (one thread) all of them at once.
                        XCTAssertTrue(pieces.contains(rows) || rows == 0..<count, "\(rows)")
                        for i in rows { counts[i] += 1 }
                    }
                }
                XCTAssertEqual(Array(counts.prefix(count)), [Int](repeating: 50, count: count), "\(threads) threads, count \(count)")
            }
            // With the team busy (a nested call), everything runs here in one piece.
            var ranges: [Range<Int>] = []
            WorkerTeam.shared.run { part in
                guard part == 0 else { return }
                WorkerTeam.inPieces(stride(from: 0, to: 100, by: 16).map { $0..<min($0 + 16, 100) }) { ranges.append($0) }
            }
            XCTAssertEqual(ranges, [0..<100])
        }
    }

    /// `inParts` cuts in one part per thread at every size, on the team or here.
    func testInPartsCutsOnePartPerThread() throws {
        try atEachThreadCount { threads in
            let lock = NSLock()
            var ranges: [Range<Int>] = []
            WorkerTeam.inParts(101) { rows in lock.withLock { ranges.append(rows) } }
            let expected = threads == 1 ? [0..<101] : (0..<threads).map { WorkerTeam.share(101, part: $0, of: threads) }
            XCTAssertEqual(ranges.sorted { $0.lowerBound < $1.lowerBound }, expected, "\(threads) threads")
            // Elementwise passes: one part per half grain, at most one per thread.
            ranges = []
            WorkerTeam.forEachPart(WorkerTeam.grain) { rows in lock.withLock { ranges.append(rows) } }
            XCTAssertEqual(ranges.count, min(threads, 2))
            ranges = []
            WorkerTeam.forEachPart(WorkerTeam.grain - 1) { rows in lock.withLock { ranges.append(rows) } }
            XCTAssertEqual(ranges, [0..<(WorkerTeam.grain - 1)])
        }
    }

    /// How work is cut must not depend on whether the team is free: with another thread's job
    /// on the team, `inParts` still cuts in the same parts (run here, one after the other; a
    /// product's rows through OpenBLAS can round differently cut or whole, which made feature
    /// extraction on two threads give different last bits from run to run); inside a job it
    /// keeps one piece, and `tryRun` does not take the team again.
    func testCutsDoNotDependOnWhetherTheTeamIsFree() throws {
        let team = WorkerTeam.shared
        try atEachThreadCount { threads in
            guard threads >= 2 else { return }
            let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
            Thread {
                team.run { part in
                    if part == 0 { started.signal(); release.wait() }
                }
                finished.signal()
            }.start()
            started.wait()
            var ranges: [Range<Int>] = []
            WorkerTeam.inParts(101) { ranges.append($0) }
            XCTAssertEqual(ranges, (0..<threads).map { WorkerTeam.share(101, part: $0, of: threads) },
                           "another thread's job on the team: the same parts, here")
            XCTAssertFalse(WorkerTeam.isInsideJob)
            release.signal()
            finished.wait()
            // Inside a job, on the team or one part after the other: one piece, and no team.
            ranges = []
            var nestedRan = false
            team.run { part in
                guard part == 0 else { return }
                XCTAssertTrue(WorkerTeam.isInsideJob)
                WorkerTeam.inParts(101) { ranges.append($0) }
                nestedRan = team.tryRun { _ in }
            }
            XCTAssertEqual(ranges, [0..<101])
            XCTAssertFalse(nestedRan)
            XCTAssertFalse(WorkerTeam.isInsideJob, "the mark ends with the job")
        }
    }

    func testThreadCountFromTheEnvironment() {
        XCTAssertEqual(WorkerTeam.threads(fromEnvironment: [:], available: 6).count, 6)
        XCTAssertEqual(WorkerTeam.threads(fromEnvironment: ["LOOM_THREADS": "3"], available: 6).count, 3)
        XCTAssertEqual(WorkerTeam.threads(fromEnvironment: ["LOOM_THREADS": " 12 "], available: 2).count, 12)
        XCTAssertNil(WorkerTeam.threads(fromEnvironment: ["LOOM_THREADS": "1"], available: 2).problem)
        for bad in ["0", "-2", "two", "1.5", "257"] {
            let (count, problem) = WorkerTeam.threads(fromEnvironment: ["LOOM_THREADS": bad], available: 4)
            XCTAssertEqual(count, 4, bad)
            XCTAssertEqual(problem, "LOOM_THREADS=\(bad) is not a whole number from 1 to 256; using 4 threads")
        }
        XCTAssertGreaterThanOrEqual(WorkerTeam.availableCores, 1)
        XCTAssertLessThanOrEqual(WorkerTeam.availableCores, ProcessInfo.processInfo.activeProcessorCount)
    }
}
