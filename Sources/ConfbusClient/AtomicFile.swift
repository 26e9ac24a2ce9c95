import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file replaced whole or not at all, and durably: the new bytes go to a temporary file beside it
/// (fsynced, mode 0600), which is then renamed over it and the directory fsynced. The two steps are
/// separate so that something (the agent's `--check`) can look at the new file before it replaces the old.
public enum AtomicFile {
    public struct Failure: Error, Sendable, CustomStringConvertible {
        public var operation: String
        public var errno: Int32

        public var description: String { "\(operation) failed: \(String(cString: strerror(errno)))" }
    }

    /// Writes `bytes` to `temporary`, created with mode 0600 (or truncated), and fsyncs it.
    public static func writeDurably(_ bytes: [UInt8], to temporary: String) throws(Failure) {
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw Failure(operation: "open", errno: errno) }
        var written = 0
        let failure: Failure? = bytes.withUnsafeBytes { buffer -> Failure? in
            while written < buffer.count {
                let n = Glibc.write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 { if errno == EINTR { continue }; return Failure(operation: "write", errno: errno) }
                written += n
            }
            return fsync(fd) == 0 ? nil : Failure(operation: "fsync", errno: errno)
        }
        close(fd)
        if let failure { unlink(temporary); throw failure }
    }

    /// Renames `temporary` over `path` and fsyncs the directory; the temporary file is removed on failure.
    public static func replace(_ path: String, with temporary: String) throws(Failure) {
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw Failure(operation: "rename", errno: code)
        }
        let directory = (path as NSString).deletingLastPathComponent
        let dir = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            defer { close(dir) }
            guard fsync(dir) == 0 else { throw Failure(operation: "fsync of the directory", errno: errno) }
        }
    }

    /// Both steps, with a temporary file named after `path` and this process.
    public static func write(_ bytes: [UInt8], to path: String) throws(Failure) {
        let temporary = path + ".tmp-\(getpid())"
        try writeDurably(bytes, to: temporary)
        try replace(path, with: temporary)
    }
}
