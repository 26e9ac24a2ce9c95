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

    /// Past its capacity the cache lets the least recently used files go; a load parses them again,
    /// and `identity(of:)` answers what a load's identity would be from `stat` alone.
    @Test func aBoundedCacheLetsFilesGoAndIdentityNeedsNoParse() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("confbus-cache-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        let names = (1...5).map { "svc-\($0)" }
        for (n, name) in names.enumerated() {
            let dir = root.appendingPathComponent("services/\(name)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try Self.write("type: object\n", to: dir.appendingPathComponent("schema.yaml"))
            try Self.write("pool: \(n)\n", to: dir.appendingPathComponent("defaults.yaml"))
        }
        try Self.write("pool: 40\n", to: root.appendingPathComponent("services/svc-1/production.yaml"))
        try await Self.settle()
        let source = FileConfigSource(root: root.path, heldFiles: 4)
        let services = try names.map { try ServiceName(validating: $0) }
        var identities: [String] = []
        for service in services {
            let files = source.load(service, environment: "production")
            let identity = try #require(files.identity)
            #expect(source.identity(of: service, environment: "production") == identity)
            identities.append(identity)
            #expect(source.cachedFileCount <= 4)
        }
        // svc-1's files were let go long ago: loaded again, parsed again, the same values and identity.
        let again = source.load(services[0], environment: "production")
        #expect(again.defaults?.value == ["pool": 0] && again.environment?.value == ["pool": 40])
        #expect(again.identity == identities[0])
        #expect(source.cachedFileCount <= 4)

        // A changed file changes the stat identity as it changes the load's.
        try Self.write("pool: 9\n", to: root.appendingPathComponent("services/svc-2/defaults.yaml"))
        #expect(source.identity(of: services[1], environment: "production") == nil, "a file written just now has no identity")
        try await Self.settle()
        let changed = try #require(source.identity(of: services[1], environment: "production"))
        #expect(changed != identities[1])
        #expect(source.load(services[1], environment: "production").identity == changed)
        // Both schema files: a load reports it, so there is no identity to reuse.
        try Self.write("{}", to: root.appendingPathComponent("services/svc-3/schema.json"))
        try await Self.settle()
        #expect(source.identity(of: services[2], environment: "production") == nil)
        #expect(source.load(services[2], environment: "production").identity == nil)
        #expect(source.identity(of: services[3], environment: "no/such") == nil)
    }
}
