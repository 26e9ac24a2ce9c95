import ConfbusCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The last-known-good document on disk, `<directory>/<service>.json`: written atomically (a
/// temporary file, fsync, rename, fsync of the directory), mode 0600 since it holds secrets, and
/// verified like any document when read back, so a torn or edited file is never used.
public struct DocumentCache: Sendable {
    public let directory: String
    public let service: String

    public init(directory: String, service: String) {
        self.directory = directory
        self.service = service
    }

    public var path: String { directory + "/" + service + ".json" }

    public enum Failure: Error, Sendable, CustomStringConvertible {
        case io(operation: String, errno: Int32)

        public var description: String {
            switch self {
            case .io(let operation, let code): "cache \(operation) failed: \(String(cString: strerror(code)))"
            }
        }
    }

    /// The cached document when there is one that verifies; why not otherwise (nil when there is none).
    public func load() -> Result<ClientDocument, ClientDocument.Refusal>? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return ClientDocument.verified(Array(data), service: service)
    }

    public func store(_ document: ClientDocument) throws(Failure) {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw .io(operation: "mkdir", errno: errno) }
        let temporary = path + ".tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .io(operation: "open", errno: errno) }
        var written = 0
        let failure: Failure? = document.bytes.withUnsafeBytes { buffer -> Failure? in
            while written < buffer.count {
                let n = write(fd, buffer.baseAddress! + written, buffer.count - written)
                if n < 0 { if errno == EINTR { continue }; return .io(operation: "write", errno: errno) }
                written += n
            }
            return fsync(fd) == 0 ? nil : .io(operation: "fsync", errno: errno)
        }
        close(fd)
        if let failure { unlink(temporary); throw failure }
        guard rename(temporary, path) == 0 else {
            let code = errno
            unlink(temporary)
            throw .io(operation: "rename", errno: code)
        }
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            defer { close(dir) }
            guard fsync(dir) == 0 else { throw .io(operation: "fsync of the directory", errno: errno) }
        }
    }
}
