import CLoomMPI
import Foundation
import LoomTraining

/// `Communicator` over MPI (Open MPI, Debian's `libopenmpi-dev`): the ranks `mpirun -np K`
/// starts, on one machine or many. Created once per process; MPI is finalized at exit.
///
/// ```swift
/// if let mpi = try MPICommunicator.ifLaunched() { options.communicator = mpi }
/// ```
public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int

    nonisolated(unsafe) private static var created: MPICommunicator?

    /// Whether this process was started by `mpirun`/`mpiexec` (Open MPI or PMIx set these).
    public static var launchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { environment[$0] != nil }
    }

    /// The communicator of this job when started by `mpirun` (MPI initialized on first use);
    /// nil for a process started on its own, which needs no MPI.
    public static func ifLaunched() throws -> MPICommunicator? {
        guard launchedByMPI else { return nil }
        if let created { return created }
        let status = loom_mpi_init()
        guard status == 0 else { throw CommunicatorError("MPI_Init failed: \(errorText(status))") }
        atexit { _ = loom_mpi_finalize() }
        let communicator = MPICommunicator(rank: Int(loom_mpi_rank()), size: Int(loom_mpi_size()))
        created = communicator
        return communicator
    }

    private init(rank: Int, size: Int) { (self.rank, self.size) = (rank, size) }

    static func errorText(_ code: Int32) -> String {
        var text = [CChar](repeating: 0, count: 512)
        loom_mpi_error_string(code, &text, Int32(text.count))
        return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + " (MPI error \(code))"
    }

    private func check(_ status: Int32, _ operation: String) throws {
        guard status == 0 else { throw CommunicatorError("rank \(rank): \(operation) failed: \(Self.errorText(status))") }
    }

    public func allReduceSum(_ values: inout [Float]) throws {
        try check(values.withUnsafeMutableBufferPointer { loom_mpi_allreduce_sum_float($0.baseAddress, $0.count) }, "MPI_Allreduce")
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        try check(values.withUnsafeMutableBufferPointer { loom_mpi_allreduce_sum_double($0.baseAddress, $0.count) }, "MPI_Allreduce")
    }

    public func allReduceMinimum(_ values: inout [Double]) throws {
        try check(values.withUnsafeMutableBufferPointer { loom_mpi_allreduce_min_double($0.baseAddress, $0.count) }, "MPI_Allreduce")
    }

    public func allReduceMaximum(_ values: inout [Double]) throws {
        try check(values.withUnsafeMutableBufferPointer { loom_mpi_allreduce_max_double($0.baseAddress, $0.count) }, "MPI_Allreduce")
    }

    public func abort(code: Int32) -> Never {
        loom_mpi_abort(code)
        exit(code)
    }
}

/// Starting a distributed run from a command line's `--distributed`.
public enum Distributed {
    /// The communicator for `--distributed`: the MPI job's when started by `mpirun` with more
    /// than one rank; nil otherwise (a single process, said on standard error when asked for).
    public static func communicator(requested: Bool) throws -> (any Communicator)? {
        guard requested else { return nil }
        guard let mpi = try MPICommunicator.ifLaunched() else {
            FileHandle.standardError.write(Data("--distributed: not started by mpirun; running as one process\n".utf8))
            return nil
        }
        if mpi.size == 1 { FileHandle.standardError.write(Data("--distributed: mpirun started 1 rank; running as one process\n".utf8)) }
        FileHandle.standardError.write(Data("rank \(mpi.rank) of \(mpi.size): pid \(getpid())\n".utf8))
        return mpi
    }

    /// Runs `body`; an error on any rank is printed with the rank's number and ends the whole
    /// job at once (the other ranks would otherwise wait in their next collective forever).
    public static func guarded<T>(_ communicator: (any Communicator)?, _ body: () throws -> T) rethrows -> T {
        guard let communicator, communicator.size > 1 else { return try body() }
        do {
            return try body()
        } catch {
            FileHandle.standardError.write(Data("rank \(communicator.rank) of \(communicator.size): \(error); ending the job\n".utf8))
            communicator.abort(code: 1)
        }
    }
}
