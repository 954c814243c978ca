import ArgumentParser
import Foundation
import Loom
import LoomServe

/// `loom-serve` (also `loom serve`): a trained model behind HTTP with dynamic batching.
@main
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loom-serve",
        abstract: "Serve a saved model over HTTP: POST /v1/decode, GET /v1/model, /health, /metrics, /openapi.json.",
        discussion: """
            Binds to loopback unless --host says otherwise. Concurrent requests are decoded together in \
            batches of up to --max-batch inputs; a request waits at most --max-delay-ms for others that \
            are already on their way. SIGTERM or Ctrl-C stops accepting connections, answers every \
            queued request, and exits 0. Example:
              loom-serve --model runs/addition/model.safetensors --port 8080
              curl -s localhost:8080/v1/decode -H 'Content-Type: application/json' -d '{"inputs": ["12+30"]}'
            """)

    @Option(help: "The model file (.safetensors written by Loom).") var model: String
    @Option(help: "Address to bind (127.0.0.1: this machine only; 0.0.0.0: every interface).") var host = "127.0.0.1"
    @Option(parsing: .unconditional, help: "Port (0: any free port, printed when listening).") var port = 8080
    @Option(parsing: .unconditional, help: "Most inputs decoded together.") var maxBatch = ServeLimits().maximumBatch
    @Option(parsing: .unconditional, help: "Longest wait, in milliseconds, for requests on their way to join a batch.")
    var maxDelayMs = ServeLimits().maximumDelay * 1000
    @Option(parsing: .unconditional, help: "Most inputs waiting; more get 429 with Retry-After.") var maxQueue = ServeLimits().maximumQueue
    @Option(parsing: .unconditional, help: "Largest request body in bytes.") var maxBodyBytes = ServeLimits().maximumBodyBytes
    @Option(parsing: .unconditional, help: "Most inputs per request.") var maxInputs = ServeLimits().maximumInputs
    @Option(parsing: .unconditional, help: "Longest text input in characters.") var maxInputLength = ServeLimits().maximumInputCharacters
    @Option(parsing: .unconditional, help: "Widest beam a request may ask for.") var maxBeam = ServeLimits().maximumBeam
    @Option(parsing: .unconditional, help: "Largest max_length a request may ask for.") var maxOutputLength = ServeLimits().maximumOutputLength
    @Option(parsing: .unconditional, help: "Seconds a decode request may wait in the queue before it is answered 503.") var timeout = ServeLimits().timeout
    @Option(parsing: .unconditional, help: "Threads that decode a batch: the decoding thread and Loom's workers (default: LOOM_THREADS, else the cores this process may use).") var threads: Int?
    @Option(parsing: .unconditional, help: "Idle spins of Loom's workers before they sleep between batches (lower leaves the cores to HTTP).")
    var workerSpins = 10_000

    var limits: ServeLimits {
        var l = ServeLimits()
        l.maximumBatch = maxBatch
        l.maximumDelay = maxDelayMs / 1000
        l.maximumQueue = maxQueue
        l.maximumBodyBytes = maxBodyBytes
        l.maximumInputs = maxInputs
        l.maximumInputCharacters = maxInputLength
        l.maximumBeam = maxBeam
        l.maximumOutputLength = maxOutputLength
        l.defaultOutputLength = min(l.defaultOutputLength, maxOutputLength)
        l.timeout = timeout
        return l
    }

    func validate() throws {
        try validatingOptions {
            try OptionRange.path("--model", model)
            try OptionRange.check("--port", port, in: 0...65_535)
            try OptionRange.check("--max-batch", maxBatch, in: 1...4096)
            try OptionRange.check("--max-delay-ms", maxDelayMs, in: 0...1000)
            try OptionRange.check("--max-queue", maxQueue, in: 1...1_000_000)
            try OptionRange.check("--max-body-bytes", maxBodyBytes, in: 1024...(1 << 30))
            try OptionRange.check("--max-inputs", maxInputs, in: 1...100_000)
            try OptionRange.check("--max-input-length", maxInputLength, in: 1...1_000_000)
            try OptionRange.check("--max-beam", maxBeam, in: 1...DecodingOptions.maximumBeamWidth)
            try OptionRange.check("--max-output-length", maxOutputLength, in: 1...DecodingOptions.maximumOutputLength)
            try OptionRange.check("--timeout", timeout, in: 0.001...86_400)
            if let threads { try OptionRange.check("--threads", threads, in: 1...WorkerTeam.maximumThreads) }
            try OptionRange.check("--worker-spins", workerSpins, in: 0...100_000_000)
        }
        if maxQueue < maxInputs { throw ValidationError("--max-queue \(maxQueue) must be at least --max-inputs \(maxInputs): a full request must fit the queue") }
    }

    func validatingOptions(_ checks: () throws -> Void) throws {
        do { try checks() } catch let error as OptionRangeError { throw ValidationError(error.description) }
    }

    static func main() async {
        BLAS.selectOptimizedCoreAndRelaunchIfNeeded()
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? AsyncParsableCommand { try await asyncCommand.run() } else { try command.run() }
        } catch {
            exit(withError: error)
        }
    }

    func run() async throws {
        if let threads { BLAS.setThreadCount(threads) }
        WorkerTeam.spinsBeforeSleep = workerSpins
        let loaded = try DecodingModel(contentsOf: URL(fileURLWithPath: model))
        let server = DecodeServer(model: loaded, host: host, port: port, limits: limits)
        let host = self.host
        try await server.run(handlingSignals: true) { port in
            print("loom-serve: \(loaded.name) on http://\(host):\(port) (POST /v1/decode; SIGTERM or Ctrl-C stops)")
            fflush(stdout)
        }
        print("loom-serve: stopped")
    }
}
