import ConfbusCore
import Foundation
import Testing

/// Issue 7: a single fault stays local. Each test injects one fault against real PostgreSQL and
/// mosquitto processes and checks that everything else goes on.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct FaultIsolationTests {
    static let admin = ["Authorization": "Bearer \(Confbus.adminToken)", "Content-Type": "application/json", "X-Confbus-Reason": "test"]

    static func body(_ text: String) -> Data { Data(text.utf8) }


    /// Injects `fault`, then measures how long until `/readyz` answers `status`.
    static func readyzTurns(_ status: Int, _ confbus: Confbus, after fault: () async throws -> Void) async throws -> Duration {
        try await fault()
        let start = ContinuousClock.now
        try await Harness.eventually("/readyz answers \(status)", timeout: .seconds(15)) { try await confbus.get("/readyz").status == status }
        return ContinuousClock.now - start
    }

    /// A broker whose ACL refuses one update topic (PUBACK 0x87): every other service is still
    /// published, at start-up and afterwards; the refused one is counted and shows in health.
    @Test(.timeLimit(.minutes(2)))
    func aRefusedTopicHoldsBackNoOtherService() async throws {
        let tree = try Harness.copyOfExampleTree()
        let prefix = "t\(UUID().uuidString.prefix(8).lowercased())"
        let dir = try Harness.temporaryDirectory("acl-one")
        let acl = dir.appendingPathComponent("acl")
        try """
            topic read \(prefix)/update/+
            topic readwrite \(prefix)/update/feature-flags
            topic readwrite \(prefix)/update/report-worker
            topic readwrite \(prefix)/register/#
            topic readwrite \(prefix)/ack/#
            topic readwrite \(prefix)/health/#
            topic readwrite \(prefix)/error/#
            """.write(to: acl, atomically: true, encoding: .utf8)
        if getuid() == 0 { chown(dir.path, mosquittoUID(), 0); chown(acl.path, mosquittoUID(), 0) }
        let broker = try Broker(extra: "acl_file \(acl.path)")
        try await broker.start()
        defer { broker.stop() }
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker.url)
        confbus.prefixOverride = prefix
        let probe = try await MQTTProbe(url: broker.url)
        defer { Task { await probe.shutdown() } }
        try probe.subscribe("\(prefix)/update/+")
        try probe.subscribe("\(prefix)/health/_confbus/+")
        let started = ContinuousClock.now
        try await confbus.start()
        defer { confbus.stop() }

        // billing-api sorts first and is refused; the two after it are published all the same.
        for service in ["feature-flags", "report-worker"] {
            _ = try await probe.waitFor("\(prefix)/update/\(service)") { $0.json?["version"] == .integer(1) }
        }
        print("fault timing: services after a refused topic published \(ContinuousClock.now - started) after start")
        #expect(probe.messages(on: "\(prefix)/update/billing-api").isEmpty)

        // Afterwards too: a change to another service goes out while billing-api keeps failing.
        let patched = try await confbus.request("PATCH", "/v1/config/report-worker/override", headers: Self.admin,
                                                body: Self.body(#"{"concurrency": 3}"#))
        #expect(patched.status == 200)
        _ = try await probe.waitFor("\(prefix)/update/report-worker") { $0.json?["version"] == .integer(2) }

        let health = try await probe.waitFor("\(prefix)/health/_confbus/\(confbus.node)") { ($0.json?["outbox_backlog"]?.doubleValue ?? 0) >= 1 }
        #expect(health.json?["status"] == .string("online"))
        let metrics = String(decoding: try await confbus.get("/metrics").body, as: UTF8.self)
        #expect(metrics.contains(#"confbus_publish_failures_total{reason="refused_0x87"}"#))
        #expect(probe.messages(on: "\(prefix)/update/billing-api").isEmpty)
    }

    /// A broker with a small `max_packet_size`: confbus learns it from CONNACK and refuses, before
    /// commit, a document it could never publish (413 `too_large_to_publish`); smaller ones pass.
    @Test(.timeLimit(.minutes(2)))
    func aDocumentTooLargeToPublishIsNeverCommitted() async throws {
        let broker = try Broker(extra: "max_packet_size 2000")
        try await broker.start()
        defer { broker.stop() }
        let (confbus, _) = try await Harness.startedConfbus(broker: broker.url)
        defer { confbus.stop() }
        let origins = (0..<100).map { "\"https://origin-\($0).example.com/\"" }.joined(separator: ",")
        let big = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: Self.admin,
                                            body: Self.body(#"{"http": {"cors_origins": [\#(origins)]}}"#))
        #expect(big.status == 413)
        #expect(big.headers["content-type"]?.contains("problem+json") == true)
        #expect(big.json?["type"]?.stringValue?.hasSuffix("too_large_to_publish") == true)
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1])

        let small = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: Self.admin,
                                              body: Self.body(#"{"http": {"cors_origins": ["https://one.example.com/"]}}"#))
        #expect(small.status == 200)
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2])

        // U+0000 can never be carried: 422 with its path, nothing stored.
        let nul = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: Self.admin,
                                            body: Self.body(#"{"support_email": "a\u0000b@example.com"}"#))
        #expect(nul.status == 422)
        #expect(nul.json?["errors"]?.arrayValue?.first?["path"] == .string("/support_email"))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2])

        // A body over max_document_bytes is 413, for JSON and YAML alike (it was a 500).
        let huge = Data(repeating: 0x20, count: (1 << 20) + 10)
        for type in ["application/json", "application/yaml"] {
            var headers = Self.admin
            headers["Content-Type"] = type
            let answer = try await confbus.request("PUT", "/v1/config/billing-api/override", headers: headers, body: huge)
            #expect(answer.status == 413, "\(type)")
        }
    }

    /// Two nodes on one database: concurrent PATCHes spread over both, with reloads on both,
    /// lose nothing (the override layer is read under the row lock in the commit's transaction).
    @Test(.timeLimit(.minutes(3)))
    func twoNodesRacingPatchesAgainstReloadsLoseNothing() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (a, b, database) = try await Harness.twoNodes(broker: broker)
        try await a.start()
        defer { a.stop() }
        try await b.start()
        defer { b.stop() }
        let count = 30
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                let node = i % 2 == 0 ? a : b
                group.addTask {
                    let r = try? await node.request("PATCH", "/v1/config/feature-flags/override", headers: Self.admin,
                                                    body: Self.body(#"{"flags": {"race_\#(i)": {"enabled": true}}}"#))
                    #expect(r?.status == 200, "patch \(i): \(r.map { String(decoding: $0.body, as: UTF8.self) } ?? "no answer")")
                }
                if i % 5 == 0 {
                    group.addTask { _ = try? await (i % 2 == 0 ? b : a).reload() }
                }
            }
        }
        for node in [a, b] { _ = try await node.reload() }
        let latest = try #require(try await a.get("/v1/config/feature-flags").json)
        let flags = latest["config"]?["flags"]?.objectValue ?? [:]
        let missing = (0..<count).filter { flags["race_\($0)"] == nil }
        #expect(missing.isEmpty, "patches lost or reverted: \(missing)")
        // Versions stay consecutive.
        let versions = try await Harness.versions(in: database, service: "feature-flags")
        #expect(versions == Array(1...(versions.last ?? 0)))
    }

    /// The node that relays is killed mid-drain: the other takes the lease over (a higher epoch)
    /// within 10 s and publishes what was committed; nothing is lost.
    @Test(.timeLimit(.minutes(3)))
    func anotherNodeTakesOverTheRelay() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (a, b, _) = try await Harness.twoNodes(broker: broker)
        try await a.start()
        defer { a.stop() }
        try await b.start()
        defer { b.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(a.topic("update", "+"))
        try probe.subscribe(a.topic("health", "_confbus/+"))
        var relaying: Confbus?
        try await Harness.eventually("one node holds the relay lease") {
            for node in [a, b] where probe.messages(on: a.topic("health", "_confbus/\(node.node)")).last?.json?["relay"] == .bool(true) {
                relaying = node
            }
            return relaying != nil
        }
        let holder = try #require(relaying)
        let other = holder === a ? b : a
        let epoch = probe.messages(on: a.topic("health", "_confbus/\(holder.node)")).last?.json?["epoch"]?.doubleValue ?? 0
        // Commits pile up; the relay dies in the middle of them.
        for i in 0..<5 {
            let r = try await other.request("PATCH", "/v1/config/report-worker/override", headers: Self.admin,
                                            body: Self.body(#"{"concurrency": \#(i + 3)}"#))
            #expect(r.status == 200)
            if i == 2 { holder.kill9() }
        }
        let killed = ContinuousClock.now
        _ = try await probe.waitFor(a.topic("update", "report-worker"), timeout: .seconds(20)) { $0.json?["version"] == .integer(6) }
        let takeover = ContinuousClock.now - killed
        print("fault timing: relay takeover after kill -9 published the latest version in \(takeover)")
        #expect(takeover < .seconds(12))
        let health = try await probe.waitFor(a.topic("health", "_confbus/\(other.node)")) { $0.json?["relay"] == .bool(true) }
        #expect((health.json?["epoch"]?.doubleValue ?? 0) > epoch)
    }

    /// Idempotency under concurrency: two identical batches with one key at once; one commits,
    /// the other gets its stored answer (never a 500, never two versions).
    @Test(.timeLimit(.minutes(2)))
    func concurrentRequestsWithOneIdempotencyKeyCommitOnce() async throws {
        let (confbus, _) = try await Harness.startedConfbus(broker: try #require(TestServers.mqttURL))
        defer { confbus.stop() }
        var keyed = Self.admin
        keyed["Idempotency-Key"] = "key-\(UUID().uuidString)"
        let headers = keyed
        let body = Self.body(#"{"reason": "twice", "updates": [{"service": "report-worker", "patch": {"concurrency": 7}}]}"#)
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<4 { group.addTask { (try? await confbus.request("POST", "/v1/batch", headers: headers, body: body).status) ?? -1 } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses.allSatisfy { $0 == 200 || $0 == 409 }, "\(statuses)")
        #expect(statuses.contains(200))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "report-worker") == [1, 2])
    }
}

@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct DatabaseOutageTests {
    /// PostgreSQL stopped and started under a running node: /readyz follows within 5 s both ways,
    /// writes answer 503 (never 500), reads are served from memory marked stale.
    @Test(.timeLimit(.minutes(2)))
    func readinessFollowsTheDatabaseBothWays() async throws {
        let postgres = try await PrivatePostgres.make()
        try await postgres.starting()
        defer { postgres.stop() }
        let confbus = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: postgres.url,
                                  mqttURL: try #require(TestServers.mqttURL))
        try await confbus.start()
        defer { confbus.stop() }

        let down = try await FaultIsolationTests.readyzTurns(503, confbus) { await postgres.stopping() }
        print("fault timing: /readyz 503 \(down) after PostgreSQL stopped")
        #expect(down < .seconds(5))
        let write = try await confbus.request("PATCH", "/v1/config/report-worker/override", headers: FaultIsolationTests.admin,
                                              body: Data(#"{"concurrency": 3}"#.utf8))
        #expect(write.status == 503)
        let read = try await confbus.get("/v1/config/report-worker")
        #expect(read.status == 200)
        #expect(read.headers["confbus-stale"] == "true")

        let up = try await FaultIsolationTests.readyzTurns(200, confbus) { try await postgres.starting() }
        print("fault timing: /readyz 200 \(up) after PostgreSQL started")
        #expect(up < .seconds(5))
        let retried = try await confbus.request("PATCH", "/v1/config/report-worker/override", headers: FaultIsolationTests.admin,
                                                body: Data(#"{"concurrency": 3}"#.utf8))
        #expect(retried.status == 200)
    }
}
