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
    /// Which members are secret (from the schema), so a start from the cache marks them too.
    public var secretsPath: String { directory + "/" + service + ".secrets.json" }

    /// The cached document when there is one that verifies; why not otherwise (nil when there is none).
    public func load() -> Result<ClientDocument, ClientDocument.Refusal>? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return ClientDocument.verified(Array(data), service: service)
    }

    public func store(_ document: ClientDocument) throws(AtomicFile.Failure) {
        try makeDirectory()
        try AtomicFile.write(document.bytes, to: path)
    }

    /// The secret paths as a JSON array of token arrays (nil when none are cached or the file is not that).
    public func loadSecrets() -> [[String]]? {
        guard let data = FileManager.default.contents(atPath: secretsPath), case .array(let items)? = try? JSONParser().parse(Array(data))
        else { return nil }
        var paths: [[String]] = []
        for item in items {
            guard case .array(let tokens) = item else { return nil }
            let strings = tokens.compactMap(\.stringValue)
            guard strings.count == tokens.count else { return nil }
            paths.append(strings)
        }
        return paths
    }

    public func storeSecrets(_ paths: [[String]]) throws(AtomicFile.Failure) {
        try makeDirectory()
        try AtomicFile.write(JSONValue.array(paths.map { .array($0.map(JSONValue.string)) }).serializedBytes(), to: secretsPath)
    }

    private func makeDirectory() throws(AtomicFile.Failure) {
        if mkdir(directory, 0o700) != 0 && errno != EEXIST { throw AtomicFile.Failure(operation: "mkdir", errno: errno) }
    }
}
