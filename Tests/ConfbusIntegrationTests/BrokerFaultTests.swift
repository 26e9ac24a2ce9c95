import ConfbusCore
import Foundation
import Testing

/// The broker's own faults, each against a real mosquitto: paused, its session taken over, and
/// messages larger than confbus announced it accepts.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct BrokerFaultTests {
    /// A broker that stops answering with its TCP connection open (SIGSTOP) is noticed by the
    /// liveness probe, not only after libmosquitto's 7.5 s keepalive: `/readyz` 503 within 5 s,
    /// and 200 again soon after it answers.
    @Test(.timeLimit(.minutes(2)))
    func aPausedBrokerTurnsReadinessWithinFiveSeconds() async throws {
        let broker = try Broker()
        try await broker.start()
        defer { broker.stop() }
        let (confbus, _) = try await Harness.startedConfbus(broker: broker.url)
        defer { confbus.stop() }
        let pid = try #require(broker.process?.processIdentifier)
        defer { kill(pid, SIGCONT) }
        let down = try await FaultIsolationTests.readyzTurns(503, confbus) { kill(pid, SIGSTOP) }
        print("fault timing: /readyz 503 \(down) after the broker was paused")
        #expect(down <= Duration.seconds(5), "a paused broker must turn /readyz 503 within 5 s, took \(down)")
        #expect(try await confbus.get("/healthz").status == 200, "the process itself stays healthy")
        let up = try await FaultIsolationTests.readyzTurns(200, confbus) { kill(pid, SIGCONT) }
        print("fault timing: /readyz 200 \(up) after the broker was resumed")
        #expect(up <= Duration.seconds(5))
        // And it publishes again.
        let probe = try await MQTTProbe(url: broker.url)
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(confbus.topic("update", "billing-api"))
        let patched = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: FaultIsolationTests.admin,
                                                body: FaultIsolationTests.body(#"{"log_level": "debug"}"#))
        #expect(patched.status == 200)
        _ = try await probe.waitFor(confbus.topic("update", "billing-api")) { $0.text.contains("\"log_level\":\"debug\"") }
    }

    /// Another client connecting with confbus's client id takes its session over (0x8E): confbus
    /// counts it in the health payload, comes back, and goes on publishing.
    @Test(.timeLimit(.minutes(2)))
    func aSessionTakeoverIsCountedAndSurvived() async throws {
        let broker = try Broker()
        try await broker.start()
        defer { broker.stop() }
        let (confbus, _) = try await Harness.startedConfbus(broker: broker.url)
        defer { confbus.stop() }
        let watcher = try await MQTTProbe(url: broker.url)
        defer { Task { await watcher.shutdown() } }
        let health = confbus.topic("health", "_confbus/\(confbus.node)")
        try watcher.subscribe(health)
        try watcher.subscribe(confbus.topic("update", "billing-api"))

        let intruder = try await MQTTProbe(url: broker.url, clientID: "confbus-\(confbus.node)")
        try await Task.sleep(for: .seconds(3))
        await intruder.shutdown()
        // Both sides back off: a handful of takeovers in 3 s, not a tight loop of hundreds.
        let log = try String(contentsOf: broker.directory.appendingPathComponent("broker.log"), encoding: .utf8)
        let takeovers = log.components(separatedBy: "already connected, closing old connection").count - 1
        print("fault timing: \(takeovers) session takeovers in 3 s of a duplicate client id")
        #expect(takeovers >= 2 && takeovers < 40, "\(takeovers) takeovers in 3 s")

        let report = try await watcher.waitFor(health, timeout: .seconds(20)) { message in
            guard case .integer(let n)? = (try? JSONParser().parse(message.payload))?["session_takeovers"] else { return false }
            return n >= 1
        }
        #expect(report.text.contains("\"status\":\"online\""), "a takeover is not a fault of the node: \(report.text)")
        try await Harness.eventually("confbus is ready again") { try await confbus.get("/readyz").status == 200 }
        let patched = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: FaultIsolationTests.admin,
                                                body: FaultIsolationTests.body(#"{"log_level": "debug"}"#))
        #expect(patched.status == 200)
        _ = try await watcher.waitFor(confbus.topic("update", "billing-api")) { $0.text.contains("\"log_level\":\"debug\"") }
    }

    /// confbus announces Maximum Packet Size in CONNECT, so the broker never delivers it a
    /// message larger than a document may be: an oversized registration is dropped by the broker
    /// (no error reply, nothing parsed), and the next normal one is handled.
    @Test(.timeLimit(.minutes(2)))
    func theBrokerDropsWhatIsLargerThanConfbusAnnounced() async throws {
        let (confbus, _) = try await Harness.startedConfbus(broker: try #require(TestServers.mqttURL),
                                                            environment: ["CONFBUS_MAX_DOCUMENT_BYTES": "2048"])
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: try #require(TestServers.mqttURL))
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(confbus.topic("error", "billing-api"))
        // Larger than 2048 + 1024 bytes: without the CONNECT property confbus would receive it and
        // answer document_too_large on config/error/billing-api.
        let big = #"{"instance": "big-1", "padding": "\#(String(repeating: "x", count: 8000))"}"#
        try await probe.publish(confbus.topic("register", "billing-api"), big)
        // Slightly above 2048 but under the announced limit: confbus receives and refuses it itself.
        let refused = #"{"instance": "mid-1", "padding": "\#(String(repeating: "y", count: 2100))"}"#
        try await probe.publish(confbus.topic("register", "billing-api"), refused)
        let reply = try await probe.waitFor(confbus.topic("error", "billing-api"))
        #expect(reply.text.contains("too_large") || reply.text.contains("too large"), "the mid-sized one is refused by confbus: \(reply.text)")
        try await probe.publish(confbus.topic("register", "billing-api"), #"{"instance": "ok-1"}"#)
        try await Harness.eventually("the normal registration is recorded") {
            let answer = try await confbus.get("/v1/services/billing-api/instances")
            return answer.status == 200 && answer.text.contains("ok-1")
        }
        try await Task.sleep(for: .milliseconds(500))
        #expect(probe.messages(on: confbus.topic("error", "billing-api")).count == 1,
                "only the mid-sized registration got a reply; the broker dropped the large one")
        #expect(!(try await confbus.get("/v1/services/billing-api/instances").text.contains("big-1")))
    }
}

/// The MQTT inbox: one service whose database writes are stuck (its instance row locked by
/// another transaction) holds up no other service, and its own messages are handled in order
/// once the lock goes.
@Suite(.requiresPostgres, .requiresMQTT)
struct InboxIsolationTests {
    @Test(.timeLimit(.minutes(2)))
    func aStuckServiceHoldsUpNoOther() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        func instances(_ service: String) async throws -> [JSONValue] {
            guard case .array(let list)? = try await confbus.get("/v1/services/\(service)/instances").json?["instances"] else { return [] }
            return list
        }
        try await probe.publish(confbus.topic("register", "billing-api"), #"{"instance": "stuck-1"}"#)
        try await Harness.eventually("the first registration") { try await instances("billing-api").count == 1 }

        let locked = AsyncStream<Void>.makeStream()
        let release = AsyncStream<Void>.makeStream()
        let holder = Task {
            try await Harness.withPostgres(confbus.databaseURL) { client in
                try await client.withTransaction(logger: Harness.logger) { connection in
                    try await connection.query("SELECT 1 FROM instances WHERE service = 'billing-api' FOR UPDATE", logger: Harness.logger)
                    locked.continuation.yield()
                    for await _ in release.stream { break }
                }
            }
        }
        defer { release.continuation.yield(); holder.cancel() }
        for await _ in locked.stream { break }

        // billing-api's next messages wait on the lock; report-worker's go straight through.
        try await probe.publish(confbus.topic("health", "billing-api/stuck-1"), #"{"status": "degraded"}"#)
        try await probe.publish(confbus.topic("register", "billing-api"), #"{"instance": "stuck-2"}"#)
        let sent = ContinuousClock.now
        try await probe.publish(confbus.topic("register", "report-worker"), #"{"instance": "free-1"}"#)
        try await Harness.eventually("the other service's registration", timeout: .seconds(5)) {
            try await instances("report-worker").count == 1
        }
        print("fault timing: another service's registration recorded \(ContinuousClock.now - sent) after it was sent, one service stuck")
        #expect(try await instances("billing-api").count == 1, "the stuck service's registration is still waiting")

        release.continuation.yield()
        _ = try await holder.value
        try await Harness.eventually("the stuck service catches up, in order") {
            let list = try await instances("billing-api")
            return list.count == 2 && list.first?["health"] == "degraded"
        }
    }
}
