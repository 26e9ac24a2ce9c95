import ConfbusCore
import Foundation
import Testing

/// The admin API so far (issue 4, in progress): overrides, If-Match, rollback and the audit log,
/// against the real PostgreSQL and mosquitto.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct AdminTests {
    static func admin(_ extra: [String: String] = [:]) -> [String: String] {
        ["Authorization": "Bearer \(Confbus.adminToken)", "Content-Type": "application/json", "X-Confbus-Reason": "test"]
            .merging(extra) { $1 }
    }

    static func body(_ json: String) -> Data { Data(json.utf8) }

    @Test(.timeLimit(.minutes(2)))
    func overridesAreValidatedStoredPublishedAndAudited() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        let topic = confbus.topic("update", "billing-api")
        try probe.subscribe(topic)
        _ = try await probe.waitFor(topic) { $0.json?["version"] == .integer(1) }
        let path = "/v1/config/billing-api/override"

        #expect(try await confbus.request("PUT", path, body: Self.body(#"{"log_level": "error"}"#)).status == 401)

        let put = try await confbus.request("PUT", path, headers: Self.admin(), body: Self.body(#"{"database": {"pool_size": 77}}"#))
        #expect(put.status == 200)
        #expect(put.json?["version"] == .integer(2))
        #expect(put.json?["config"]?["database"]?["pool_size"] == .integer(77))
        _ = try await probe.waitFor(topic) { $0.json?["version"] == .integer(2) }

        // An invalid result: 422 naming the path, nothing stored, nothing published, the refusal audited.
        let invalid = try await confbus.request("PUT", path, headers: Self.admin(), body: Self.body(#"{"database": {"pool_size": 500}}"#))
        #expect(invalid.status == 422)
        #expect(invalid.headers["content-type"] == "application/problem+json")
        #expect(invalid.json?["errors"]?.arrayValue?.first?["path"] == .string("/database/pool_size"))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2])

        // If-Match: a stale version is 412; the current ETag passes.
        let stale = try await confbus.request("PATCH", path, headers: Self.admin(["If-Match": "\"1\""]), body: Self.body(#"{"log_level": "error"}"#))
        #expect(stale.status == 412)
        let etag = try #require(try await confbus.get("/v1/config/billing-api").headers["etag"])
        let patched = try await confbus.request("PATCH", path, headers: Self.admin(["If-Match": etag]),
                                                body: Self.body(#"{"database": {"pool_size": null}, "log_level": "error"}"#))
        #expect(patched.status == 200)
        #expect(patched.json?["version"] == .integer(3))
        // PATCH null removed the key from the layer: the file's value shows again.
        #expect(patched.json?["config"]?["database"]?["pool_size"] == .integer(10))
        #expect(patched.json?["config"]?["log_level"] == .string("error"))

        // The stored layer survives a reload (no new version), and PUT of the same layer makes none either.
        #expect(try await confbus.reload().json?["committed"]?.arrayValue == [])
        let same = try await confbus.request("PUT", path, headers: Self.admin(), body: Self.body(#"{"log_level": "error"}"#))
        #expect(same.json?["version"] == .integer(3))
        let cleared = try await confbus.request("DELETE", path, headers: Self.admin())
        #expect(cleared.json?["version"] == .integer(4))
        #expect(cleared.json?["config"]?["log_level"] == .string("debug"))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2, 3, 4])

        let history = try await confbus.get("/v1/config/billing-api/history").json?["versions"]?.arrayValue ?? []
        #expect(history.first?["source"] == .string("override"))
        #expect(history.first?["author"] == .string("ops"))
        let audit = try await confbus.get("/v1/audit?service=billing-api", headers: Self.admin()).json?["entries"]?.arrayValue ?? []
        #expect(audit.contains { $0["outcome"] == .string("refused") && $0["detail"]?.stringValue?.contains("/database/pool_size") == true })
        #expect(audit.contains { $0["action"] == .string("override.put") && $0["outcome"] == .string("accepted") && $0["actor"] == .string("ops") })
        #expect(audit.contains { $0["action"] == .string("files") && $0["changes"]?.arrayValue?.first?["new_version"] == .integer(1) })
        #expect(!String(decoding: try await confbus.get("/v1/audit", headers: Self.admin()).body, as: UTF8.self).contains(Confbus.adminToken))
        #expect(try await confbus.get("/v1/audit").status == 401)
        #expect(try await confbus.request("PUT", "/v1/config/nope/override", headers: Self.admin(), body: Self.body("{}")).status == 404)
        #expect(try await confbus.request("PUT", path, headers: Self.admin(), body: Self.body("[1]")).status == 400)
        #expect(try await confbus.request("PUT", path, headers: Self.admin(), body: Self.body("{")).status == 400)
    }

    @Test(.timeLimit(.minutes(2)))
    func rollbackToVersion1AfterFiveChangesGivesVersion7() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let original = try #require(try await confbus.get("/v1/config/report-worker").json?["config"])
        for n in 1...5 {
            let r = try await confbus.request("PUT", "/v1/config/report-worker/override", headers: Self.admin(),
                                              body: Self.body(#"{"concurrency": \#(n + 10)}"#))
            #expect(r.json?["version"] == .integer(n + 1))
        }
        let rolled = try await confbus.request("POST", "/v1/config/report-worker/rollback", headers: Self.admin(), body: Self.body(#"{"version": 1}"#))
        #expect(rolled.status == 200)
        #expect(rolled.json?["version"] == .integer(7))
        #expect(rolled.json?["config"] == original)
        // Version 1 had no override layer; it is restored, so a reload does not undo the rollback.
        #expect(try await confbus.reload().json?["committed"]?.arrayValue == [])
        #expect(try await confbus.get("/v1/config/report-worker").json?["version"] == .integer(7))
        let history = try await confbus.get("/v1/config/report-worker/history?limit=1").json?["versions"]?.arrayValue?.first
        #expect(history?["source"] == .string("rollback"))
        #expect(try await confbus.request("POST", "/v1/config/report-worker/rollback", headers: Self.admin(), body: Self.body(#"{"version": 99}"#)).status == 404)
        #expect(try await confbus.request("POST", "/v1/config/report-worker/rollback", headers: Self.admin(), body: Self.body(#"{"version": "1"}"#)).status == 400)
        // Past a version number's range: 400, before any If-Match is judged (schemathesis found a 412).
        var beyond = Self.admin()
        beyond["If-Match"] = "\"sha256:\(String(repeating: "0", count: 64))\""
        let tooLarge = try await confbus.request("POST", "/v1/config/report-worker/rollback", headers: beyond, body: Self.body(#"{"version": 2147483648}"#))
        #expect(tooLarge.status == 400 && tooLarge.text.contains("2147483647"))
    }
}

@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct BatchTests {
    static let batch = #"""
        {"reason": "raise limits", "updates": [
          {"service": "billing-api", "patch": {"database": {"pool_size": 20}}},
          {"service": "feature-flags", "override": {"refresh_seconds": 30}},
          {"service": "report-worker", "patch": {"concurrency": 8}}]}
        """#

    /// A started confbus and a probe that has seen every service's version 1.
    static func startedWithUpdateProbe() async throws -> (Confbus, MQTTProbe) {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        let probe = try await MQTTProbe(url: broker)
        try probe.subscribe(confbus.topic("update", "+"))
        for s in ["billing-api", "feature-flags", "report-worker"] { _ = try await probe.waitFor(confbus.topic("update", s)) }
        return (confbus, probe)
    }

    @Test(.timeLimit(.minutes(2)))
    func aValidBatchLandsTogetherAndPublishesEachServiceOnce() async throws {
        let (confbus, probe) = try await Self.startedWithUpdateProbe()
        defer { confbus.stop() }
        defer { Task { await probe.shutdown() } }
        let before = probe.messages.count

        let result = try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(["Idempotency-Key": "k-1"]), body: Data(Self.batch.utf8))
        #expect(result.status == 200)
        let batchID = try #require(result.json?["batch_id"]?.stringValue)
        #expect(result.json?["results"]?.arrayValue?.allSatisfy { $0["changed"] == .bool(true) } == true)
        for s in ["billing-api", "feature-flags", "report-worker"] {
            _ = try await probe.waitFor(confbus.topic("update", s)) { $0.json?["version"] == .integer(2) }
            let history = try await confbus.get("/v1/config/\(s)/history?limit=1").json?["versions"]?.arrayValue?.first
            #expect(history?["batch_id"] == .string(batchID))
            #expect(history?["source"] == .string("batch"))
            #expect(history?["reason"] == .string("raise limits"))
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(probe.messages.count - before == 3)

        // The same key again: the first answer, and nothing new.
        let replay = try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(["Idempotency-Key": "k-1"]), body: Data(Self.batch.utf8))
        #expect(replay.headers["idempotent-replayed"] == "true")
        #expect(replay.json == result.json)
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2])
        let reused = try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(["Idempotency-Key": "k-1"]),
                                               body: Data(#"{"updates": [{"service": "billing-api", "patch": {"log_level": "info"}}]}"#.utf8))
        #expect(reused.status == 422)
    }

    @Test(.timeLimit(.minutes(2)))
    func oneBadValueRefusesTheWholeBatch() async throws {
        let (confbus, probe) = try await Self.startedWithUpdateProbe()
        defer { confbus.stop() }
        defer { Task { await probe.shutdown() } }
        let before = probe.messages.count

        let bad = Self.batch.replacingOccurrences(of: #""concurrency": 8"#, with: #""concurrency": 500"#)
        let refused = try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(), body: Data(bad.utf8))
        #expect(refused.status == 422)
        let error = try #require(refused.json?["errors"]?.arrayValue?.first)
        #expect(error["service"] == .string("report-worker"))
        #expect(error["index"] == .integer(2))
        #expect(error["path"] == .string("/concurrency"))
        for s in ["billing-api", "feature-flags", "report-worker"] {
            #expect(try await Harness.versions(in: confbus.databaseURL, service: s) == [1])
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(probe.messages.count == before)
        let audit = try await confbus.get("/v1/audit", headers: AdminTests.admin()).json?["entries"]?.arrayValue?.first
        #expect(audit?["outcome"] == .string("refused"))
        #expect(audit?["services"] == ["billing-api", "feature-flags", "report-worker"])

        let duplicate = #"{"updates": [{"service": "billing-api", "patch": {}}, {"service": "billing-api", "patch": {}}]}"#
        #expect(try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(), body: Data(duplicate.utf8)).status == 422)
        let unknown = #"{"updates": [{"service": "no-such", "patch": {}}]}"#
        #expect(try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(), body: Data(unknown.utf8)).status == 404)
    }

    @Test(.timeLimit(.minutes(2)))
    func dryRunsAndValidateStoreNothingAndYAMLBodiesWork() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let validate = try await confbus.request("POST", "/v1/validate", headers: AdminTests.admin(), body: Data(Self.batch.utf8))
        #expect(validate.status == 200)
        let billing = validate.json?["results"]?.arrayValue?.first { $0["service"] == .string("billing-api") }
        #expect(billing?["changes"] == [["op": "replace", "path": "/database/pool_size", "old": 10, "new": 20]])
        #expect(validate.json?["dry_run"] == .bool(true))
        let yaml = """
            reason: from yaml
            dry_run: true
            updates:
              - service: report-worker
                patch: {concurrency: 3}
            """
        let dry = try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(["Content-Type": "application/yaml"]), body: Data(yaml.utf8))
        #expect(dry.status == 200)
        #expect(dry.json?["results"]?.arrayValue?.first?["document"]?["config"]?["concurrency"] == .integer(3))
        for s in ["billing-api", "feature-flags", "report-worker"] {
            #expect(try await Harness.versions(in: confbus.databaseURL, service: s) == [1])
        }
        #expect(try await confbus.request("POST", "/v1/batch", headers: AdminTests.admin(["Content-Type": "text/yaml"]), body: Data("updates: [".utf8)).status == 400)
    }
}

@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct ExportAndSecretTests {
    @Test(.timeLimit(.minutes(2)))
    func exportImportExportRoundTrips() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (source, _) = try await Harness.startedConfbus(broker: broker)
        defer { source.stop() }
        _ = try await source.request("PUT", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                     body: Data(#"{"database": {"pool_size": 33}}"#.utf8))
        _ = try await source.request("POST", "/v1/batch", headers: AdminTests.admin(), body: Data(BatchTests.batch.utf8))
        #expect(try await source.get("/v1/export?history=true").status == 401)
        let first = try await source.get("/v1/export?history=true&secrets=true", headers: AdminTests.admin())
        #expect(first.status == 200)
        let document = try #require(first.json)
        #expect(document["services"]?.arrayValue?.count == 3)

        // A second distributor with an empty database (and no files to commit from: an empty tree).
        let emptyTree = try Harness.temporaryDirectory("empty").appendingPathComponent("config")
        try FileManager.default.createDirectory(at: emptyTree.appendingPathComponent("services"), withIntermediateDirectories: true)
        let target = try Confbus(configDir: emptyTree, databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await target.start()
        defer { target.stop() }
        let imported = try await target.request("POST", "/v1/import", headers: AdminTests.admin(), body: first.body)
        #expect(imported.status == 200)
        #expect(imported.json?["imported_versions"] == .integer(7))
        let second = try await target.get("/v1/export?history=true&secrets=true", headers: AdminTests.admin())
        #expect(second.json == document)
        #expect(String(decoding: second.body, as: UTF8.self) == String(decoding: first.body, as: UTF8.self))
        #expect(try await target.get("/v1/config/billing-api").json?["version"] == .integer(3))
        // The target has no schema for what it imported, so which values are secret is unknown:
        // open reads see every member masked, an admin sees the config.
        let blind = try #require(try await target.get("/v1/config/billing-api").json?["config"]?.objectValue)
        #expect(!blind.isEmpty && blind.values.allSatisfy { $0 == "***" })
        let sourceConfig = try await source.get("/v1/config/billing-api", headers: AdminTests.admin()).json?["config"]
        #expect(try await target.get("/v1/config/billing-api", headers: AdminTests.admin()).json?["config"] == sourceConfig)
        #expect(sourceConfig?["database"]?["host"] != nil)
        // Importing again is refused: the services exist.
        #expect(try await target.request("POST", "/v1/import", headers: AdminTests.admin(), body: first.body).status == 409)
        // A tampered checksum is refused.
        let tampered = String(decoding: first.body, as: UTF8.self).replacingOccurrences(of: "\"pool_size\":33", with: "\"pool_size\":34")
        let other = try Confbus(configDir: emptyTree, databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await other.start()
        defer { other.stop() }
        #expect(try await other.request("POST", "/v1/import", headers: AdminTests.admin(), body: Data(tampered.utf8)).status == 422)
    }

    /// Past its rate a token gets 429 problem+json with Retry-After; another token is not affected,
    /// and the first is served again once its bucket refills.
    @Test(.timeLimit(.minutes(2)))
    func aTokenPastItsRateIsToldWhenToRetry() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker, environment: [
            "CONFBUS_RATE_LIMIT": "5", "CONFBUS_READ_TOKENS": "busy=busy-secret,calm=calm-secret",
        ])
        defer { confbus.stop() }
        let busy = ["Authorization": "Bearer busy-secret"]
        var statuses: [Int] = []
        var limited: Confbus.HTTPResult?
        for _ in 0..<30 {
            let answer = try await confbus.get("/v1/config/billing-api", headers: busy)
            statuses.append(answer.status)
            if answer.status == 429 { limited = answer }
        }
        // A burst of twice the rate passes, then the bucket is empty.
        #expect(statuses.prefix(10).allSatisfy { $0 == 200 }, "\(statuses)")
        #expect(statuses.contains(429))
        let refusal = try #require(limited)
        #expect(Int(refusal.headers["retry-after"] ?? "") ?? 0 >= 1)
        #expect(refusal.headers["content-type"] == "application/problem+json")
        #expect(refusal.json?["type"]?.stringValue?.hasSuffix("/rate_limited") == true)
        #expect(try await confbus.get("/v1/config/billing-api", headers: ["Authorization": "Bearer calm-secret"]).status == 200)
        try await Task.sleep(for: .seconds(1.5))
        #expect(try await confbus.get("/v1/config/billing-api", headers: busy).status == 200)
        let metrics = String(decoding: try await confbus.get("/metrics").body, as: UTF8.self)
        #expect(metrics.contains("confbus_rate_limited_total{api=\"http\"}"))
    }

    /// The service's own token (scoped to it) gets its secrets; an unscoped read token does not, nor
    /// does a token scoped to another service (for which the service does not exist at all).
    @Test(.timeLimit(.minutes(2)))
    func onlyTheOwningServiceAndAdminsReadSecrets() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker, environment: [
            "CONFBUS_READ_TOKENS": "billing:billing-api=own-secret,dash=unscoped-secret,flags:feature-flags=other-secret",
        ])
        defer { confbus.stop() }
        let secret = "canary-\(UUID().uuidString.prefix(8))-pw"
        #expect(try await confbus.request("PUT", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"password": "\#(secret)"}}"#.utf8)).status == 200)
        func password(_ token: String) async throws -> JSONValue? {
            try await confbus.get("/v1/config/billing-api", headers: ["Authorization": "Bearer \(token)"]).json?["config"]?["database"]?["password"]
        }
        #expect(try await password("own-secret") == .string(secret))
        #expect(try await password("unscoped-secret") == "***")
        #expect(try await password("own-secret") == .string(secret))
        #expect(try await confbus.get("/v1/config/billing-api", headers: ["Authorization": "Bearer other-secret"]).status == 404)
        let ownDiff = try await confbus.get("/v1/config/billing-api/diff?from=1&to=2", headers: ["Authorization": "Bearer own-secret"])
        #expect(ownDiff.json?["changes"]?.arrayValue?.first?["new"] == .string(secret))
        let unscopedDiff = try await confbus.get("/v1/config/billing-api/diff?from=1&to=2", headers: ["Authorization": "Bearer unscoped-secret"])
        #expect(!unscopedDiff.text.contains(secret))
    }

    @Test(.timeLimit(.minutes(2)))
    func secretsAreRedactedForNonAdminsAndNeverLogged() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let secret = "canary-\(UUID().uuidString.prefix(8))-pw"
        let put = try await confbus.request("PUT", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                            body: Data(#"{"database": {"password": "\#(secret)"}}"#.utf8))
        #expect(put.status == 200)
        // Open reads see it masked, in the document, at its pointer and in an earlier version.
        let open = try await confbus.get("/v1/config/billing-api")
        #expect(open.json?["config"]?["database"]?["password"] == "***")
        #expect(open.json?["config"]?["database"]?["host"] != "***")
        #expect(!open.text.contains(secret))
        #expect(try await confbus.get("/v1/config/billing-api?pointer=/database/password").json?["value"] == "***")
        #expect(try await confbus.get("/v1/config/billing-api?pointer=/database").json?["value"]?["password"] == "***")
        #expect(try await confbus.get("/v1/config/billing-api?version=2").json?["config"]?["database"]?["password"] == "***")
        #expect(try await confbus.get("/v1/config/billing-api?wait=5&after=1").json?["config"]?["database"]?["password"] == "***")
        // An admin sees it in full (and the masked form cached for open reads does not leak into it).
        #expect(try await confbus.get("/v1/config/billing-api", headers: AdminTests.admin()).json?["config"]?["database"]?["password"] == .string(secret))
        #expect(try await confbus.get("/v1/config/billing-api").json?["config"]?["database"]?["password"] == "***")
        let diff = try await confbus.get("/v1/config/billing-api/diff?from=1&to=2")
        #expect(diff.json?["changes"] == [["op": "replace", "path": "/database/password", "old": "***", "new": "***"]])
        let adminDiff = try await confbus.get("/v1/config/billing-api/diff?from=1&to=2", headers: AdminTests.admin())
        #expect(adminDiff.json?["changes"]?.arrayValue?.first?["new"] == .string(secret))
        // An export masks secrets in versions and layers unless an admin asks for them, and a masked
        // export cannot be imported.
        let masked = try await confbus.get("/v1/export?history=true", headers: AdminTests.admin())
        #expect(masked.status == 200 && !masked.text.contains(secret) && masked.json?["secrets_masked"] == true)
        #expect(try await confbus.get("/v1/export?history=true&secrets=true", headers: AdminTests.admin()).text.contains(secret))
        let refusedImport = try await confbus.request("POST", "/v1/import", headers: AdminTests.admin(), body: masked.body)
        #expect(refusedImport.status == 422)
        #expect(refusedImport.json?["detail"]?.stringValue?.contains("secrets=true") == true)
        // Export is for admins only: no token and read tokens get 401, so it cannot leak the secret.
        #expect(try await confbus.get("/v1/export?history=true").status == 401)
        let history = String(decoding: try await confbus.get("/v1/config/billing-api/history").body, as: UTF8.self)
        let audit = String(decoding: try await confbus.get("/v1/audit", headers: AdminTests.admin()).body, as: UTF8.self)
        #expect(!history.contains(secret) && !audit.contains(secret))
        // A refused change does not echo the value either.
        let refused = try await confbus.request("PUT", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                                body: Data(#"{"database": {"password": "short-\#(secret.prefix(2))"}}"#.utf8))
        #expect(refused.status == 422 || refused.status == 200)
        confbus.stop()
        #expect(!(try String(contentsOf: confbus.log, encoding: .utf8)).contains(secret))
    }
}

/// `cache_services`: a node that keeps one service's parsed files and compiled schema in memory
/// still validates, stores and publishes a write to every service (each read and compiled again
/// when it was let go), and an unchanged reload commits nothing.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct BoundedMemoryTests {
    @Test(.timeLimit(.minutes(2)))
    func aNodeKeepingOneServiceInMemoryValidatesEveryWrite() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker, environment: ["CONFBUS_CACHE_SERVICES": "1"])
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        let writes: [(service: String, invalid: String, valid: String, path: String)] = [
            ("billing-api", #"{"database": {"pool_size": 500}}"#, #"{"database": {"pool_size": 77}}"#, "/database/pool_size"),
            ("report-worker", #"{"concurrency": 500}"#, #"{"concurrency": 7}"#, "/concurrency"),
            ("feature-flags", #"{"refresh_seconds": 1}"#, #"{"refresh_seconds": 77}"#, "/refresh_seconds"),
        ]
        for write in writes { try probe.subscribe(confbus.topic("update", write.service)) }
        // Twice round: every write finds its service let go by the write before it.
        for round in 0..<2 {
            for write in writes {
                let path = "/v1/config/\(write.service)/override"
                let refused = try await confbus.request("PUT", path, headers: AdminTests.admin(), body: AdminTests.body(write.invalid))
                #expect(refused.status == 422, "\(write.service): \(refused.text)")
                #expect(refused.json?["errors"]?.arrayValue?.first?["path"] == .string(write.path))
                let put = try await confbus.request("PUT", path, headers: AdminTests.admin(), body: AdminTests.body(write.valid))
                #expect(put.status == 200, "\(write.service): \(put.text)")
                if round == 0 {
                    _ = try await probe.waitFor(confbus.topic("update", write.service)) { $0.json?["version"] == .integer(2) }
                }
            }
        }
        // The second round changed nothing: each service has versions 1 and 2, and the refusals stored none.
        for write in writes {
            #expect(try await Harness.versions(in: confbus.databaseURL, service: write.service) == [1, 2])
        }
        let reload = try await confbus.reload()
        #expect(reload.status == 200)
        #expect(reload.json?["committed"]?.arrayValue == [])
    }
}
