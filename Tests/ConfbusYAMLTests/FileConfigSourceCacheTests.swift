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

    /// A schema's tree is not kept between loads (the resolver keeps the schema compiled): a load
    /// of an unchanged tree gets the schema read again when asked, with its locations; defaults
    /// stay held, since every resolution merges them.
    @Test func schemasAreReadAgainWhenAskedAndConfigFilesAreHeld() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("confbus-cache-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        let dir = root.appendingPathComponent("services/alpha")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Self.write("type: object\nproperties:\n  pool: { type: integer }\n", to: dir.appendingPathComponent("schema.yaml"))
        try Self.write("pool: 1\n", to: dir.appendingPathComponent("defaults.yaml"))
        try await Self.settle()
        let source = FileConfigSource(root: root.path)
        let alpha = try ServiceName(validating: "alpha")
        let first = source.load(alpha, environment: "production")
        #expect(first.schema?.isHeld == true, "the load that parsed it hands the tree on")
        let again = source.load(alpha, environment: "production")
        let schema = try #require(again.schema)
        #expect(!schema.isHeld && again.defaults?.isHeld == true)
        #expect(schema.identity == first.schema?.identity)
        #expect(schema.value == ["type": "object", "properties": ["pool": ["type": "integer"]]])
        #expect(schema.location(of: try #require(JSONPointer("/properties/pool/type"))) ==
                SourceLocation(file: dir.appendingPathComponent("schema.yaml").path, line: 3, column: 11))
        #expect(schema.held.isHeld && schema.held.value == schema.value)

        // Changed underneath without a reload noticing, and no longer YAML: read as the schema
        // `false`, which nothing satisfies (fails closed), until a load sees the new identity.
        try Self.write("type: [object\n", to: dir.appendingPathComponent("schema.yaml"))
        #expect(schema.value == .bool(false))
        #expect(source.load(alpha, environment: "production").errors.map(\.code) == [.invalidYAML])
    }
}
