import Foundation

/// Ctrl-C (SIGINT) and SIGTERM as a request to stop, so that a long run can end at the end of
/// its current step with a checkpoint instead of dying mid-write. A second signal while the
/// first is being honoured ends the process at once, as usual.
public final class Interruption: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    private var sources: [DispatchSourceSignal] = []

    /// Whether a stop was requested.
    public var requested: Bool {
        lock.lock()
        defer { lock.unlock() }
        return flag
    }

    /// Starts catching SIGINT and SIGTERM.
    public static func install() -> Interruption {
        let interruption = Interruption()
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak interruption] in
                guard let interruption else { return }
                interruption.lock.lock()
                let second = interruption.flag
                interruption.flag = true
                interruption.lock.unlock()
                if second { signal(number, SIG_DFL); raise(number) }
                FileHandle.standardError.write(Data("\nstopping at the end of this step (again to stop at once)\n".utf8))
            }
            source.resume()
            interruption.sources.append(source)
        }
        return interruption
    }

    /// Gives the signals back their default action.
    public func uninstall() {
        for source in sources { source.cancel() }
        sources = []
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
