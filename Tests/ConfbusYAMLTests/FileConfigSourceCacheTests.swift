import ConfbusCore
import Foundation
import Testing
@testable import ConfbusYAML

/// The parsed-file cache: a file is parsed again when it changes, reused while it does not, and
/// forgotten with its service.
struct FileConfigSourceCacheTests {
    static func write(_ text: String, to url: URL) throws {
        try text.write(to: url, atomically: false, encoding: .utf8)
    }

    /// A file changed within the last second (its mtime or ctime) is never trusted: wait that out.
    static func settle() async throws { try await Task.sleep(for: .milliseconds(1100)) }

    @Test func changedFilesAreParsedAgainAndRemovedServicesForgotten() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("confbus-cache-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        for name in ["alpha", "beta"] {
            let dir = root.appendingPathComponent("services/\(name)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Self.write("type: object\n", to: dir.appendingPathComponent("schema.yaml"))
            try Self.write("pool: 1\n", to: dir.appendingPathComponent("defaults.yaml"))
        }
        try await Self.settle()
        let source = FileConfigSource(root: root.path)
        let alpha = try ServiceName(validating: "alpha")
        #expect(source.listServices().services.count == 2)
        let first = source.load(alpha, environment: "production")
        #expect(first.defaults?.value == ["pool": 1])
        let identity = try #require(first.identity)
        _ = source.load(try ServiceName(validating: "beta"), environment: "production")
        #expect(source.cachedFileCount == 4)
        #expect(source.load(alpha, environment: "production").identity == identity, "unchanged files are the same files")

        // The same size, a different content and time: parsed again.
        let defaults = root.appendingPathComponent("services/alpha/defaults.yaml")
        try Self.write("pool: 2\n", to: defaults)
        try await Self.settle()
        let second = source.load(alpha, environment: "production")
        #expect(second.defaults?.value == ["pool": 2])
        #expect(second.identity != identity)

        // A file written just now is read every time and nothing made from it is reused.
        try Self.write("pool: 3\n", to: defaults)
        let fresh = source.load(alpha, environment: "production")
        #expect(fresh.defaults?.value == ["pool": 3] && fresh.identity == nil)

        try FileManager.default.removeItem(at: root.appendingPathComponent("services/beta"))
        #expect(source.listServices().services.map(\.rawValue) == ["alpha"])
        #expect(source.cachedFileCount == 1, "beta's files are forgotten; alpha's fresh defaults were never kept")
    }
}
