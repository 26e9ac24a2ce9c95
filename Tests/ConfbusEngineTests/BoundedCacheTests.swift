import ConfbusCore
import ConfbusEngine
import ConfbusTestSupport
import ConfbusYAML
import Foundation
import Logging
import Synchronization
import Testing

/// A tree larger than what is kept in memory (`cache_services`): files and compiled schemas that
/// were let go are read and compiled again when a write needs them, and a reload of unchanged
/// services reads no file at all.
struct BoundedCacheTests {
    /// The tree on disk, counting how often a service's files are loaded (read, parsed when not held).
    final class CountingSource: ConfigSource, Sendable {
        let files: FileConfigSource
        let loads = Mutex<[ServiceName]>([])

        init(_ files: FileConfigSource) { self.files = files }

        func listServices() -> (services: [ServiceName], errors: [ConfbusError]) { files.listServices() }
        func load(_ service: ServiceName, environment: String) -> ServiceFiles {
            loads.withLock { $0.append(service) }
            return files.load(service, environment: environment)
        }
        func identity(of service: ServiceName, environment: String) -> String? { files.identity(of: service, environment: environment) }
        func parseValue(_ text: String, source: String) throws(ConfbusError) -> JSONValue { try files.parseValue(text, source: source) }
        func hasService(_ service: ServiceName) -> Bool { files.hasService(service) }
    }

    static func name(_ raw: String) -> ServiceName { try! ServiceName(validating: raw) }

    @Test func servicesLetGoAreReadAgainForWritesAndUnchangedOnesAreNotRead() async throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("confbus-bounded-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: root) }
        for n in 1...6 {
            let dir = root.appendingPathComponent("services/svc-\(n)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            try UseCaseTests.schema.write(to: dir.appendingPathComponent("schema.yaml"), atomically: true, encoding: .utf8)
            try "pool: \(n)\n".write(to: dir.appendingPathComponent("defaults.yaml"), atomically: true, encoding: .utf8)
        }
        // Files written within the last second are never trusted to be unchanged.
        try await Task.sleep(for: .milliseconds(1100))
        // Room for two services' files and two compiled schemas, for a tree of six.
        let source = CountingSource(FileConfigSource(root: root.path, heldFiles: 4))
        let resolver = ServiceResolver(options: .init(environment: "test"), overrides: OverrideVariables(environment: [:]), compiledSchemas: 2)
        let store = InMemoryConfbusStore()
        let distributor = Distributor(options: .init(environment: "test", maxPayloadBytes: 1 << 20), source: source,
                                      resolver: resolver, store: store, logger: Logger(label: "bounded-cache-tests"))
        let first = try await distributor.reloader.reload(reason: "start")
        #expect(first.committed.count == 6)

        source.loads.withLock { $0 = [] }
        let unchanged = try await distributor.reloader.reload(reason: "again")
        #expect(unchanged.committed.isEmpty && unchanged.unchanged.count == 6)
        #expect(source.loads.withLock { $0 }.isEmpty, "an unchanged service is stat'ed, not read")

        // svc-1's files and schema were let go: an edit reads and compiles them again, and the
        // schema still refuses what it refuses.
        let admin = OperatorContext(actor: "ops", requestID: "r-1", reason: "test")
        await #expect(throws: ConfbusError.self) {
            _ = try await distributor.overrides.edit(Self.name("svc-1"), .replace(["pool": 500]), expectedVersion: nil, by: admin)
        }
        _ = try await distributor.overrides.edit(Self.name("svc-1"), .replace(["pool": 50]), expectedVersion: nil, by: admin)
        #expect(distributor.reads.latest(Self.name("svc-1"))?.config == ["pool": 50])
        #expect(try await store.latest(Self.name("svc-1"))?.version == 2)

        // (The next reload resolves svc-1 once more: its layer is not the one it last resolved with.)
        _ = try await distributor.reloader.reload(reason: "after the edit")

        // One changed file: only its service is read and committed.
        try "pool: 99\n".write(to: root.appendingPathComponent("services/svc-2/defaults.yaml"), atomically: true, encoding: .utf8)
        try await Task.sleep(for: .milliseconds(1100))
        source.loads.withLock { $0 = [] }
        let edited = try await distributor.reloader.reload(reason: "edit")
        #expect(edited.committed.map(\.service.rawValue) == ["svc-2"])
        #expect(source.loads.withLock { $0 }.map(\.rawValue) == ["svc-2"])
        #expect(distributor.reads.latest(Self.name("svc-2"))?.config == ["pool": 99])
        #expect(distributor.reads.latest(Self.name("svc-1"))?.config == ["pool": 50], "the override layer stays on top")
    }
}
