import ConfbusCore
import ConfbusEngine
import ConfbusYAML
import Foundation
import Testing

/// `confbus serve` against the real PostgreSQL and mosquitto: what issue 3 must show.
/// Each test has its own database, topic prefix, HTTP port and (where it stops one) broker.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct DistributorTests {
    /// What `confbus validate` resolves for the tree: the config the distributor must publish.
    static func expectedConfig(_ tree: URL, _ service: String) throws -> JSONValue {
        let source = FileConfigSource(root: tree.path)
        let resolver = ServiceResolver(options: .init(environment: "development", validator: .init(formatAssertion: true)),
                                       overrides: OverrideVariables(environment: [:]))
        let resolution = resolver.resolve(source.load(try ServiceName(validating: service), environment: "development"), source: source)
        return try #require(resolution.resolved?.config)
    }

    static func sharedBroker() throws -> String { try #require(TestServers.mqttURL, "CONFBUS_TEST_MQTT_URL is not set (run make test)") }

    @Test(.timeLimit(.minutes(2)))
    func publishesEachServiceRetainedAsVersion1() async throws {
        let (confbus, tree) = try await Harness.startedConfbus(broker: try Self.sharedBroker())
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: try Self.sharedBroker())
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(confbus.topic("update", "+"))
        for service in ["billing-api", "feature-flags", "report-worker"] { _ = try await probe.waitFor(confbus.topic("update", service)) }
        // A subscriber that arrives afterwards gets each version at once, as a retained message.
        let late = try await MQTTProbe(url: try Self.sharedBroker(), name: "late")
        defer { Task { await late.shutdown() } }
        try late.subscribe(confbus.topic("update", "+"))
        for service in ["billing-api", "feature-flags", "report-worker"] {
            let message = try await late.waitFor(confbus.topic("update", service))
            #expect(message.retained)
            let document = try #require(message.json)
            let expected = try Self.expectedConfig(tree, service)
            #expect(document["version"] == .integer(1))
            #expect(document["service"] == .string(service))
            #expect(document["environment"] == .string("development"))
            #expect(document["config"] == expected)
            #expect(document["checksum"] == .string(expected.checksum))
            #expect(document["updated_at"]?.stringValue?.hasSuffix("Z") == true)
        }
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1])
    }

    @Test(.timeLimit(.minutes(2)))
    func registrationOfANewServiceCreatesAndPublishesVersion1() async throws {
        let (confbus, tree) = try await Harness.startedConfbus(broker: try Self.sharedBroker())
        defer { confbus.stop() }
        // A service whose files appear after start-up: no version until it registers.
        let services = tree.appendingPathComponent("services")
        try FileManager.default.copyItem(at: services.appendingPathComponent("report-worker"), to: services.appendingPathComponent("late-worker"))
        #expect(try await confbus.get("/v1/config/late-worker").status == 404)

        let probe = try await MQTTProbe(url: try Self.sharedBroker())
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(confbus.topic("update", "late-worker"))
        try probe.subscribe(confbus.topic("error", "#"))
        try await probe.publish(confbus.topic("register", "late-worker"), #"{"instance": "lw-1"}"#)
        let update = try await probe.waitFor(confbus.topic("update", "late-worker"))
        #expect(update.json?["version"] == .integer(1))
        #expect(update.json?["config"] == (try Self.expectedConfig(tree, "late-worker")))

        // Version 1 is published before the registration that made it is stored: wait for the record.
        var listed: JSONValue?
        for _ in 0..<100 {
            listed = try await confbus.get("/v1/services/late-worker/instances").json?["instances"]?.arrayValue?.first?["instance"]
            if listed != nil { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(listed == .string("lw-1"))

        // Refusals come back on config/error/<service>, and nothing is created.
        try await probe.publish(confbus.topic("register", "no-such-service"), #"{"instance": "x-1"}"#)
        let unknown = try await probe.waitFor(confbus.topic("error", "no-such-service"))
        #expect(unknown.json?["error"]?["code"] == .string("unknown_service"))
        #expect(unknown.json?["instance"] == .string("x-1"))
        try await probe.publish(confbus.topic("register", "late-worker"), "not json")
        let malformed = try await probe.waitFor(confbus.topic("error", "late-worker"))
        #expect(malformed.json?["error"]?["code"] == .string("invalid_payload"))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "late-worker") == [1])
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "no-such-service") == [])
    }

    @Test(.timeLimit(.minutes(2)))
    func reloadCommitsVersion2AndAnUnchangedReloadNothing() async throws {
        let (confbus, tree) = try await Harness.startedConfbus(broker: try Self.sharedBroker())
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: try Self.sharedBroker())
        defer { Task { await probe.shutdown() } }
        let topic = confbus.topic("update", "billing-api")
        try probe.subscribe(topic)
        _ = try await probe.waitFor(topic) { $0.json?["version"] == .integer(1) }

        let file = tree.appendingPathComponent("services/billing-api/defaults.yaml")
        try (try String(contentsOf: file, encoding: .utf8)).replacingOccurrences(of: "pool_size: 10", with: "pool_size: 42")
            .write(to: file, atomically: true, encoding: .utf8)
        #expect(try await confbus.request("POST", "/v1/reload").status == 401)
        let reload = try await confbus.reload()
        #expect(reload.status == 200)
        #expect(reload.json?["committed"]?.arrayValue?.first?["version"] == .integer(2))
        let update = try await probe.waitFor(topic) { $0.json?["version"] == .integer(2) }
        #expect(update.json?["config"]?["database"]?["pool_size"] == .integer(42))
        let pulled = try await confbus.get("/v1/config/billing-api")
        #expect(pulled.json?["version"] == .integer(2))
        #expect(pulled.json?["config"]?["database"]?["pool_size"] == .integer(42))

        let again = try await confbus.reload()
        #expect(again.json?["committed"]?.arrayValue == [])
        try await Task.sleep(for: .seconds(1))
        let newer = probe.messages(on: topic).filter { message in (message.json?["version"]?.doubleValue ?? 0) > 2 }
        #expect(newer.count == 0)
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2])

        // A broken file is refused: the last valid version stays live and nothing is stored.
        try "database: [unclosed\n".write(to: file, atomically: true, encoding: .utf8)
        let broken = try await confbus.reload()
        #expect(broken.json?["failed"]?["billing-api"]?.arrayValue?.first?["code"] == .string("invalid_yaml"))
        #expect(try await confbus.get("/v1/config/billing-api").json?["version"] == .integer(2))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2])
    }

    @Test(.timeLimit(.minutes(2)))
    func pullHonoursETagVersionPointerAndLongPoll() async throws {
        let (confbus, tree) = try await Harness.startedConfbus(broker: try Self.sharedBroker())
        defer { confbus.stop() }
        let first = try await confbus.get("/v1/config/billing-api")
        let etag = try #require(first.headers["etag"])
        #expect(etag == "\"\(first.json?["checksum"]?.stringValue ?? "")\"")
        #expect(try await confbus.get("/v1/config/billing-api", headers: ["If-None-Match": etag]).status == 304)
        #expect(try await confbus.get("/v1/config/billing-api", headers: ["If-None-Match": "\"other\""]).status == 200)

        let pointer = try await confbus.get("/v1/config/billing-api?pointer=/database/port")
        #expect(pointer.json == ["service": "billing-api", "version": 1, "pointer": "/database/port", "value": 5432])
        #expect(try await confbus.get("/v1/config/billing-api?pointer=database").status == 400)
        #expect(try await confbus.get("/v1/config/billing-api?pointer=/nope").status == 404)
        #expect(try await confbus.get("/v1/config/billing-api?version=abc").status == 400)
        #expect(try await confbus.get("/v1/config/billing-api?version=9").status == 404)
        #expect(try await confbus.get("/v1/config/billing-api?wait=x").status == 400)
        #expect(try await confbus.get("/v1/config/Billing").status == 400)
        #expect(try await confbus.get("/v1/config/a%2Fb").status == 400)
        #expect(try await confbus.get("/v1/config/unknown-service").status == 404)
        // A well-formed name under an unknown path is the router's 404, not a name error.
        #expect(try await confbus.get("/v1/config/billing-api/nope").status == 404)
        #expect(try await confbus.get("/v1/config/Bad/nope").status == 400)
        #expect(try await confbus.get("/v1/config/unknown-service").headers["content-type"] == "application/problem+json")

        // Nothing newer within the wait: 304 after about the wait.
        let clock = ContinuousClock()
        let started = clock.now
        #expect(try await confbus.get("/v1/config/billing-api?wait=1&after=1").status == 304)
        #expect(clock.now - started >= .milliseconds(900))

        // A change during the wait answers at once with the new version.
        async let waiting = confbus.get("/v1/config/billing-api?wait=30&after=1")
        try await Task.sleep(for: .milliseconds(300))
        let file = tree.appendingPathComponent("services/billing-api/defaults.yaml")
        try (try String(contentsOf: file, encoding: .utf8)).replacingOccurrences(of: "pool_size: 10", with: "pool_size: 11")
            .write(to: file, atomically: true, encoding: .utf8)
        _ = try await confbus.reload()
        let woken = try await waiting
        #expect(woken.status == 200)
        #expect(woken.json?["version"] == .integer(2))
        #expect(try await confbus.get("/v1/config/billing-api?version=1").json?["version"] == .integer(1))

        let history = try await confbus.get("/v1/config/billing-api/history")
        #expect(history.json?["versions"]?.arrayValue?.compactMap { $0["version"] } == [2, 1])
        let diff = try await confbus.get("/v1/config/billing-api/diff?from=1&to=2")
        #expect(diff.json?["changes"] == [["op": "replace", "path": "/database/pool_size", "old": 10, "new": 11]])
    }

    @Test(.timeLimit(.minutes(2)))
    func acksAndHealthShowUpInInstances() async throws {
        let (confbus, tree) = try await Harness.startedConfbus(broker: try Self.sharedBroker())
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: try Self.sharedBroker())
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(confbus.topic("error", "#"))
        try await probe.publish(confbus.topic("register", "feature-flags"), #"{"instance": "ff-1", "environment": "development"}"#)
        try await probe.publish(confbus.topic("ack", "feature-flags/ff-1"), #"{"version": 1, "status": "applied"}"#)
        try await probe.publish(confbus.topic("health", "feature-flags/ff-1"), #"{"status": "degraded"}"#)
        try await probe.publish(confbus.topic("ack", "feature-flags/ff-2"), #"{"version": 1, "status": "maybe"}"#)

        var instance: JSONValue?
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            instance = try await confbus.get("/v1/services/feature-flags/instances").json?["instances"]?.arrayValue?.first
            if instance?["health"] == .string("degraded") && instance?["applied_version"] == .integer(1) { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(instance?["instance"] == .string("ff-1"))
        #expect(instance?["applied_version"] == .integer(1))
        #expect(instance?["health"] == .string("degraded"))
        #expect(instance?["lagging"] == .bool(false))
        let refusal = try await probe.waitFor(confbus.topic("error", "feature-flags"))
        #expect(refusal.json?["error"]?["code"] == .string("invalid_payload"))
        #expect(refusal.json?["instance"] == .string("ff-2"))
        let services = try await confbus.get("/v1/services")
        let entry = services.json?["services"]?.arrayValue?.first { $0["service"] == .string("feature-flags") }
        #expect(entry?["instances"] == .integer(1))
        #expect(entry?["lagging"] == .integer(0))
        // The metrics the distributor promises: commits and publishes, refusals by code, outbox depth,
        // connection state, request durations by route (gauges are sampled every 2 s).
        var metrics = ""
        let sampled = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < sampled {
            metrics = String(decoding: try await confbus.get("/metrics").body, as: UTF8.self)
            if metrics.contains("confbus_database_connected 1") && metrics.contains("confbus_outbox_depth 0") { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(metrics.contains("confbus_refusals_total{code=\"invalid_payload\"}"))
        // Commits are counted by source, never with a service's name as a label value.
        #expect(metrics.contains("confbus_versions_committed_total{source=\"files\"}"))
        #expect(!metrics.contains("service=\""))
        #expect(metrics.contains("confbus_versions_published_total 3"))
        #expect(metrics.contains("confbus_outbox_depth 0"))
        #expect(metrics.contains("confbus_database_connected 1"))
        #expect(metrics.contains("confbus_mqtt_connected 1"))
        #expect(metrics.contains("confbus_http_request_duration_seconds_count{route=\"/v1/services/{service}/instances\",method=\"GET\",status=\"200\"}"))
    }

    @Test(.timeLimit(.minutes(2)))
    func aReloadWhileTheBrokerIsDownIsPublishedWhenItReturns() async throws {
        let broker = try Broker()
        try await broker.start()
        let tree = try Harness.copyOfExampleTree()
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker.url)
        try await confbus.start()
        defer { confbus.stop() }
        broker.stop()
        try await Task.sleep(for: .milliseconds(300))

        let file = tree.appendingPathComponent("services/report-worker/defaults.yaml")
        try (try String(contentsOf: file, encoding: .utf8)).appending("retry:\n  initial_delay: PT5S\n").write(to: file, atomically: true, encoding: .utf8)
        let reload = try await confbus.reload()
        #expect(reload.status == 200)
        #expect(reload.json?["committed"]?.arrayValue?.first?["version"] == .integer(2))
        #expect(try await confbus.get("/readyz").status == 503)

        try await broker.start()
        let probe = try await MQTTProbe(url: broker.url)
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(confbus.topic("update", "report-worker"))
        let update = try await probe.waitFor(confbus.topic("update", "report-worker"), timeout: .seconds(30)) { $0.json?["version"] == .integer(2) }
        #expect(update.json?["config"]?["retry"]?["initial_delay"] == .string("PT5S"))
    }

    @Test(.timeLimit(.minutes(2)))
    func aCrashBetweenCommitAndPublishLosesNothing() async throws {
        let broker = try Broker()
        try await broker.start()
        let tree = try Harness.copyOfExampleTree()
        let database = try await Harness.createDatabase()
        // The first commit of the start-up reload ends the process as kill -9 would, before any publish.
        let crashing = try Confbus(configDir: tree, databaseURL: database, mqttURL: broker.url,
                                   environment: ["CONFBUS_FAILPOINTS": "after_commit=exit"])
        try await crashing.start(waitUntilReady: false)
        #expect(try await crashing.waitForExit() == 137)
        let committed = try await Harness.versions(in: database, service: "billing-api")
        #expect(committed == [1])

        let probe = try await MQTTProbe(url: broker.url)
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(crashing.topic("update", "+"))
        try await Task.sleep(for: .milliseconds(300))
        #expect(probe.messages.count == 0, "nothing may be published before the restart")

        let restarted = try Confbus(configDir: tree, databaseURL: database, mqttURL: broker.url)
        restarted.extraEnvironment = [:]
        try await Self.restart(restarted, reusingPrefixOf: crashing)
        defer { restarted.stop() }
        let update = try await probe.waitFor(crashing.topic("update", "billing-api"))
        #expect(update.json?["version"] == .integer(1))
        #expect(try await Harness.versions(in: database, service: "billing-api") == [1])
    }

    /// Starts `confbus` with the topic prefix of an earlier process, as a restarted node would have.
    static func restart(_ confbus: Confbus, reusingPrefixOf earlier: Confbus) async throws {
        confbus.prefixOverride = earlier.prefix
        try await confbus.start()
    }

    @Test(.timeLimit(.minutes(2)))
    func aBrokerRestartWithoutPersistenceGetsEveryRetainedTopicBack() async throws {
        let broker = try Broker(persistence: false)
        try await broker.start()
        let tree = try Harness.copyOfExampleTree()
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker.url)
        try await confbus.start()
        defer { confbus.stop() }
        let before = try await MQTTProbe(url: broker.url)
        try before.subscribe(confbus.topic("update", "+"))
        for service in ["billing-api", "feature-flags", "report-worker"] { _ = try await before.waitFor(confbus.topic("update", service)) }
        await before.shutdown()

        broker.stop()
        try await broker.start()   // every retained message is gone
        try await Task.sleep(for: .seconds(2))
        let after = try await MQTTProbe(url: broker.url)
        defer { Task { await after.shutdown() } }
        try after.subscribe(confbus.topic("update", "+"))
        for service in ["billing-api", "feature-flags", "report-worker"] {
            let message = try await after.waitFor(confbus.topic("update", service), timeout: .seconds(20))
            #expect(message.json?["version"] == .integer(1))
        }
        // confbus subscribed again after reconnecting: a registration is answered.
        try after.subscribe(confbus.topic("error", "#"))
        try await after.publish(confbus.topic("register", "not-configured"), #"{"instance": "i-1"}"#)
        let answer = try await after.waitFor(confbus.topic("error", "not-configured"))
        #expect(answer.json?["error"]?["code"] == .string("unknown_service"))
    }
}

/// Start-up, settings and shutdown as an operator sees them.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct LifecycleTests {
    @Test(.timeLimit(.minutes(2)))
    func sigtermDrainsPublishesOfflineAndExitsZero() async throws {
        let broker = try TestServers.mqttURL.map { $0 } ?? ""
        let tree = try Harness.copyOfExampleTree()
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await confbus.start()
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        let health = "\(confbus.prefix)/health/_confbus/\(confbus.node)"
        try probe.subscribe(health)
        _ = try await probe.waitFor(health) { $0.json?["status"] == .string("online") }
        let online = try #require(probe.messages(on: health).last?.json)
        #expect(online["node"] == .string(confbus.node))
        #expect(online["services"] == .integer(3))
        #expect(online["mqtt"] == .string("connected"))
        #expect(online["database"] == .string("connected"))
        #expect(online["started_at"]?.stringValue != nil && online["timestamp"]?.stringValue != nil)

        let process = try #require(confbus.process)
        confbus.stop()
        #expect(process.terminationStatus == 0)
        let offline = try await probe.waitFor(health) { $0.json?["status"] == .string("offline") }
        #expect(offline.json?["node"] == .string(confbus.node))
        // The offline message is retained: a monitor that subscribes later still sees it.
        let later = try await MQTTProbe(url: broker, name: "monitor")
        defer { Task { await later.shutdown() } }
        try later.subscribe(health)
        let retained = try await later.waitFor(health)
        #expect(retained.retained && retained.json?["status"] == .string("offline"))
    }

    @Test(.timeLimit(.minutes(2)))
    func aKilledNodeLeavesItsLastWill() async throws {
        let broker = try Broker()
        try await broker.start()
        let confbus = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: try await Harness.createDatabase(), mqttURL: broker.url)
        try await confbus.start()
        let probe = try await MQTTProbe(url: broker.url)
        defer { Task { await probe.shutdown() } }
        let health = "\(confbus.prefix)/health/_confbus/\(confbus.node)"
        try probe.subscribe(health)
        _ = try await probe.waitFor(health) { $0.json?["status"] == .string("online") }
        confbus.kill9()
        let will = try await probe.waitFor(health, timeout: .seconds(30)) { $0.json?["status"] == .string("offline") }
        #expect(will.json?["node"] == .string(confbus.node))
    }

    @Test(.timeLimit(.minutes(2)))
    func startsAndAnswersWithoutTheDatabase() async throws {
        let broker = try #require(TestServers.mqttURL)
        // A database URL that refuses connections: confbus must still start, say why it is not
        // ready, and serve HTTP.
        let deadPort = try Harness.freePort()
        let confbus = try Confbus(configDir: try Harness.copyOfExampleTree(),
                                  databaseURL: "postgres://confbus:confbus@127.0.0.1:\(deadPort)/confbus", mqttURL: broker)
        try await confbus.start(waitUntilReady: false)
        defer { confbus.stop() }
        try await Task.sleep(for: .seconds(1))
        let ready = try await confbus.get("/readyz")
        #expect(ready.status == 503)
        #expect(ready.json?["detail"]?.stringValue?.contains("database") == true)
        #expect(try await confbus.get("/healthz").status == 200)
        #expect(try await confbus.reload().status == 503)
    }

    @Test(.timeLimit(.minutes(2)))
    func settingsComeFromFlagsThenVariablesThenTheFileAndSecretsAreNeverLogged() async throws {
        let broker = try #require(TestServers.mqttURL)
        let tree = try Harness.copyOfExampleTree()
        // confbus.yaml says production; CONFBUS_ENVIRONMENT wins over it.
        try "environment: production\nhealth_interval: 1s\n".write(to: tree.appendingPathComponent("confbus.yaml"), atomically: true, encoding: .utf8)
        let database = try await Harness.createDatabase()
        let confbus = try Confbus(configDir: tree, databaseURL: database, mqttURL: broker,
                                  environment: ["CONFBUS_ENVIRONMENT": "development", "CONFBUS_READ_TOKENS": "reader:billing-api=read-secret-1"])
        try await confbus.start()
        defer { confbus.stop() }
        #expect(try await confbus.get("/v1/config/billing-api").status == 401)
        let pulled = try await confbus.get("/v1/config/billing-api", headers: ["Authorization": "Bearer read-secret-1"])
        #expect(pulled.json?["environment"] == .string("development"))
        // Outside its scope a service does not exist for the token (CONTRACT §6c): 404, not 403.
        #expect(try await confbus.get("/v1/config/feature-flags", headers: ["Authorization": "Bearer read-secret-1"]).status == 404)
        let log = try String(contentsOf: confbus.log, encoding: .utf8)
        for secret in ["read-secret-1", Confbus.adminToken, ":confbus@"] { #expect(!log.contains(secret), "\(secret) leaked into the log") }
        #expect(log.contains("confbus:***@"))
    }

    /// Every read path × every kind of caller × its own service, another existing service and a
    /// missing one: a scoped token gets for another service exactly what it gets for a missing one.
    @Test(.timeLimit(.minutes(2)))
    func aScopedTokenSeesOnlyItsServicesOnEveryReadPath() async throws {
        let broker = try #require(TestServers.mqttURL)
        let confbus = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: try await Harness.createDatabase(), mqttURL: broker,
                                  environment: ["CONFBUS_READ_TOKENS": "scoped:billing-api=scoped-secret,all=unscoped-secret"])
        try await confbus.start()
        defer { confbus.stop() }
        let scoped = ["Authorization": "Bearer scoped-secret"]
        let unscoped = ["Authorization": "Bearer unscoped-secret"]
        let admin = ["Authorization": "Bearer \(Confbus.adminToken)"]
        let paths = ["/v1/config/%@", "/v1/config/%@?version=1", "/v1/config/%@?pointer=%P", "/v1/config/%@?wait=1&after=1",
                     "/v1/config/%@/history", "/v1/config/%@/diff?from=1&to=1", "/v1/schemas/%@", "/v1/services/%@/instances",
                     "/v1/config/%@/rollouts", "/v1/flags/%@"]
        func answer(_ path: String, _ service: String, _ headers: [String: String]) async throws -> (Int, JSONValue?) {
            // A pointer each service has (billing-api's is not in feature-flags).
            let pointer = service == "billing-api" ? "/log_level" : "/flags"
            let concrete = path.replacingOccurrences(of: "%@", with: service).replacingOccurrences(of: "%P", with: pointer)
            let result = try await confbus.get(concrete, headers: headers)
            // The detail names the service asked for; with it spelled the same, the bodies must match.
            let body = result.json.map { value -> JSONValue in
                guard case .object(var o) = value else { return value }
                o["detail"] = o["detail"]?.stringValue.map { .string($0.replacingOccurrences(of: service, with: "<service>")) }
                o["instance"] = nil
                return .object(o)
            }
            return (result.status, body)
        }
        for path in paths {
            let own = try await answer(path, "billing-api", scoped)
            #expect(own.0 == 200 || (path.contains("wait") && own.0 == 304), "\(path) own: \(own.0)")
            let other = try await answer(path, "feature-flags", scoped)
            let missing = try await answer(path, "no-such-service", scoped)
            #expect(other.0 == 404, "\(path) other: \(other.0)")
            #expect(other.0 == missing.0 && other.1 == missing.1, "\(path): \(String(describing: other.1)) vs \(String(describing: missing.1))")
            for headers in [unscoped, admin] {
                let status = try await answer(path, "feature-flags", headers).0
                #expect(status == 200 || (path.contains("wait") && status == 304), "\(path) unscoped or admin: \(status)")
            }
            #expect(try await answer(path, "billing-api", [:]).0 == 401)
        }
        // Lists leave out what the token may not see.
        let listed = try await confbus.get("/v1/services", headers: scoped).json?["services"]?.arrayValue?.compactMap { $0["service"]?.stringValue }
        #expect(listed == ["billing-api"])
        let all = try await confbus.get("/v1/services", headers: unscoped).json?["services"]?.arrayValue ?? []
        #expect(all.count > 1)
    }

    @Test func openAPIDescribesEveryRoute() async throws {
        let broker = try #require(TestServers.mqttURL)
        let confbus = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await confbus.start()
        defer { confbus.stop() }
        let document = try #require(try await confbus.get("/openapi.json").json)
        #expect(document["openapi"] == .string("3.1.0"))
        let paths = try #require(document["paths"]?.objectValue)
        // Every documented GET answers with something other than the router's 404.
        for (path, item) in paths where item["get"] != nil {
            let concrete = path.replacingOccurrences(of: "{service}", with: "billing-api")
            if path == "/v1/events" {
                // A stream that does not end: its head is the answer (read apart, as EventSource would).
                let (head, stream) = try await EventsTests.open(confbus, token: nil)
                #expect(head.status == .ok && head.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
                stream?.reader.cancel()
                continue
            }
            let answer = try await confbus.get(concrete)
            // A rollout id that names none is the handler's own 404, said as such.
            let handled = path.contains("{id}") && answer.json?["detail"]?.stringValue?.contains("rollout") == true
            #expect(answer.status != 404 || path.contains("diff") || handled, "\(path) is documented but not served")
        }
        #expect(paths.keys.contains("/v1/reload"))
        // A method the document does not list for a path is 405 with the ones it does (HEAD with GET).
        let methods = ["get", "put", "post", "patch", "delete"]
        for (path, item) in paths {
            let concrete = path.replacingOccurrences(of: "{service}", with: "billing-api")
            var documented = Set(methods.filter { item[$0] != nil }.map { $0.uppercased() })
            if documented.contains("GET") { documented.insert("HEAD") }
            for method in methods.map({ $0.uppercased() }) where !documented.contains(method) {
                let answer = try await confbus.request(method, concrete, headers: ["Authorization": "Bearer \(Confbus.adminToken)"])
                #expect(answer.status == 405, "\(method) \(path): \(answer.status)")
                let allow = Set((answer.headers["allow"] ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
                #expect(allow == documented, "\(method) \(path): Allow \(allow)")
                #expect(answer.json?["type"]?.stringValue?.hasSuffix("/method_not_allowed") == true)
            }
        }
        #expect(try await confbus.request("HEAD", "/v1/config/billing-api").status == 200)
        // The constraints and answers the handlers have are in the document.
        let pull = try #require(paths["/v1/config/{service}"]?["get"])
        let version = pull["parameters"]?.arrayValue?.first { $0["name"] == "version" }
        #expect(version?["schema"]?["minimum"] == 1)
        for (path, item) in paths {
            for (method, operation) in item.objectValue ?? [:] {
                let codes = Set(operation["responses"]?.objectValue?.keys.map { $0 } ?? [])
                if path.contains("{service}") { #expect(codes.contains("400"), "\(method) \(path)") }
                if !["/healthz", "/readyz", "/metrics", "/openapi.json"].contains(path) {
                    #expect(codes.isSuperset(of: ["401", "429"]), "\(method) \(path): \(codes.sorted())")
                }
            }
        }
        #expect(try await confbus.request("DELETE", "/v1/no-such-route").status == 404)
    }
}

/// Two nodes on one database and one broker, as a later issue will run them.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct ReplicaTests {
    @Test(.timeLimit(.minutes(2)))
    func twoNodesStartTogetherAndSeeEachOthersCommits() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (a, b, database) = try await Harness.twoNodes(broker: broker)
        // Both start at once: migrations run once, each service gets exactly one version 1.
        async let startA: Void = a.start()
        async let startB: Void = b.start()
        _ = try await (startA, startB)
        defer { a.stop(); b.stop() }
        #expect(try await Harness.versions(in: database, service: "billing-api") == [1])

        // A commit on node A is served by node B at once (LISTEN/NOTIFY), without a reload on B.
        let file = a.configDir.appendingPathComponent("services/billing-api/defaults.yaml")
        try (try String(contentsOf: file, encoding: .utf8)).replacingOccurrences(of: "pool_size: 10", with: "pool_size: 12")
            .write(to: file, atomically: true, encoding: .utf8)
        #expect(try await a.reload().json?["committed"]?.arrayValue?.count == 1)
        var seen: JSONValue?
        let deadline = ContinuousClock.now + .seconds(5)
        while ContinuousClock.now < deadline {
            seen = try await b.get("/v1/config/billing-api").json?["version"]
            if seen == .integer(2) { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(seen == .integer(2))
        // B reloading the same files finds nothing to do.
        #expect(try await b.reload().json?["committed"]?.arrayValue == [])
        #expect(try await Harness.versions(in: database, service: "billing-api") == [1, 2])
    }

    @Test(.timeLimit(.minutes(2)))
    func sighupReloadsAndBrokenFilesAreReportedWithoutDegradingTheNode() async throws {
        let broker = try #require(TestServers.mqttURL)
        let tree = try Harness.copyOfExampleTree()
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await confbus.start()
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        let health = "\(confbus.prefix)/health/_confbus/\(confbus.node)"
        try probe.subscribe(confbus.topic("update", "feature-flags"))
        try probe.subscribe(confbus.topic("error", "feature-flags"))
        try probe.subscribe(health)

        let file = tree.appendingPathComponent("services/feature-flags/development.yaml")
        try (try String(contentsOf: file, encoding: .utf8)).replacingOccurrences(of: "refresh_seconds: 10", with: "refresh_seconds: 20")
            .write(to: file, atomically: true, encoding: .utf8)
        kill(try #require(confbus.process).processIdentifier, SIGHUP)
        let update = try await probe.waitFor(confbus.topic("update", "feature-flags")) { $0.json?["version"] == .integer(2) }
        #expect(update.json?["config"]?["refresh_seconds"] == .integer(20))

        try "flags: {bad_flag: {enabled: maybe}}\n".write(to: file, atomically: true, encoding: .utf8)
        kill(try #require(confbus.process).processIdentifier, SIGHUP)
        // One team's typo is that service's problem (§6a, P18): counted and reported, the node stays online.
        let reported = try await probe.waitFor(health) { $0.json?["invalid_services"] == .integer(1) }
        #expect(reported.json?["status"] == .string("online"))
        #expect(reported.json?["database"] == .string("connected"))
        let error = try await probe.waitFor(confbus.topic("error", "feature-flags"))
        #expect(error.json?["error"]?["location"]?.stringValue?.contains("development.yaml") == true)
        #expect(!String(decoding: error.payload, as: UTF8.self).contains("maybe"))
        #expect(try await confbus.get("/v1/config/feature-flags").json?["version"] == .integer(2))
        let listed = try await confbus.get("/v1/services").json?["services"]?.arrayValue ?? []
        let entry = listed.first { $0["service"] == .string("feature-flags") }
        #expect(entry?["state"] == .string("invalid"))
        #expect(entry?["errors"]?.arrayValue?.isEmpty == false)
        #expect(listed.first { $0["service"] == .string("billing-api") }?["state"] == .string("ok"))
    }
}
