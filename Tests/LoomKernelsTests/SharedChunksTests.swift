import Foundation
import Synchronization
import XCTest
@testable import LoomKernels

final class SharedChunksTests: XCTestCase {
    /// Spins for `microseconds` (a chunk's work).
    static func busy(_ microseconds: UInt64) {
        let start = DispatchTime.now().uptimeNanoseconds
        while DispatchTime.now().uptimeNanoseconds - start < microseconds * 1000 {}
    }

    func testPiecesCoverTheRangeInOrder() {
        for count in [0, 1, 15, 16, 17, 100, 6400] {
            for multiple in [1, 16] {
                let pieces = SharedChunks.pieces(count, shares: [0.3, 0.25, 0.2, 0.15, 0.1], multiple: multiple)
                XCTAssertEqual(pieces.first?.lowerBound ?? 0, 0)
                XCTAssertEqual(pieces.last?.upperBound ?? 0, count)
                for (a, b) in zip(pieces, pieces.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
                XCTAssertTrue(pieces.allSatisfy { !$0.isEmpty })
                for piece in pieces.dropLast() { XCTAssertEqual(piece.upperBound % multiple, 0) }
            }
        }
        XCTAssertEqual(SharedChunks.pieces(6400, shares: [0.3, 0.25, 0.2, 0.15, 0.1], multiple: 16).count, 5)
    }

    /// Two tasks on the team, each posting several batches of chunks of uneven cost: every chunk
    /// runs exactly once, and its writes are visible when `run` returns.
    func testEveryChunkRunsOnceOnEitherThread() throws {
        let team = WorkerTeam.shared
        let chunks = SharedChunks()
        let batches = [40, 1, 0, 17]
        // counts[side][batch][chunk]
        let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: 2 * batches.count * 64)
        defer { counts.deallocate() }
        counts.initialize(repeating: 0)
        for _ in 0..<20 {
            team.run { side in
                chunks.begin(side)
                for (b, count) in batches.enumerated() {
                    chunks.run(side, count: count) { chunk in
                        // Side 1's chunks are slow: side 0 runs out of its own and helps.
                        if side == 1 { Self.busy(50) }
                        counts[(side * batches.count + b) * 64 + chunk] += 1
                    }
                    // The batch is complete when run returns.
                    for chunk in 0..<count { XCTAssertGreaterThan(counts[(side * batches.count + b) * 64 + chunk], 0) }
                }
                chunks.end(side)
            }
        }
        for side in 0..<2 {
            for (b, count) in batches.enumerated() {
                for chunk in 0..<64 {
                    let index = (side * batches.count + b) * 64 + chunk
                    XCTAssertEqual(counts[index], chunk < count ? 20 : 0, "side \(side) batch \(b) chunk \(chunk)")
                }
            }
        }
    }

    /// When the other task is not running (both parts on one thread, one after the other), a
    /// task runs all its chunks itself, in order, and `end` returns at once.
    func testWithoutTheOtherTaskAllChunksRunHere() {
        let chunks = SharedChunks()
        var seen: [Int] = []
        for side in 0..<2 {
            chunks.begin(side)
            chunks.run(side, count: 9) { chunk in
                seen.append(side * 100 + chunk)
            }
            chunks.end(side)
        }
        XCTAssertEqual(seen, Array(0..<9) + Array(100..<109))
    }

    /// A task done with its own chunks takes the other's: with one thread busy on 400 slow
    /// chunks and the other on none, the idle one (waiting in `end`) runs some of them.
    func testAnIdleThreadHelpsTheOther() throws {
        let team = WorkerTeam.shared
        let previous = BLAS.threadCount
        BLAS.setThreadCount(2)
        defer { BLAS.setThreadCount(previous) }
        let helped = Atomic<Int>(0)
        let started = Atomic<Bool>(false)
        let apart = Atomic<Bool>(false)
        let firstThread = Atomic<UInt>(0)
        let chunks = SharedChunks()
        team.run { side in
            chunks.begin(side)
            if side == 1 {
                apart.store(pthread_equal(pthread_self(), pthread_t(firstThread.load(ordering: .sequentiallyConsistent))) == 0,
                            ordering: .sequentiallyConsistent)
                started.store(true, ordering: .sequentiallyConsistent)
                let worker = pthread_self()
                chunks.run(1, count: 400) { _ in
                    Self.busy(100)
                    if pthread_equal(pthread_self(), worker) == 0 { helped.add(1, ordering: .relaxed) }
                }
            } else {
                firstThread.store(UInt(pthread_self()), ordering: .sequentiallyConsistent)
                // Wait (at most a second) for another thread to take part 1, so that there is
                // another task to help; when none does, this thread runs part 1 after its own.
                let start = DispatchTime.now().uptimeNanoseconds
                while !started.load(ordering: .sequentiallyConsistent) && DispatchTime.now().uptimeNanoseconds - start < 1_000_000_000 {}
            }
            chunks.end(side)
        }
        guard apart.load(ordering: .sequentiallyConsistent) else { throw XCTSkip("no second thread took part 1 within a second") }
        XCTAssertGreaterThan(helped.load(ordering: .relaxed), 0)
    }

    func testEndedIsSetByEndAndClearedByBegin() {
        let chunks = SharedChunks()
        XCTAssertFalse(chunks.hasEnded(0))
        XCTAssertFalse(chunks.hasEnded(1))
        chunks.begin(0)
        XCTAssertFalse(chunks.hasEnded(0))
        chunks.end(0)  // the other task is not running: returns at once
        XCTAssertTrue(chunks.hasEnded(0))
        XCTAssertTrue(ChunkSharing(chunks, side: 1).otherHasEnded)
        XCTAssertFalse(ChunkSharing(chunks, side: 0).otherHasEnded)
        chunks.begin(0)
        XCTAssertFalse(chunks.hasEnded(0))
    }
}
