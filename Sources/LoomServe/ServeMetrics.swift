import Foundation
import Loom
import Prometheus

/// The server's metrics, in Prometheus text format at `GET /metrics`.
final class ServeMetrics: @unchecked Sendable {
    let registry = PrometheusCollectorRegistry()
    private let lock = NSLock()
    private var requestCounters: [String: Counter] = [:]
    let queueLength: Gauge
    let batchSizes: ValueHistogram
    let requestSeconds: DurationHistogram
    let batchSeconds: DurationHistogram
    let sequences: Counter
    let stops: [StopReason: Counter]

    init() {
        queueLength = registry.makeGauge(name: "loom_queue_length", help: "Inputs waiting to be decoded.")
        batchSizes = registry.makeValueHistogram(name: "loom_batch_size", buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
                                                 help: "Inputs decoded together per batch.")
        let latency: [Duration] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10].map { .microseconds(Int64($0 * 1e6)) }
        requestSeconds = registry.makeDurationHistogram(name: "loom_request_duration_seconds", buckets: latency,
                                                        help: "Time from a decode request's arrival to its response.")
        batchSeconds = registry.makeDurationHistogram(name: "loom_batch_duration_seconds", buckets: latency,
                                                      help: "Time to decode one batch.")
        sequences = registry.makeCounter(name: "loom_decoded_inputs_total", help: "Inputs decoded.")
        let registry = self.registry
        stops = Dictionary(uniqueKeysWithValues: StopReason.allCases.map { reason in
            (reason, registry.makeCounter(name: "loom_output_stops_total", labels: [("reason", reason.rawValue)],
                                          help: "How each input's best output ended: end of sequence, max_length, length_limit (from the source's length) or repetition (the loop guard)."))
        })
    }

    /// Counts a response by route and status (`loom_requests_total{route, status}`); errors are
    /// the responses with a 4xx or 5xx status.
    func count(route: String, status: Int) {
        let key = "\(route) \(status)"
        lock.lock()
        let counter: Counter
        if let c = requestCounters[key] { counter = c } else {
            counter = registry.makeCounter(name: "loom_requests_total", labels: [("route", route), ("status", String(status))],
                                           help: "HTTP requests answered, by route and status.")
            requestCounters[key] = counter
        }
        lock.unlock()
        counter.increment()
    }

    func countStop(_ reason: StopReason) { stops[reason]?.increment() }

    func text() -> String { registry.emitToString() }
}
