import ConfbusCore
import Foundation
import Synchronization
import Testing

/// One instance of a service as CONTRACT.md §8 says it behaves, over its own MQTT connection: it
/// subscribes to the update and rollout topics, reports its health, registers with the rollout
/// feature, and answers each version it is given (the candidate only when the cohort names it).
final class FleetInstance: Sendable {
    /// `reject` and `silent` refuse or ignore a candidate; every one applies released versions.
    enum Behaviour: Sendable { case apply, reject, silent }

    let id: String
    let service: String
    let confbus: Confbus
    let probe: MQTTProbe
    let behaviour: Behaviour
    /// Every version it took, in order, and from which topic.
    let taken = Mutex<[(version: Int, topic: String)]>([])
    private let task = Mutex<Task<Void, Never>?>(nil)

    init(_ id: String, service: String = "billing-api", confbus: Confbus, broker: String, behaviour: Behaviour = .apply) async throws {
        self.id = id
        self.service = service
        self.confbus = confbus
        self.behaviour = behaviour
        probe = try await MQTTProbe(url: broker, name: id)
    }

    var held: Int { taken.withLock { $0.last?.version ?? 0 } }
    var versions: [Int] { taken.withLock { $0.map(\.version) } }
    func took(from kind: String) -> [Int] { taken.withLock { $0.filter { $0.topic == confbus.topic(kind, service) }.map(\.version) } }

    func start() async throws {
        try probe.subscribe(confbus.topic("update", service))
        try probe.subscribe(confbus.topic("rollout", service))
        try await health("online")
        try await probe.publish(confbus.topic("register", service), #"{"instance": "\#(id)", "features": ["rollout"]}"#)
        let work = Task { [self] in
            var seen = 0
            while !Task.isCancelled {
                let messages = probe.messages
                for message in messages.dropFirst(seen) { await handle(message) }
                seen = messages.count
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        task.withLock { $0 = work }
    }

    func health(_ status: String) async throws {
        try await probe.publish(confbus.topic("health", "\(service)/\(id)"), #"{"status": "\#(status)"}"#, retain: true)
    }

    private func handle(_ message: MQTTProbe.Message) async {
        guard let document = message.json, let version = document["version"]?.integralValue, version > held else { return }
        if message.topic == confbus.topic("rollout", service) {
            guard document["cohort"]?.arrayValue?.contains(.string(id)) == true else { return }
        }
        let ack = confbus.topic("ack", "\(service)/\(id)")
        switch behaviour {
        case .silent where message.topic == confbus.topic("rollout", service):
            return
        case .reject where message.topic == confbus.topic("rollout", service):
            try? await probe.publish(ack, #"{"version": \#(version), "status": "rejected", "detail": "pool too small for this host"}"#)
        case .apply, .reject, .silent:
            taken.withLock { $0.append((version, message.topic)) }
            try? await probe.publish(ack, #"{"version": \#(version), "status": "applied"}"#)
        }
    }

    func stop() async {
        task.withLock { $0 }?.cancel()
        await probe.shutdown()
    }
}

/// Rollouts (CONTRACT.md §8, issue 11) against the real PostgreSQL and mosquitto, with ten
/// instances on their own connections.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct RolloutTests {
    static let admin = ["Authorization": "Bearer \(Confbus.adminToken)", "Content-Type": "application/json", "X-Confbus-Reason": "test"]

    /// A started confbus with a fleet of ten registered instances (`behaviours` overrides some),
    /// each holding version 1.
    static func fleet(_ confbus: Confbus, broker: String, behaviours: [String: FleetInstance.Behaviour] = [:]) async throws -> [FleetInstance] {
        var fleet: [FleetInstance] = []
        for n in 1...10 {
            let id = "i-\(n)"
            let instance = try await FleetInstance(id, confbus: confbus, broker: broker, behaviour: behaviours[id] ?? .apply)
            try await instance.start()
            fleet.append(instance)
        }
        try await Harness.eventually("every instance is registered and runs version 1") {
            let listed = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return listed.count == 10 && listed.allSatisfy { $0["applied_version"] == .integer(1) && $0["features"] == ["rollout"] }
        }
        return fleet
    }


    /// A started confbus and a probe subscribed to billing-api's update and rollout topics.
    static func watched(_ broker: String) async throws -> (Confbus, MQTTProbe, updates: String, rollouts: String) {
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        let watcher = try await MQTTProbe(url: broker, name: "watcher")
        let (updates, rollouts) = (confbus.topic("update", "billing-api"), confbus.topic("rollout", "billing-api"))
        try watcher.subscribe(updates)
        try watcher.subscribe(rollouts)
        return (confbus, watcher, updates, rollouts)
    }

    static func start(_ confbus: Confbus, _ body: String) async throws -> Confbus.HTTPResult {
        try await confbus.request("POST", "/v1/config/billing-api/rollouts", headers: admin, body: Data(body.utf8))
    }

    static func rollout(_ confbus: Confbus, _ id: String) async throws -> JSONValue {
        try #require(try await confbus.get("/v1/rollouts/\(id)").json)
    }

    static func finished(_ confbus: Confbus, _ id: String, timeout: Duration = .seconds(30)) async throws -> JSONValue {
        try await Harness.eventually("rollout \(id) finishes", timeout: timeout) { try await rollout(confbus, id)["state"] != "running" }
        return try await rollout(confbus, id)
    }

    /// The cohorts published on the rollout topic, in order (an empty message is nil).
    static func cohorts(_ probe: MQTTProbe, _ topic: String) -> [[String]?] {
        probe.messages(on: topic).map { m in m.payload.isEmpty ? nil : m.json?["cohort"]?.arrayValue?.compactMap(\.stringValue) }
    }

    @Test(.timeLimit(.minutes(2)))
    func aRolloutCompletesStepByStepAndOnlyItsCohortSeesTheCandidate() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, watcher, updates, rollouts) = try await Self.watched(broker)
        defer { confbus.stop() }
        defer { Task { await watcher.shutdown() } }
        let fleet = try await Self.fleet(confbus, broker: broker)
        defer { Task { for i in fleet { await i.stop() } } }

        let started = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 40}}, "steps": [10, 50, 100], "bake": "1s", "ack_timeout": "20s"}"#)
        #expect(started.status == 201, "\(started.text)")
        let body = try #require(started.json)
        let id = try #require(body["id"]?.stringValue)
        #expect(body["state"] == "running" && body["step"] == .integer(1) && body["stable_version"] == .integer(1)
                && body["candidate_version"] == .integer(2), "\(body)")
        let first = body["cohort"]?.arrayValue?.compactMap(\.stringValue) ?? []
        #expect(first.count == 1, "ceil(10% of 10) is one instance: \(first)")
        try #require(first.count >= 1, "\(body)")
        #expect(started.headers["location"] == "/v1/rollouts/\(id)")

        // While it runs: the released version is 1 for everyone but the cohort, other writes are 409.
        #expect(try await confbus.get("/v1/config/billing-api").json?["version"] == .integer(1))
        #expect(try await confbus.get("/v1/config/billing-api?instance=\(first[0])").json?["version"] == .integer(2))
        let outsider = fleet.map(\.id).first { !first.contains($0) } ?? "none"
        #expect(try await confbus.get("/v1/config/billing-api?instance=\(outsider)").json?["version"] == .integer(1))
        // A long-poll too: the member is answered at once, the outsider waits and gets 304.
        #expect(try await confbus.get("/v1/config/billing-api?instance=\(first[0])&wait=5&after=1").json?["version"] == .integer(2))
        #expect(try await confbus.get("/v1/config/billing-api?instance=\(outsider)&wait=1&after=1").status == 304)
        #expect(try await confbus.get("/v1/config/billing-api?instance=not%20an%20id").status == 400)
        let patch = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: Self.admin,
                                              body: Data(#"{"log_level": "error"}"#.utf8))
        #expect(patch.status == 409 && patch.json?["type"]?.stringValue?.hasSuffix("/rollout_in_progress") == true, "\(patch.text)")
        let batch = try await confbus.request("POST", "/v1/batch", headers: Self.admin,
                                              body: Data(#"{"updates": [{"service": "billing-api", "patch": {"log_level": "error"}}]}"#.utf8))
        #expect(batch.status == 409, "\(batch.text)")
        let second = try await Self.start(confbus, #"{"patch": {"log_level": "error"}}"#)
        #expect(second.status == 409, "one rollout per service: \(second.text)")
        #expect(!watcher.messages(on: updates).contains { $0.json?["version"] == .integer(2) }, "the candidate is not on config/update while it runs")
        let services = try await confbus.get("/v1/services").json?["services"]?.arrayValue?.first { $0["service"] == "billing-api" }
        #expect(services?["released_version"] == .integer(1) && services?["candidate_version"] == .integer(2), "\(String(describing: services))")

        let done = try await Self.finished(confbus, id)
        #expect(done["state"] == "completed", "\(done)")
        #expect(done["acks"] == ["applied": 10, "rejected": 0, "pending": 0], "\(done)")
        _ = try await watcher.waitFor(updates) { $0.json?["version"] == .integer(2) }
        _ = try await watcher.waitFor(rollouts) { $0.payload.isEmpty }
        #expect(try await confbus.get("/v1/config/billing-api").json?["config"]?["database"]?["pool_size"] == .integer(40))

        // Each step's cohort holds the one before; the update topic never carried the candidate before the end.
        let published = Self.cohorts(watcher, rollouts).compactMap { $0 }
        #expect(published.map(\.count) == [1, 5, 10], "\(published)")
        for (earlier, later) in zip(published, published.dropFirst()) { #expect(Set(earlier).isSubset(of: Set(later))) }
        // (A version may come twice: retained on subscribing, and again from reconcile.)
        let updateVersions = watcher.messages(on: updates).compactMap { $0.json?["version"]?.integralValue }
        #expect(updateVersions.contains(2) && updateVersions.drop(while: { $0 == 1 }).allSatisfy { $0 == 2 }, "\(updateVersions)")
        // Every instance took the candidate from the rollout topic while it was in the cohort, and only then.
        for instance in fleet {
            #expect(instance.versions == [1, 2], "\(instance.id): \(instance.versions)")
            #expect(instance.took(from: "rollout") == [2], "\(instance.id) took the candidate as a cohort member")
        }
        let history = try await confbus.get("/v1/config/billing-api/history").json?["versions"]?.arrayValue ?? []
        #expect(history.first?["source"] == "rollout" && history.first?["version"] == .integer(2))
        let audit = try await confbus.get("/v1/audit?service=billing-api", headers: Self.admin).json?["entries"]?.arrayValue ?? []
        let actions = audit.compactMap { $0["action"]?.stringValue }.filter { $0.hasPrefix("rollout.") }
        #expect(actions == ["rollout.complete", "rollout.step", "rollout.step", "rollout.start"], "\(actions)")
        let listed = try await confbus.get("/v1/config/billing-api/rollouts").json?["rollouts"]?.arrayValue ?? []
        #expect(listed.map { $0["id"] } == [.string(id)])
        // Metrics: rollouts by state, the running ones, the lagging instances (none now).
        try await Harness.eventually("the gauges are sampled with nothing running or lagging") {
            let metrics = try await confbus.get("/metrics").text
            return metrics.contains("confbus_rollouts_running 0") && metrics.contains("confbus_lagging_instances 0")
        }
        let metrics = try await confbus.get("/metrics").text
        #expect(metrics.contains(#"confbus_rollouts_total{state="started"} 1"#) && metrics.contains(#"confbus_rollouts_total{state="completed"} 1"#),
                "\(metrics.split(separator: "\n").filter { $0.contains("rollout") })")
    }

    @Test(.timeLimit(.minutes(2)))
    func aRejectedAckRollsBackToTheStableConfig() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, watcher, updates, rollouts) = try await Self.watched(broker)
        defer { confbus.stop() }
        defer { Task { await watcher.shutdown() } }
        let fleet = try await Self.fleet(confbus, broker: broker, behaviours: ["i-3": .reject])
        defer { Task { for i in fleet { await i.stop() } } }

        let started = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 40}}, "steps": [100], "bake": "1s"}"#)
        let id = try #require(started.json?["id"]?.stringValue, "\(started.text)")
        let done = try await Self.finished(confbus, id)
        #expect(done["state"] == "rolled_back", "\(done)")
        let reason = done["rollback_reason"]?.stringValue ?? ""
        #expect(reason.contains("i-3") && reason.contains("pool too small"), "the reason names the instance and its detail: \(reason)")
        #expect(done["instances"]?.arrayValue?.first { $0["instance"] == "i-3" }?["answer"] == "rejected")

        // Version 3 holds version 1's config, published to everyone; the rollout topic is cleared.
        let update = try await watcher.waitFor(updates) { $0.json?["version"] == .integer(3) }
        #expect(update.json?["config"]?["database"]?["pool_size"] == .integer(10))
        _ = try await watcher.waitFor(rollouts) { $0.payload.isEmpty }
        let history = try await confbus.get("/v1/config/billing-api/history").json?["versions"]?.arrayValue ?? []
        #expect(history.first?["source"] == "rollback" && history.first?["reason"]?.stringValue?.contains(id) == true, "\(history)")
        #expect(!watcher.messages(on: updates).contains { $0.json?["version"] == .integer(2) }, "the candidate never went to config/update")
        try await Harness.eventually("the instances that took the candidate run version 3") {
            fleet.filter { $0.id != "i-3" }.allSatisfy { $0.held == 3 }
        }
        // The override layer is version 1's again: a later edit starts from it.
        let patched = try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: Self.admin,
                                                body: Data(#"{"log_level": "error"}"#.utf8))
        #expect(patched.status == 200 && patched.json?["config"]?["database"]?["pool_size"] == .integer(10), "\(patched.text)")
    }

    @Test(.timeLimit(.minutes(2)))
    func anAckTimeoutAndAMemberGoingOfflineRollBack() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let fleet = try await Self.fleet(confbus, broker: broker, behaviours: ["i-7": .silent])
        defer { Task { for i in fleet { await i.stop() } } }

        let timedOut = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 40}}, "steps": [100], "ack_timeout": "3s", "bake": "1s"}"#)
        let first = try #require(timedOut.json?["id"]?.stringValue, "\(timedOut.text)")
        // The drift view while it waits: nine applied, the silent one pending, per service and per instance.
        try await Harness.eventually("nine members applied", timeout: .seconds(3)) {
            let view = try await confbus.get("/v1/services/billing-api/instances").json
            return view?["rollout"]?["applied"] == .integer(9)
        }
        let drift = try await confbus.get("/v1/services/billing-api/instances").json
        #expect(drift?["released_version"] == .integer(1) && drift?["candidate_version"] == .integer(2), "\(String(describing: drift))")
        #expect(drift?["rollout"]?["pending"] == .integer(1))
        #expect(drift?["instances"]?.arrayValue?.first { $0["instance"] == "i-7" }?["rollout"] == ["in_cohort": true, "answer": "pending"])
        let listed = try await confbus.get("/v1/services").json?["services"]?.arrayValue?.first { $0["service"] == "billing-api" }
        #expect(listed?["rollout"]?["applied"] == .integer(9) && listed?["rollout"]?["cohort"] == .integer(10), "\(String(describing: listed))")
        let done = try await Self.finished(confbus, first)
        #expect(done["state"] == "rolled_back" && done["rollback_reason"]?.stringValue?.contains("did not ack within 3s") == true, "\(done)")
        #expect(done["acks"]?["pending"] == .integer(1), "\(done)")
        #expect(try await confbus.get("/v1/config/billing-api").json?["version"] == .integer(3))

        // Next, without the silent one: every member applies, then one goes offline during the bake.
        try await fleet[6].health("offline")
        await fleet[6].stop()
        try await Harness.eventually("i-7 is known to be offline") {
            let listed = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return listed.first { $0["instance"] == "i-7" }?["health"] == "offline"
        }
        let offline = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 50}}, "steps": [100], "bake": "30s"}"#)
        let second = try #require(offline.json?["id"]?.stringValue, "\(offline.text)")
        #expect(offline.json?["cohort"]?.arrayValue?.count == 9, "an offline instance is not chosen: \(offline.text)")
        try await Harness.eventually("every member applied and the bake began") { try await Self.rollout(confbus, second)["phase"] == "baking" }
        try await fleet[2].health("offline")
        let after = try await Self.finished(confbus, second)
        #expect(after["state"] == "rolled_back" && after["rollback_reason"]?.stringValue?.contains("i-3 went offline") == true, "\(after)")
        #expect(try await confbus.get("/v1/config/billing-api").json?["version"] == .integer(5))
        #expect(try await confbus.get("/v1/config/billing-api").json?["config"]?["database"]?["pool_size"] == .integer(10))
    }

    @Test(.timeLimit(.minutes(2)))
    func promoteReleasesAndAbortRollsBack() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, tree) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let fleet = try await Self.fleet(confbus, broker: broker)
        defer { Task { for i in fleet { await i.stop() } } }

        let started = try await Self.start(confbus, #"{"override": {"database": {"pool_size": 40}}, "steps": [10, 100], "bake": "60s"}"#)
        let id = try #require(started.json?["id"]?.stringValue, "\(started.text)")
        #expect(try await confbus.request("POST", "/v1/rollouts/\(id)/promote").status == 401, "promote needs an admin token")
        let promoted = try await confbus.request("POST", "/v1/rollouts/\(id)/promote", headers: Self.admin)
        #expect(promoted.status == 200 && promoted.json?["state"] == "completed", "\(promoted.text)")
        #expect(try await confbus.get("/v1/config/billing-api").json?["version"] == .integer(2))
        try await Harness.eventually("every instance runs the promoted version") { fleet.allSatisfy { $0.held == 2 } }
        let again = try await confbus.request("POST", "/v1/rollouts/\(id)/abort", headers: Self.admin)
        #expect(again.status == 409 && again.json?["type"]?.stringValue?.hasSuffix("/rollout_finished") == true, "\(again.text)")

        let next = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 60}}, "steps": [50, 100], "bake": "60s"}"#)
        let nextID = try #require(next.json?["id"]?.stringValue, "\(next.text)")
        // A file change meanwhile waits for the rollout's end (not an invalid service, not a 409).
        let defaults = tree.appendingPathComponent("services/billing-api/defaults.yaml")
        try (try String(contentsOf: defaults, encoding: .utf8)).replacingOccurrences(of: "port: 8080", with: "port: 8081")
            .write(to: defaults, atomically: true, encoding: .utf8)
        let reload = try await confbus.reload()
        #expect(reload.status == 200 && reload.json?["deferred"] == ["billing-api"] && reload.json?["failed"] == [:], "\(reload.text)")
        let aborted = try await confbus.request("POST", "/v1/rollouts/\(nextID)/abort", headers: Self.admin.merging(["X-Confbus-Reason": "wrong pool"]) { $1 })
        #expect(aborted.status == 200 && aborted.json?["state"] == "rolled_back", "\(aborted.text)")
        #expect(aborted.json?["rollback_reason"]?.stringValue == "aborted by ops: wrong pool")
        let current = try await confbus.get("/v1/config/billing-api").json
        #expect(current?["version"] == .integer(4) && current?["config"]?["database"]?["pool_size"] == .integer(40), "\(String(describing: current))")
        // The rollout over, the waiting file change is committed on top of the rollback.
        try await Harness.eventually("the deferred file change is committed") {
            try await confbus.get("/v1/config/billing-api").json?["config"]?["http"]?["port"] == .integer(8081)
        }
        let afterFiles = try await confbus.get("/v1/config/billing-api").json
        #expect(afterFiles?["version"] == .integer(5) && afterFiles?["config"]?["database"]?["pool_size"] == .integer(40))
        #expect(try await confbus.get("/v1/rollouts/00000000-0000-0000-0000-000000000000").status == 404)
        for malformed in [#"{}"#, #"{"patch": {"log_level": "error"}, "override": {}}"#, #"{"patch": 1}"#,
                          #"{"patch": {"log_level": "error"}, "bake": "soon"}"#, #"{"patch": {"log_level": "error"}, "steps": "10,100"}"#] {
            let answer = try await Self.start(confbus, malformed)
            #expect(answer.status == 400 && answer.headers["content-type"] == "application/problem+json", "\(malformed): \(answer.text)")
        }
        let bad = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 40}}, "steps": [50, 40]}"#)
        #expect(bad.status == 422 && bad.json?["detail"]?.stringValue?.contains("steps must rise") == true, "\(bad.text)")
        let invalid = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 500}}}"#)
        #expect(invalid.status == 422 && invalid.json?["errors"]?.arrayValue?.first?["path"] == "/database/pool_size", "\(invalid.text)")
        let same = try await Self.start(confbus, #"{"patch": {"database": {"pool_size": 40}}}"#)
        #expect(same.status == 422 && same.json?["type"]?.stringValue?.hasSuffix("/nothing_to_roll_out") == true, "\(same.text)")
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2, 3, 4, 5], "refusals stored nothing")
    }

    @Test(.timeLimit(.minutes(3)))
    func aRolloutSurvivesARestartAndWithTwoNodesOneAdvancesIt() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (a, b, _) = try await Harness.twoNodes(broker: broker)
        try await a.start()
        defer { a.stop(); b.stop() }
        let fleet = try await Self.fleet(a, broker: broker)
        defer { Task { for i in fleet { await i.stop() } } }

        let started = try await Self.start(a, #"{"patch": {"database": {"pool_size": 40}}, "steps": [50, 100], "bake": "3s"}"#)
        let id = try #require(started.json?["id"]?.stringValue, "\(started.text)")
        try await Harness.eventually("step 1 bakes") { try await Self.rollout(a, id)["phase"] == "baking" }
        // The only node stops in the middle of the bake; the rollout waits in PostgreSQL.
        a.stop()
        _ = try await a.waitForExit()
        try await b.start()
        try await a.start()
        let done = try await Self.finished(b, id)
        #expect(done["state"] == "completed" && done["step"] == .integer(2), "\(done)")
        try await Harness.eventually("every instance runs the candidate") { fleet.allSatisfy { $0.held == 2 } }
        // Each step was advanced once, by one node.
        let audit = try await b.get("/v1/audit?service=billing-api", headers: Self.admin).json?["entries"]?.arrayValue ?? []
        #expect(audit.compactMap { $0["action"]?.stringValue }.filter { $0.hasPrefix("rollout.") } == ["rollout.complete", "rollout.step", "rollout.start"])
        let releasing = [a, b].filter { $0.logTail(lines: 100_000).contains("rollout released its candidate") }
        #expect(releasing.count == 1, "exactly one node released it")

        // A second rollout, started on either node, is advanced by the one relaying.
        let next = try await Self.start(b, #"{"patch": {"database": {"pool_size": 45}}, "steps": [100], "bake": "500ms"}"#)
        let nextID = try #require(next.json?["id"]?.stringValue, "\(next.text)")
        #expect(try await Self.finished(a, nextID)["state"] == "completed")
        #expect(try await a.get("/v1/config/billing-api").json?["version"] == .integer(3))
        try await Harness.eventually("node b serves the released version too") { try await b.get("/v1/config/billing-api").json?["version"] == .integer(3) }
    }

    /// The command line runs in a thread of its own: it blocks until the process ends (a watch
    /// lasts as long as the rollout), and the instances must go on answering meanwhile.
    static func cli(_ arguments: [String], _ confbus: Confbus) async throws -> RemoteCLITests.Run {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try RemoteCLITests.cli(arguments, confbus: confbus) })
            }
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func theCommandLineStartsWatchesListsAndAborts() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, tree) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let fleet = try await Self.fleet(confbus, broker: broker, behaviours: ["i-2": .reject])
        defer { Task { for i in fleet { await i.stop() } } }
        let change = tree.deletingLastPathComponent().appendingPathComponent("change.yaml")
        try "database:\n  pool_size: 40\n".write(to: change, atomically: true, encoding: .utf8)

        let started = try await Self.cli(["rollout", "start", "billing-api", "-f", change.path, "--steps", "100", "--bake", "1s",
                                          "--reason", "bigger pool", "--output", "json"], confbus)
        #expect(started.status == 0, "\(started.stderr)")
        let id = try #require((try? JSONParser().parse(Array(started.stdout.utf8)))?["id"]?.stringValue, "\(started.stdout)")
        let watched = try await Self.cli(["rollout", "status", id, "--watch"], confbus)
        #expect(watched.status == 1, "a rollback ends the watch with 1: \(watched.stdout)\(watched.stderr)")
        #expect(watched.stdout.contains("rejected by i-2: pool too small") && watched.stdout.contains("rolled back: "), "\(watched.stdout)")
        let status = try await Self.cli(["rollout", "status", id], confbus)
        #expect(status.status == 0 && status.stdout.contains("rolled_back") && status.stdout.contains("v1 → v2"), "\(status.stdout)")
        let listed = try await Self.cli(["rollout", "list", "billing-api"], confbus)
        #expect(listed.stdout.contains(id) && listed.stdout.contains("rolled_back"), "\(listed.stdout)")

        let next = try await Self.cli(["rollout", "start", "billing-api", "-f", change.path, "--steps", "10,100", "--bake", "60s",
                                       "--output", "json"], confbus)
        let nextID = try #require((try? JSONParser().parse(Array(next.stdout.utf8)))?["id"]?.stringValue, "\(next.stdout)\(next.stderr)")
        let aborted = try await Self.cli(["rollout", "abort", nextID, "--reason", "not today"], confbus)
        #expect(aborted.status == 0 && aborted.stdout.contains("rolled back: aborted by ops: not today"), "\(aborted.stdout)\(aborted.stderr)")
        let twice = try await Self.cli(["rollout", "abort", nextID], confbus)
        #expect(twice.status == 1 && twice.stderr.contains("409"), "\(twice.stderr)")

        try "database:\n  pool_size: 500\n".write(to: change, atomically: true, encoding: .utf8)
        let invalid = try await Self.cli(["rollout", "start", "billing-api", "-f", change.path], confbus)
        #expect(invalid.status == 1 && invalid.stderr.contains("/database/pool_size"), "\(invalid.stderr)")
        let badSteps = try await Self.cli(["rollout", "start", "billing-api", "-f", change.path, "--steps", "ten"], confbus)
        #expect(badSteps.status == 2, "\(badSteps.stderr)")
    }
}
