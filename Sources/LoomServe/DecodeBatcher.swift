import Foundation
import Loom

/// Gathers the decode requests of many connections into batches for one decoding thread.
///
/// Requests queue in arrival order. When the thread is free it takes the oldest request and
/// every queued request with the same decoding options, up to `maximumBatch` sequences, and
/// decodes them together (sampling requests go alone: their draws depend on the batch). It
/// waits for more only while a request is known to be on its way (received by the server, its
/// body still being read or checked) and at most `maximumDelay` after the oldest arrival, so a
/// lone client never waits for company that is not coming. Under load, requests that arrive
/// while a batch decodes form the next batch.
///
/// The HTTP event loops and Swift's cooperative threads only queue and wait; decoding runs on
/// the batcher's own thread (and Loom's worker team).
public final class DecodeBatcher: @unchecked Sendable {
    public typealias Outputs = [[(text: String, hypothesis: Hypothesis)]]

    /// Why a request was not decoded.
    public enum Refusal: Error, CustomStringConvertible, Equatable {
        /// The queue holds `limit` sequences already: try again shortly (HTTP 429).
        case queueFull(limit: Int)
        /// The server is shutting down and takes no new work (HTTP 503).
        case shuttingDown
        /// The request waited `seconds` in the queue without being started (HTTP 503).
        case timedOut(seconds: Double)

        public var description: String {
            switch self {
            case let .queueFull(limit): return "the queue is full (\(limit) inputs waiting): retry shortly"
            case .shuttingDown: return "the server is shutting down"
            case let .timedOut(seconds): return "not started within the timeout of \(seconds) s: the server is overloaded, retry later"
            }
        }
    }

    /// What a batch was: the number of sequences and the seconds it took to decode.
    public struct BatchReport: Sendable {
        public var sequences: Int
        public var requests: Int
        public var seconds: Double
    }

    /// One request: its sources, options, and the continuation its handler awaits. Resumed
    /// exactly once, by the decoding thread or by cancellation, under the batcher's lock.
    final class Job {
        let sources: [DecodingModel.Source]
        let options: DecodingOptions
        /// Requests with equal options decode together; nil for sampling, which goes alone.
        let key: DecodingOptions?
        let arrival: UInt64
        let deadline: UInt64
        var continuation: CheckedContinuation<Outputs, Error>?
        var cancelled = false

        init(sources: [DecodingModel.Source], options: DecodingOptions, timeout: Double) {
            self.sources = sources
            self.options = options
            key = options.sampling == nil ? options : nil
            arrival = DispatchTime.now().uptimeNanoseconds
            deadline = arrival + UInt64(min(timeout, 1e9) * 1e9)
        }
    }

    public let model: DecodingModel
    public let maximumBatch: Int
    public let maximumDelay: Double
    public let maximumQueue: Int
    public let timeout: Double
    /// Called on the decoding thread after each batch (metrics).
    public var onBatch: (@Sendable (BatchReport) -> Void)?

    private let condition = NSCondition()
    private var queue: [Job] = []
    private var queuedSequences = 0
    private var arriving = 0
    private var stopping = false
    /// Tests hold the thread back to fill the queue (see `hold(_:)`).
    private var held = false
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - maximumBatch: the most sequences decoded together.
    ///   - maximumDelay: the longest a request waits for others to join its batch, in seconds.
    ///   - maximumQueue: the most sequences waiting; more are refused (`Refusal.queueFull`).
    ///   - timeout: seconds a request may wait in the queue; then it is refused
    ///     (`Refusal.timedOut`). A request whose batch has started is always answered.
    public init(model: DecodingModel, maximumBatch: Int, maximumDelay: Double, maximumQueue: Int, timeout: Double = 30) {
        precondition(maximumBatch >= 1 && maximumDelay >= 0 && maximumQueue >= 1 && timeout > 0)
        self.model = model
        self.maximumBatch = maximumBatch
        self.maximumDelay = maximumDelay
        self.maximumQueue = maximumQueue
        self.timeout = timeout
    }

    /// Starts the decoding thread.
    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        let thread = Thread { [self] in
            loop()
            finished.signal()
        }
        thread.name = "loom-decode"
        thread.stackSize = 8 << 20
        self.thread = thread
        thread.start()
    }

    /// Takes no new requests, decodes every queued one, and returns when the thread has ended.
    public func finish() {
        condition.lock()
        let running = thread != nil && !stopping
        stopping = true
        held = false
        condition.broadcast()
        condition.unlock()
        if running { finished.wait() }
    }

    /// While held, the thread takes no batch: requests stay queued (for tests of the queue limit,
    /// timeouts and shutdown).
    func hold(_ on: Bool) {
        condition.lock()
        held = on
        condition.broadcast()
        condition.unlock()
    }

    /// Sequences waiting to be decoded.
    public var queueLength: Int {
        condition.lock()
        defer { condition.unlock() }
        return queuedSequences
    }

    /// A request has been received and will be submitted (or abandoned) shortly: a batch being
    /// formed may wait for it. Pair with `submit(..., arrived: true)` or `abandonArrival()`.
    public func beginArrival() {
        condition.lock()
        arriving += 1
        condition.unlock()
    }

    /// A request announced by `beginArrival` will not be submitted (it was malformed).
    public func abandonArrival() {
        condition.lock()
        arriving -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Queues sources for decoding and waits for their outputs. Cancelling the waiting task
    /// takes the request out of the queue (or drops its result if it is decoding) and throws
    /// `CancellationError`.
    public func submit(_ sources: [DecodingModel.Source], options: DecodingOptions, arrived: Bool = false) async throws -> Outputs {
        let job = Job(sources: sources, options: options, timeout: timeout)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Outputs, Error>) in
                condition.lock()
                defer { condition.unlock() }
                if arrived { arriving -= 1 }
                condition.broadcast()
                if job.cancelled || Task.isCancelled { return continuation.resume(throwing: CancellationError()) }
                if stopping { return continuation.resume(throwing: Refusal.shuttingDown) }
                if queuedSequences + sources.count > maximumQueue {
                    return continuation.resume(throwing: Refusal.queueFull(limit: maximumQueue))
                }
                job.continuation = continuation
                queue.append(job)
                queuedSequences += sources.count
            }
        } onCancel: {
            condition.lock()
            defer { condition.unlock() }
            job.cancelled = true
            if let index = queue.firstIndex(where: { $0 === job }) {
                queue.remove(at: index)
                queuedSequences -= job.sources.count
            }
            job.continuation?.resume(throwing: CancellationError())
            job.continuation = nil
        }
    }

    /// The decoding thread: wait for work, form a batch, decode, hand out the results.
    private func loop() {
        while let batch = nextBatch() {
            let start = DispatchTime.now().uptimeNanoseconds
            let sources = batch.flatMap(\.sources)
            var results: [Result<Outputs, Error>]
            do {
                var outputs: Outputs = []
                for first in stride(from: 0, to: sources.count, by: maximumBatch) {
                    outputs += try model.decode(Array(sources[first..<min(first + maximumBatch, sources.count)]), options: decodeOptions(batch[0]))
                }
                var offset = 0
                results = batch.map { job in
                    defer { offset += job.sources.count }
                    return .success(Array(outputs[offset..<offset + job.sources.count]))
                }
            } catch {
                // A batch that fails as a whole is decoded request by request, so that the
                // error reaches only the request that caused it.
                results = batch.map { job in Result { try model.decode(job.sources, options: decodeOptions(job)) } }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            // Reported before the results go out, so a client that has its answer sees the batch counted.
            onBatch?(BatchReport(sequences: sources.count, requests: batch.count, seconds: seconds))
            condition.lock()
            for (job, result) in zip(batch, results) {
                job.continuation?.resume(with: result)
                job.continuation = nil
            }
            condition.unlock()
        }
    }

    /// Sampling draws from the request's seed plus one, as `loom decode --sample --seed S` does
    /// for its first batch: the same inputs and seed give the same outputs in both.
    private func decodeOptions(_ job: Job) -> DecodingOptions {
        var options = job.options
        options.sampling?.seed &+= 1
        return options
    }

    /// The next batch, or nil once stopping with an empty queue.
    private func nextBatch() -> [Job]? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            expireOverdue()
            if (queue.isEmpty && !stopping) || held {
                // Asleep until work comes, or until the oldest waiting request is overdue.
                if let deadline = queue.map(\.deadline).min() {
                    _ = condition.wait(until: Date(timeIntervalSinceNow: Double(deadline &- min(deadline, DispatchTime.now().uptimeNanoseconds)) / 1e9 + 1e-4))
                } else {
                    condition.wait()
                }
                continue
            }
            guard let first = queue.first else { return nil }
            // Wait for requests on their way, while the batch is not full, up to the delay.
            let deadline = Date(timeIntervalSinceNow: maximumDelay - Double(DispatchTime.now().uptimeNanoseconds - first.arrival) / 1e9)
            while first.key != nil, !stopping, arriving > 0, matching(first.key) < maximumBatch, Date() < deadline, queue.first === first {
                _ = condition.wait(until: deadline)
            }
            // The first request may have been cancelled while waiting: start again.
            guard queue.first === first else { continue }
            var batch = [first], count = first.sources.count, rest: [Job] = []
            for job in queue.dropFirst() {
                if first.key != nil, job.key == first.key, count + job.sources.count <= maximumBatch {
                    batch.append(job)
                    count += job.sources.count
                } else {
                    rest.append(job)
                }
            }
            queue = rest
            queuedSequences -= count
            return batch
        }
    }

    /// Refuses the queued requests past their deadline (under the lock).
    private func expireOverdue() {
        let now = DispatchTime.now().uptimeNanoseconds
        guard queue.contains(where: { $0.deadline <= now }) else { return }
        queue.removeAll { job in
            guard job.deadline <= now else { return false }
            queuedSequences -= job.sources.count
            job.continuation?.resume(throwing: Refusal.timedOut(seconds: timeout))
            job.continuation = nil
            return true
        }
    }

    private func matching(_ key: DecodingOptions?) -> Int {
        queue.reduce(0) { $0 + ($1.key == key ? $1.sources.count : 0) }
    }
}
