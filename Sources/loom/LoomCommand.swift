import ArgumentParser
import Loom

/// The `loom` command line: tools over the Loom library.
@main
struct LoomCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "loom",
        abstract: "Sequence-to-sequence modeling of text and audio on OpenBLAS.",
        version: LoomVersion.current,
        subcommands: [Train.self, Evaluate.self, Decode.self, Quantize.self, Info.self, EncodeAudio.self, Demo.self, Serve.self])

    static func main() {
        BLAS.selectOptimizedCoreAndRelaunchIfNeeded()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}
