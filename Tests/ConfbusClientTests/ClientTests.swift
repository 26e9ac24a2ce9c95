import ConfbusClient
import ConfbusCore
import Configuration
import ConfigurationTesting
import Foundation
import Testing

/// The client's core (issue 10, first part): what a service takes from confbus, what it keeps on disk,
/// and how swift-configuration reads it.
@Suite struct ClientTests {
    static func document(_ service: String, version: Int, config: JSONValue, checksum: String? = nil) -> [UInt8] {
        JSONValue.object([
            "service": .string(service), "environment": "test", "version": .integer(version),
            "checksum": .string(checksum ?? config.checksum), "updated_at": "2026-12-02T00:00:00.000Z", "config": config,
        ]).serializedBytes()
    }

    @Test func onlyNewerVerifiedDocumentsOfTheServiceAreCandidates() throws {
        var state = ClientState(service: "billing-api")
        let v1 = Self.document("billing-api", version: 1, config: ["pool": 10])
        let first = try state.candidate(v1).get()
        state.applied(first)
        #expect(state.heldVersion == 1)
        // A replay, another service's document, a forged checksum, an altered config, garbage: all dropped.
        #expect(state.candidate(v1) == .failure(.stale))
        #expect(state.candidate(Self.document("report-worker", version: 2, config: ["pool": 10])) == .failure(.wrongService))
        #expect(state.candidate(Self.document("billing-api", version: 2, config: ["pool": 11], checksum: "sha256:" + String(repeating: "0", count: 64)))
            == .failure(.checksumMismatch))
        var altered = String(decoding: Self.document("billing-api", version: 2, config: ["pool": 11]), as: UTF8.self)
        altered = altered.replacingOccurrences(of: "\"pool\":11", with: "\"pool\":12")
        #expect(state.candidate(Array(altered.utf8)) == .failure(.checksumMismatch))
        #expect(state.candidate(Array("not json".utf8)) == .failure(.malformed))
        #expect(state.dropped == [.stale: 1, .wrongService: 1, .checksumMismatch: 2, .malformed: 1])
        // A newer one is a candidate, but held only once the application took it.
        let v2 = try state.candidate(Self.document("billing-api", version: 2, config: ["pool": 20])).get()
        #expect(state.heldVersion == 1)
        state.applied(v2)
        #expect(state.held?.config == ["pool": 20])
    }

    @Test func theCacheIsWrittenWholeOwnerOnlyAndVerifiedWhenRead() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("confbus-cache-\(UUID().uuidString.prefix(8))").path
        let cache = DocumentCache(directory: dir, service: "billing-api")
        #expect(cache.load() == nil)
        let document = try ClientDocument.verified(Self.document("billing-api", version: 3, config: ["db": ["password": "pw"]]),
                                                   service: "billing-api").get()
        try cache.store(document)
        #expect(try cache.load()?.get() == document)
        let attributes = try FileManager.default.attributesOfItem(atPath: cache.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["billing-api.json"])
        // A cache edited by hand (or torn) is not used.
        try Data(String(decoding: document.bytes, as: UTF8.self).replacingOccurrences(of: "\"pw\"", with: "\"px\"").utf8)
            .write(to: URL(fileURLWithPath: cache.path))
        #expect(cache.load() == .failure(.checksumMismatch))
        // Another service's document under this name is not used either.
        try Data(Self.document("report-worker", version: 1, config: [:])).write(to: URL(fileURLWithPath: cache.path))
        #expect(cache.load() == .failure(.wrongService))
    }

    static let compatConfig: JSONValue = try! JSONParser().parse(#"""
        {"string": "Hello", "int": 42, "double": 3.14, "bool": true, "bytes": "bWFnaWM=",
         "stringy": {"array": ["Hello", "World"]}, "inty": {"array": [42, 24]}, "doubly": {"array": [3.14, 2.72]},
         "booly": {"array": [true, false]}, "byteChunky": {"array": ["bWFnaWM=", "bWFnaWMy"]},
         "other": {"string": "Other Hello", "int": 24, "double": 2.72, "bool": false, "bytes": "bWFnaWMy",
                   "stringy": {"array": ["Hello", "Swift"]}, "inty": {"array": [16, 32]}, "doubly": {"array": [0.9, 1.8]},
                   "booly": {"array": [false, true, true]}, "byteChunky": {"array": ["bWFnaWM=", "bWFnaWMy", "bWFnaWM="]}}}
        """#)

    @Test func theProviderPassesSwiftConfigurationsCompatibilityTest() async throws {
        let provider = ConfbusProvider(service: "compat", initial: ConfbusSnapshot(version: 1, config: Self.compatConfig))
        try await ProviderCompatTest(provider: provider).runTest()
    }

    @Test func keysMapToPointersSecretsAreMarkedAndTypesAreChecked() throws {
        let config: JSONValue = ["database": ["pool_size": 40, "password": "pw", "ratio": 2], "hosts": ["a", "b"]]
        let snapshot = ConfbusSnapshot(version: 2, config: config, secrets: Redaction(paths: [["database", "password"]]))
        let reader = ConfigReader(provider: ConfbusProvider(service: "billing-api", initial: snapshot))
        #expect(reader.int(forKey: "database.pool_size") == 40)
        #expect(reader.double(forKey: "database.ratio") == 2.0)
        #expect(reader.stringArray(forKey: "hosts") == ["a", "b"])
        #expect(reader.string(forKey: "database.missing") == nil)
        #expect(try snapshot.value(forKey: AbsoluteConfigKey(["database", "password"]), type: .string).value?.isSecret == true)
        #expect(try snapshot.value(forKey: AbsoluteConfigKey(["database", "pool_size"]), type: .int).value?.isSecret == false)
        #expect(throws: ConfbusConfigError.self) { try snapshot.value(forKey: AbsoluteConfigKey(["database", "password"]), type: .int) }
    }

    @Test func aWatcherSeesTheCurrentValueThenOnlyItsOwnChanges() async throws {
        let provider = ConfbusProvider(service: "billing-api", initial: ConfbusSnapshot(version: 1, config: ["pool": 10, "other": 1]))
        let seen = try await provider.watchValue(forKey: AbsoluteConfigKey(["pool"]), type: .int) { updates in
            var values: [Int?] = []
            for await update in updates {
                let content = try update.get().value?.content
                if case .int(let n)? = content { values.append(n) } else { values.append(nil) }
                switch values.count {
                // Another key changing wakes nobody; this one changing does; removing it gives nil.
                case 1: provider.apply(ConfbusSnapshot(version: 2, config: ["pool": 10, "other": 2]))
                        provider.apply(ConfbusSnapshot(version: 3, config: ["pool": 20, "other": 2]))
                case 2: provider.apply(ConfbusSnapshot(version: 4, config: ["other": 2]))
                default: return values
                }
            }
            return values
        }
        #expect(seen == [10, 20, nil])
        #expect(provider.version == 4)
    }
}
