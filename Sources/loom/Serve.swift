import ArgumentParser
import Foundation

/// `loom serve`: runs `loom-serve`, the HTTP server, which is built beside `loom` as its own
/// executable so that `loom` itself needs no networking stack.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a saved model over HTTP (runs loom-serve; `loom serve --help` lists its options).",
        discussion: "Example: loom serve --model runs/addition/model.safetensors --port 8080")

    @Argument(parsing: .allUnrecognized, help: "The options of loom-serve (--model M, --host, --port, limits).")
    var arguments: [String] = []

    /// `loom-serve` in the folder of the running `loom`.
    static var serverPath: String {
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("loom-serve").path
    }

    func run() throws {
        let path = Self.serverPath
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ValidationError("\(path) is missing: build it with `swift build -c release --product loom-serve`")
        }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        execv(path, argv)
        throw ValidationError("could not run \(path): \(String(cString: strerror(errno)))")
    }
}
