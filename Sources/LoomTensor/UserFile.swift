import Foundation

/// Why a file named by a user could not be opened, read or created; every case names the path.
public enum UserFileError: Error, CustomStringConvertible, Equatable {
    case emptyPath(what: String)
    case notRegular(path: String, kind: String)
    case tooLarge(path: String, size: Int, limit: Int)
    case system(path: String, message: String)
    case blocked(path: String, by: String)

    public var description: String {
        switch self {
        case let .emptyPath(what): return "\(what): the path is empty"
        case let .notRegular(path, kind): return "\(path): is \(kind), not a regular file"
        case let .tooLarge(path, size, limit): return "\(path): \(size) bytes is more than the limit of \(limit) bytes"
        case let .system(path, message): return "\(path): \(message)"
        case let .blocked(path, by): return "cannot create the directory \(path): \(by) is a file, not a directory"
        }
    }
}

/// Every file Loom opens on a user's word goes through here: regular files only (a FIFO, a
/// device such as /dev/zero or a directory is refused before a byte is read, so nothing blocks
/// or reads without end), and the size is checked against a limit before anything is allocated.
public enum UserFile {
    /// The largest file read whole by default: 8 GiB.
    public static let defaultLimit = 8 << 30

    /// Opens `path` for reading and returns the descriptor and size, after checking that it is a
    /// regular file of at most `limit` bytes. The caller closes the descriptor.
    ///
    /// The file is opened without blocking (a FIFO would otherwise wait for a writer) and checked
    /// with `fstat` on the open descriptor, so the check and the read see the same file.
    public static func open(_ path: String, what: String = "file", limit: Int = defaultLimit) throws -> (descriptor: Int32, size: Int) {
        guard !path.isEmpty else { throw UserFileError.emptyPath(what: what) }
        let fd = Foundation.open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw UserFileError.system(path: path, message: String(cString: strerror(errno))) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw UserFileError.system(path: path, message: message)
        }
        let type = info.st_mode & S_IFMT
        guard type == S_IFREG else {
            close(fd)
            throw UserFileError.notRegular(path: path, kind: kindName(type))
        }
        let size = Int(info.st_size)
        guard size <= limit else {
            close(fd)
            throw UserFileError.tooLarge(path: path, size: size, limit: limit)
        }
        // Back to blocking reads (no effect on regular files, but the descriptor may be handed on).
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, size)
    }

    /// At most the first `count` bytes of a regular file (a header), whatever its size.
    public static func prefix(_ path: String, count: Int) throws -> Data {
        let (fd, size) = try open(path, what: "file", limit: Int.max)
        defer { close(fd) }
        var data = [UInt8](repeating: 0, count: Swift.min(count, size))
        var done = 0
        while done < data.count {
            let n = data.withUnsafeMutableBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return Foundation.read(fd, base + done, raw.count - done)
            }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            done += n
        }
        return Data(data.prefix(done))
    }

    /// The whole of a regular file of at most `limit` bytes. A file that grows while it is read
    /// past the limit is refused too.
    public static func read(_ path: String, what: String = "file", limit: Int = defaultLimit) throws -> Data {
        let (fd, size) = try open(path, what: what, limit: limit)
        defer { close(fd) }
        var data = Data(capacity: size)
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = buffer.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw UserFileError.system(path: path, message: String(cString: strerror(errno)))
            }
            if n == 0 { return data }
            guard data.count + n <= limit else { throw UserFileError.tooLarge(path: path, size: data.count + n, limit: limit) }
            data.append(contentsOf: buffer[0..<n])
        }
    }

    /// Creates `url` and its missing parents as directories, with a message that names the
    /// component in the way (a file) or the system's reason (permission denied, ...).
    public static func makeDirectory(_ url: URL) throws {
        let path = url.standardizedFileURL.path
        guard !path.isEmpty else { throw UserFileError.emptyPath(what: "directory") }
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            var info = stat()
            if stat(prefix, &info) == 0 {
                guard info.st_mode & S_IFMT == S_IFDIR else { throw UserFileError.blocked(path: path, by: prefix) }
                continue
            }
            guard errno == ENOENT else { throw UserFileError.system(path: prefix, message: String(cString: strerror(errno))) }
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw UserFileError.system(path: path, message: "cannot create \(prefix): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// A file type in words: "a directory", "a FIFO", ...
    static func kindName(_ type: mode_t) -> String {
        switch type {
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO (named pipe)"
        case S_IFCHR: return "a character device"
        case S_IFBLK: return "a block device"
        case S_IFSOCK: return "a socket"
        default: return "not a regular file"
        }
    }
}
