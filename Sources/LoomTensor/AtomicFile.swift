import Foundation

/// Whole-file writes that never leave a partial file under the destination's name, and never
/// remove the old file before the new one is complete: replacement is one `rename`.
public enum AtomicFile {
    /// Writes `data` to a temporary sibling, fsyncs it, renames it over `url`, fsyncs the directory.
    /// `interruptAfter` (tests only) stops after that many bytes, as a crash would.
    public static func write(_ data: Data, to url: URL, interruptAfter: Int? = nil) throws {
        try refuseNonRegularDestination(url)
        let temporary = temporarySibling(of: url)
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw UserFileError.system(path: temporary.path, message: "cannot create: \(String(cString: strerror(errno)))") }
        var ok = false
        defer {
            if !ok { unlink(temporary.path) }
        }
        let limit = interruptAfter.map { Swift.min($0, data.count) } ?? data.count
        let written = data.prefix(limit).withUnsafeBytes { raw -> Int in
            guard let base = raw.baseAddress else { return 0 }
            var done = 0
            while done < raw.count {
                let n = Foundation.write(fd, base + done, raw.count - done)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return -1 }
                done += n
            }
            return done
        }
        guard written == limit, fsync(fd) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw UserFileError.system(path: temporary.path, message: "writing failed: \(message)")
        }
        close(fd)
        if interruptAfter != nil { throw UserFileError.system(path: url.path, message: "write interrupted after \(limit) bytes") }
        try replace(url, with: temporary)
        ok = true
    }

    /// Renames a finished temporary file over `url` (one atomic step: the old file stays until the
    /// new one takes its name) and syncs the directory.
    public static func replace(_ url: URL, with temporary: URL) throws {
        try refuseNonRegularDestination(url)
        guard rename(temporary.path, url.path) == 0 else {
            throw UserFileError.system(path: url.path, message: "renaming the finished file into place failed: \(String(cString: strerror(errno)))")
        }
        let dfd = open(url.deletingLastPathComponent().path, O_RDONLY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    /// A destination that exists and is not a regular file (a directory with a user's files in
    /// it, a FIFO, a device) is refused, never replaced.
    public static func refuseNonRegularDestination(_ url: URL) throws {
        var info = stat()
        guard lstat(url.path, &info) == 0 else { return }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG else {
            throw UserFileError.system(path: url.path, message: "exists and is \(UserFile.kindName(type)); not replacing it")
        }
    }

    /// `.NAME.PID.RANDOM.partial` beside `url`. The first time a process writes into a directory,
    /// temporaries left there by processes that no longer run (killed mid-write) are removed,
    /// so they cannot pile up.
    public static func temporarySibling(of url: URL) -> URL {
        let directory = url.deletingLastPathComponent()
        removeStaleTemporaries(in: directory)
        return directory.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).\(UInt32.random(in: 0...UInt32.max)).partial")
    }

    private static let lock = NSLock()
    nonisolated(unsafe) private static var swept: Set<String> = []

    /// Removes `.*.PID.RANDOM.partial` files in `directory` whose PID is no live process.
    public static func removeStaleTemporaries(in directory: URL, force: Bool = false) {
        let key = directory.standardizedFileURL.path
        lock.lock()
        let first = swept.insert(key).inserted
        lock.unlock()
        guard first || force else { return }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: key) else { return }
        for name in names where name.hasPrefix(".") && name.hasSuffix(".partial") {
            let parts = name.split(separator: ".")
            guard parts.count >= 4, let pid = Int32(parts[parts.count - 3]), pid > 0, pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { unlink(key + "/" + name) }
        }
    }
}
