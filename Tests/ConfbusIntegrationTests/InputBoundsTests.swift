import ConfbusCore
import Foundation
import Testing

/// Issue 7's bounds on what instances and operators send, against real PostgreSQL and mosquitto:
/// refusals answered but rate-limited, acks for versions that do not exist refused, silent
/// instances forgotten, imports validated, a file too large to publish refused for its service only.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct InputBoundsTests {
    static let admin = FaultIsolationTests.admin

    @Test(.timeLimit(.minutes(2)))
    func refusalsAreRateLimitedAndAnAckAboveTheLatestIsRefused() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        let errors = confbus.topic("error", "report-worker")
        try probe.subscribe(errors)

        // A flood of unreadable registrations: each is refused, at most 5 answers per 10 s. (On a machine
        // stalled long enough that the flood spans a second window, the budget has refilled once.)
        let floodStarted = ContinuousClock.now
        for _ in 0..<20 { try await probe.publish(confbus.topic("register", "report-worker"), "not json") }
        _ = try await probe.waitFor(errors) { $0.json?["error"]?["code"] == .string("invalid_payload") }
        try await Task.sleep(for: .seconds(2))
        let windows = ContinuousClock.now - floodStarted < .seconds(10) ? 1 : 2
        let answered = probe.messages(on: errors).count
        #expect(windows == 1 ? answered == 5 : (5...10).contains(answered), "\(answered) answers in \(windows) window(s)")
        let metrics = String(decoding: try await confbus.get("/metrics").body, as: UTF8.self)
        #expect(metrics.contains("reply_rate_limited"))
        #expect(metrics.contains("confbus_rate_limited_total{api=\"mqtt\"} \(20 - answered)"))
        // Only the answered refusals are logged, not the flood.
        let logged = try String(contentsOf: confbus.log, encoding: .utf8).components(separatedBy: "refused a message").count - 1
        #expect(logged == answered)

        // An ack for a version that does not exist is refused and not recorded.
        try await probe.publish(confbus.topic("ack", "report-worker/web-1"), #"{"version": 99, "status": "applied"}"#)
        let refusal = try await probe.waitFor(errors) { $0.json?["instance"] == .string("web-1") }
        #expect(refusal.json?["error"]?["code"] == .string("invalid_payload"))
        let instances = try await confbus.get("/v1/services/report-worker/instances").json?["instances"]?.arrayValue ?? []
        #expect(!instances.contains { $0["applied_version"] == .integer(99) })
        // The same instance acking the real version is recorded.
        try await probe.publish(confbus.topic("ack", "report-worker/web-1"), #"{"version": 1, "status": "applied"}"#)
        try await Harness.eventually("the valid ack is recorded") {
            let listed = try await confbus.get("/v1/services/report-worker/instances").json?["instances"]?.arrayValue ?? []
            return listed.contains { $0["instance"] == .string("web-1") && $0["applied_version"] == .integer(1) }
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func silentInstancesAreForgottenAfterTheirTTL() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker, environment: ["CONFBUS_INSTANCE_TTL": "1s"])
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        try await probe.publish(confbus.topic("register", "billing-api"), #"{"instance": "web-1"}"#)
        func listed() async throws -> [JSONValue] {
            try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
        }
        try await Harness.eventually("the instance is recorded") { try await !listed().isEmpty }
        try await Harness.eventually("the silent instance is forgotten", timeout: .seconds(15)) { try await listed().isEmpty }
    }

    /// An import whose versions break today's schema, or hold U+0000, is refused whole.
    @Test(.timeLimit(.minutes(2)))
    func importsAreValidatedBeforeAnythingIsStored() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (source, _) = try await Harness.startedConfbus(broker: broker)
        defer { source.stop() }
        let exported = try #require(try await source.get("/v1/export?history=true&secrets=true", headers: Self.admin).json)

        // A target whose tree holds billing-api's schema only: it is invalid there, so it has no
        // version, and an import of it is checked against that schema.
        let tree = try Harness.temporaryDirectory("schema-only").appendingPathComponent("config")
        let folder = tree.appendingPathComponent("services/billing-api")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: source.configDir.appendingPathComponent("services/billing-api/schema.yaml"),
                                         to: folder.appendingPathComponent("schema.yaml"))
        let target = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await target.start()
        defer { target.stop() }

        let tooBig = Self.rewriting(exported, service: "billing-api") { config in
            var database = config["database"]?.objectValue ?? [:]
            database["pool_size"] = .integer(999)
            var object = config.objectValue ?? [:]
            object["database"] = .object(database)
            return .object(object)
        }
        let refused = try await target.request("POST", "/v1/import", headers: Self.admin, body: Data(tooBig.serializedBytes()))
        #expect(refused.status == 422)
        #expect(refused.json?["errors"]?.arrayValue?.contains { $0["path"] == .string("/database/pool_size") } == true)
        #expect(try await target.get("/v1/config/billing-api").status == 404)

        let withNUL = Self.rewriting(exported, service: "report-worker") { config in
            var object = config.objectValue ?? [:]
            object["output_bucket"] = .string("s3://a\u{0}b/")
            return .object(object)
        }
        let nul = try await target.request("POST", "/v1/import", headers: Self.admin, body: Data(withNUL.serializedBytes()))
        #expect(nul.status == 422)
        #expect(nul.json?["errors"]?.arrayValue?.contains { $0["path"] == .string("/output_bucket") } == true)
        #expect(try await target.get("/v1/config/report-worker").status == 404)
    }

    /// Every version of `service` in an export with its config rewritten and its checksum made to match.
    static func rewriting(_ export: JSONValue, service: String, _ change: (JSONValue) -> JSONValue) -> JSONValue {
        guard var top = export.objectValue, let services = top["services"]?.arrayValue else { return export }
        top["services"] = .array(services.map { entry in
            guard var s = entry.objectValue, s["service"] == .string(service), let versions = s["versions"]?.arrayValue else { return entry }
            s["versions"] = .array(versions.map { v in
                guard var version = v.objectValue, let config = version["config"] else { return v }
                let changed = change(config)
                version["config"] = changed
                version["checksum"] = .string(changed.checksum)
                return .object(version)
            })
            return .object(s)
        })
        return .object(top)
    }

    /// A file change whose document the broker could never carry makes that service invalid; the
    /// others are unaffected and its last version stays live.
    @Test(.timeLimit(.minutes(2)))
    func aFileTooLargeToPublishMakesOnlyItsServiceInvalid() async throws {
        let broker = try Broker(extra: "max_packet_size 2000")
        try await broker.start()
        defer { broker.stop() }
        let (confbus, tree) = try await Harness.startedConfbus(broker: broker.url)
        defer { confbus.stop() }
        let origins = (0..<100).map { "    - https://origin-\($0).example.com/" }.joined(separator: "\n")
        let billing = tree.appendingPathComponent("services/billing-api/development.yaml")
        try (try String(contentsOf: billing, encoding: .utf8) + "\nhttp:\n  cors_origins:\n\(origins)\n").write(to: billing, atomically: true, encoding: .utf8)
        let worker = tree.appendingPathComponent("services/report-worker/development.yaml")
        try (try String(contentsOf: worker, encoding: .utf8)).replacingOccurrences(of: "concurrency: 2", with: "concurrency: 3")
            .write(to: worker, atomically: true, encoding: .utf8)
        let report = try #require(try await confbus.reload().json)
        #expect(report["failed"]?["billing-api"]?.arrayValue?.first?["code"] == .string("too_large_to_publish"))
        #expect(report["committed"]?.arrayValue?.contains { $0["service"] == .string("report-worker") } == true)
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1])
        let listed = try await confbus.get("/v1/services").json?["services"]?.arrayValue ?? []
        #expect(listed.first { $0["service"] == .string("billing-api") }?["state"] == .string("invalid"))
    }
}

@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct BrokerReadinessTests {
    /// The broker stopped and started under a running node: /readyz follows within 5 s both ways.
    @Test(.timeLimit(.minutes(2)))
    func readinessFollowsTheBrokerBothWays() async throws {
        let broker = try Broker()
        try await broker.start()
        defer { broker.stop() }
        let (confbus, _) = try await Harness.startedConfbus(broker: broker.url)
        defer { confbus.stop() }
        let down = try await FaultIsolationTests.readyzTurns(503, confbus) { broker.stop() }
        let up = try await FaultIsolationTests.readyzTurns(200, confbus) { try await broker.start() }
        print("fault timing: /readyz 503 \(down) after the broker stopped, 200 \(up) after it started")
        #expect(down < .seconds(5))
        #expect(up < .seconds(5))
    }
}
