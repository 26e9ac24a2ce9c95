import ConfbusCore
import Foundation
import PostgresNIO
import Testing

/// Secrets encrypted at rest (issue 9, CONTRACT.md §10), against the real PostgreSQL and mosquitto:
/// canaries searched for in every row the database holds, the refusals to start without the key,
/// the rotation, and an export that only a node with the key can import.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct SealedAtRestTests {
    /// Every text the database holds for confbus, row by row, as one string per table.
    static func rawRows(_ databaseURL: String) async throws -> [String: String] {
        try await Harness.withPostgres(databaseURL) { client in
            var tables: [String: String] = [:]
            for table in ["config_versions", "services", "idempotency_keys", "audit", "outbox", "instances"] {
                var text = ""
                for try await row in try await client.query(PostgresQuery(unsafeSQL: "SELECT t::text FROM \(table) t"),
                                                             logger: Harness.logger).decode(String.self) { text += row + "\n" }
                tables[table] = text
            }
            return tables
        }
    }

    static func keyFile(in dir: URL, _ name: String) throws -> (URL, SecretSealer) {
        let url = dir.appendingPathComponent(name)
        let contents = SecretSealer.generateKeyFile()
        try contents.write(to: url, atomically: true, encoding: .utf8)
        return (url, try SecretSealer(keyFileContents: contents))
    }

    static func emptyTree() throws -> URL {
        let dir = try Harness.temporaryDirectory("empty").appendingPathComponent("config")
        try FileManager.default.createDirectory(at: dir.appendingPathComponent("services"), withIntermediateDirectories: true)
        return dir
    }

    /// A start that must be refused: the process ends by itself, non-zero, with `reason` in its log.
    static func expectRefusedStart(_ confbus: Confbus, saying reason: String) async throws {
        try confbus.launch()
        let status = try await confbus.waitForExit(timeout: .seconds(30))
        #expect(status != 0, "confbus started on a database sealed under another key")
        let log = try String(contentsOf: confbus.log, encoding: .utf8)
        #expect(log.contains(reason), "the refusal does not say \(reason); log:\n\(confbus.logTail())")
    }

    @Test(.timeLimit(.minutes(4)))
    func secretsAreSealedInEveryRowAndOnlyTheirKeyReadsThem() async throws {
        let broker = try #require(TestServers.mqttURL)
        let keys = try Harness.temporaryDirectory("keys")
        let (key1, sealer1) = try Self.keyFile(in: keys, "key1")
        let (key2, sealer2) = try Self.keyFile(in: keys, "key2")
        let tree = try Harness.copyOfExampleTree()
        let database = try await Harness.createDatabase()
        let node = try Confbus(configDir: tree, databaseURL: database, mqttURL: broker, environment: ["CONFBUS_SECRET_KEY_FILE": key1.path])
        try await node.start()
        defer { node.stop() }
        let probe = try await MQTTProbe(url: broker)
        try probe.subscribe(node.topic("update", "billing-api"))

        let secret = "canary-\(UUID().uuidString.prefix(8))-override"
        let batchSecret = "canary-\(UUID().uuidString.prefix(8))-batch"
        let put = try await node.request("PUT", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                         body: Data(#"{"database": {"password": "\#(secret)"}}"#.utf8))
        #expect(put.status == 200)
        let batch = try await node.request("POST", "/v1/batch", headers: AdminTests.admin(["Idempotency-Key": "sealed-1"]),
                                           body: Data(#"{"updates": [{"service": "billing-api", "patch": {"database": {"password": "\#(batchSecret)"}}}]}"#.utf8))
        #expect(batch.status == 200)

        // The service itself receives its secret in plain, and an admin reads it; the checksum is the plain config's.
        let update = try await probe.waitFor(node.topic("update", "billing-api")) { $0.json?["version"] == .integer(3) }
        #expect(update.json?["config"]?["database"]?["password"] == .string(batchSecret))
        let read = try await node.get("/v1/config/billing-api", headers: AdminTests.admin())
        let config = try #require(read.json?["config"])
        #expect(config["database"]?["password"] == .string(batchSecret))
        #expect(read.json?["checksum"] == .string(config.checksum))
        #expect(try await node.get("/v1/config/billing-api?version=2", headers: AdminTests.admin()).json?["config"]?["database"]?["password"]
            == .string(secret))
        // A replay of the batch answers from its stored (sealed) answer, unchanged.
        let replay = try await node.request("POST", "/v1/batch", headers: AdminTests.admin(["Idempotency-Key": "sealed-1"]),
                                            body: Data(#"{"updates": [{"service": "billing-api", "patch": {"database": {"password": "\#(batchSecret)"}}}]}"#.utf8))
        #expect(replay.headers["idempotent-replayed"] == "true" && replay.json == batch.json)

        // No row holds either canary; the versions and layers hold envelopes under key 1.
        let rows = try await Self.rawRows(database)
        for (table, text) in rows {
            #expect(!text.contains(secret) && !text.contains(batchSecret), "\(table) holds a secret in plain")
        }
        #expect(rows["config_versions"]?.contains(SecretSealer.envelopeKey) == true)
        #expect(rows["services"]?.contains(SecretSealer.envelopeKey) == true)
        #expect(rows["config_versions"]?.contains(sealer1.keyID) == true)
        #expect(rows["idempotency_keys"]?.contains("v1:\(sealer1.keyID):") == true)

        // An export with its secrets keeps them sealed; only a node with the key imports it.
        let export = try await node.get("/v1/export?history=true&secrets=true", headers: AdminTests.admin())
        #expect(export.status == 200 && !export.text.contains(secret) && !export.text.contains(batchSecret))
        #expect(export.text.contains(SecretSealer.envelopeKey))
        let keyless = try Confbus(configDir: try Self.emptyTree(), databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await keyless.start()
        let refused = try await keyless.request("POST", "/v1/import", headers: AdminTests.admin(), body: export.body)
        keyless.stop()
        #expect(refused.status == 422 && refused.json?["type"]?.stringValue?.hasSuffix("/sealed_value") == true)
        #expect(refused.json?["detail"]?.stringValue?.contains(sealer1.keyID) == true)
        let otherDatabase = try await Harness.createDatabase()
        let keyed = try Confbus(configDir: try Self.emptyTree(), databaseURL: otherDatabase, mqttURL: broker,
                                environment: ["CONFBUS_SECRET_KEY_FILE": key1.path])
        try await keyed.start()
        let imported = try await keyed.request("POST", "/v1/import", headers: AdminTests.admin(), body: export.body)
        #expect(imported.status == 200, "\(imported.text)")
        #expect(try await keyed.get("/v1/config/billing-api", headers: AdminTests.admin()).json?["config"]?["database"]?["password"]
            == .string(batchSecret))
        keyed.stop()
        for (table, text) in try await Self.rawRows(otherDatabase) {
            #expect(!text.contains(secret) && !text.contains(batchSecret), "\(table) holds an imported secret in plain")
        }

        // Without the key, or with another one, the node refuses to start on this database.
        node.stop()
        node.extraEnvironment = [:]
        try await Self.expectRefusedStart(node, saying: "sealed at rest under key \(sealer1.keyID)")
        node.extraEnvironment = ["CONFBUS_SECRET_KEY_FILE": key2.path]
        try await Self.expectRefusedStart(node, saying: "confbus secrets rotate")

        // Rotation moves every sealed value to key 2 in one go; the node then starts with key 2 only.
        let rotate = try RemoteCLITests.cli(["secrets", "rotate", "--old-key-file", key1.path, "--new-key-file", key2.path,
                                             "--database-url", database], confbus: nil, token: nil)
        #expect(rotate.status == 0, "\(rotate.stderr)")
        #expect(rotate.stdout.contains("sealed again under key \(sealer2.keyID)"))
        let rotated = try await Self.rawRows(database)
        #expect(rotated["config_versions"]?.contains(sealer1.keyID) == false)
        #expect(rotated["config_versions"]?.contains(sealer2.keyID) == true)
        #expect(rotated["idempotency_keys"]?.contains("v1:\(sealer2.keyID):") == true)
        try await node.start()
        #expect(try await node.get("/v1/config/billing-api?version=2", headers: AdminTests.admin()).json?["config"]?["database"]?["password"]
            == .string(secret))
        node.stop()
        node.extraEnvironment = ["CONFBUS_SECRET_KEY_FILE": key1.path]
        try await Self.expectRefusedStart(node, saying: "sealed under key \(sealer2.keyID)")

        // Rotating to no key opens every value for good; a node without a key then starts.
        let opened = try RemoteCLITests.cli(["secrets", "rotate", "--old-key-file", key2.path, "--database-url", database], confbus: nil, token: nil)
        #expect(opened.status == 0, "\(opened.stderr)")
        #expect(try await Self.rawRows(database)["config_versions"]?.contains(SecretSealer.envelopeKey) == false)
        node.extraEnvironment = [:]
        try await node.start()
        #expect(try await node.get("/v1/config/billing-api", headers: AdminTests.admin()).json?["config"]?["database"]?["password"]
            == .string(batchSecret))
        node.stop()
        for log in [node.log, keyed.log, keyless.log] {
            let text = try String(contentsOf: log, encoding: .utf8)
            #expect(!text.contains(secret) && !text.contains(batchSecret))
        }
        await probe.shutdown()
    }
}
