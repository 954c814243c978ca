import Foundation
import LoomKernels
import XCTest

/// The two-thread team: every part and piece runs once, either thread may take them, and how
/// work is cut does not depend on whether the team is free. No assertion here depends on
/// which thread ran a piece or on timing: the suite must pass with the other core busy.
final class WorkerTeamTests: XCTestCase {
    func testWorkerTeamRunsBothPartsOnce() throws {
        guard let team = WorkerTeam.shared else { throw XCTSkip("one core: no worker team") }
        // The second part is run by whichever thread claims it first: with an instant first part
        // mostly the caller, with a slow one mostly the worker. Either way each part runs once,
        // and its writes are visible when `run` returns.
        for slowFirstPart in [false, true] {
            for count in [0, 1, 2, 7, 1000] {
                let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
                defer { counts.deallocate() }
                counts.initialize(repeating: 0)
                for _ in 0..<50 {
                    team.run { part in
                        if part == 0 && slowFirstPart {
                            let start = DispatchTime.now().uptimeNanoseconds
                            while DispatchTime.now().uptimeNanoseconds - start < 20_000 {}
                        }
                        for i in WorkerTeam.half(count, part: part) { counts[i] += 1 }
                    }
                }
                XCTAssertEqual(Array(counts.prefix(count)), [Int](repeating: 50, count: count))
            }
        }
    }

    func testPiecesOfOneSizeCoverEveryRowOnceAndShare() throws {
        guard let team = WorkerTeam.shared else { throw XCTSkip("one core: no worker team") }
        for (count, size) in [(0, 16), (1, 16), (16, 16), (17, 16), (128, 16), (100, 16), (1000, 7)] {
            let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
            defer { counts.deallocate() }
            counts.initialize(repeating: 0)
            let pieces = stride(from: 0, to: count, by: size).map { $0..<min($0 + size, count) }
            for _ in 0..<50 {
                WorkerTeam.inPieces(pieces) { rows in
                    // Each chunk is a whole multiple of `size` but the last; chunks do not overlap.
                    XCTAssertEqual(rows.lowerBound % size, 0)
                    XCTAssertTrue(rows.count == size || rows.upperBound == count)
                    for i in rows { counts[i] += 1 }
                }
            }
            XCTAssertEqual(Array(counts.prefix(count)), [Int](repeating: 50, count: count), "count \(count), size \(size)")
        }
        // With the team busy (a nested call), everything runs here in one piece.
        team.run { part in
            guard part == 0 else { return }
            var ranges: [Range<Int>] = []
            WorkerTeam.inPieces(stride(from: 0, to: 100, by: 16).map { $0..<min($0 + 16, 100) }) { ranges.append($0) }
            XCTAssertEqual(ranges, [0..<100])
        }
    }

    func testInPiecesRunsEachPieceOnce() throws {
        guard let team = WorkerTeam.shared else { throw XCTSkip("one core: no worker team") }
        let pieces = [0..<32, 32..<64, 64..<80, 80..<96, 96..<104, 104..<112, 112..<120, 120..<128]
        let seen = UnsafeMutableBufferPointer<Int>.allocate(capacity: pieces.count)
        defer { seen.deallocate() }
        seen.initialize(repeating: 0)
        for _ in 0..<50 {
            WorkerTeam.inPieces(pieces) { rows in
                guard let index = pieces.firstIndex(of: rows) else { return XCTFail("\(rows) is not one of the pieces") }
                seen[index] += 1
            }
        }
        // Which thread took which piece is the scheduler's business; that each ran once is ours.
        XCTAssertEqual(Array(seen), [Int](repeating: 50, count: pieces.count))
        // A single piece, and a busy team: everything here in one piece.
        var ranges: [Range<Int>] = []
        WorkerTeam.inPieces([0..<5]) { ranges.append($0) }
        team.run { part in
            guard part == 0 else { return }
            WorkerTeam.inPieces(pieces) { ranges.append($0) }
        }
        XCTAssertEqual(ranges, [0..<5, 0..<128])
    }

    /// How work is cut must not depend on whether the team is free: with another thread's job
    /// on the team, `inHalves` still cuts in the same two halves (run here, one after the other;
    /// a product's rows through OpenBLAS can round differently cut or whole, which made feature
    /// extraction on two threads give different last bits from run to run); inside a job it
    /// keeps one piece, and `tryRun` does not take the team again.
    func testCutsDoNotDependOnWhetherTheTeamIsFree() throws {
        guard let team = WorkerTeam.shared, BLAS.threadCount == 2 else { throw XCTSkip("no two-thread team") }
        let started = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0), finished = DispatchSemaphore(value: 0)
        Thread {
            team.run { part in
                if part == 0 { started.signal(); release.wait() }
            }
            finished.signal()
        }.start()
        started.wait()
        var ranges: [Range<Int>] = []
        WorkerTeam.inHalves(101) { ranges.append($0) }
        XCTAssertEqual(ranges, [0..<51, 51..<101], "another thread's job on the team: the same halves, here")
        XCTAssertFalse(WorkerTeam.isInsideJob)
        release.signal()
        finished.wait()
        // Inside a job, on the team or one part after the other: one piece, and no team.
        ranges = []
        var nestedRan = false
        team.run { part in
            guard part == 0 else { return }
            XCTAssertTrue(WorkerTeam.isInsideJob)
            WorkerTeam.inHalves(101) { ranges.append($0) }
            nestedRan = team.tryRun { _ in }
        }
        XCTAssertEqual(ranges, [0..<101])
        XCTAssertFalse(nestedRan)
        XCTAssertFalse(WorkerTeam.isInsideJob, "the mark ends with the job")
    }
}
