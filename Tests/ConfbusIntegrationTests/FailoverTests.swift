import ConfbusClient
import ConfbusCore
import ConfbusPostgres
import ConfbusYAML
import Foundation
import Logging
import PostgresNIO
import Testing

/// More than one machine (CONTRACT.md §11): a PostgreSQL primary with a streaming standby made by
/// `pg_basebackup -R`, confbus nodes given both hosts, real brokers. Each test ends with the
/// recorder's check: every retained update is the database's latest, and no message on the broker
/// carried a version the database does not hold (bar the ones a test loses on purpose).
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct FailoverTests {
    /// The primary crashes (`-m immediate`) and the standby is promoted: writes resume through
    /// either node, nothing acknowledged is missing, the broker converges to the new primary. The
    /// old primary then comes back on its old timeline: no node writes or relays through it.
    @Test(.timeLimit(.minutes(3)))
    func aPromotedStandbyTakesTheWritesAndAReturningOldPrimaryIsRefused() async throws {
        let primary = try await PrivatePostgres.make()
        // Synchronous: a write is acknowledged only once the standby has it.
        try await primary.starting(["synchronous_standby_names='*'"])
        defer { primary.stop() }
        let standby = try await PrivatePostgres.make(standbyOf: primary)
        try await standby.starting()
        defer { standby.stop() }
        let url = "postgres://postgres@127.0.0.1:\(primary.port),127.0.0.1:\(standby.port)/postgres"
        let brokers = [try Broker(), try Broker()]
        for broker in brokers { try await broker.start() }
        defer { for broker in brokers { broker.stop() } }
        let tree = try Harness.copyOfExampleTree()
        let both = ["CONFBUS_MQTT_URLS": brokers.map(\.url).joined(separator: ",")]
        let a = try Confbus(configDir: tree, databaseURL: url, mqttURL: brokers[0].url, environment: both)
        try await a.start()
        defer { a.stop() }
        let b = try Confbus(configDir: tree, databaseURL: url, mqttURL: brokers[0].url, environment: both)
        b.prefixOverride = a.prefix
        try await b.start()
        defer { b.stop() }
        var recorders: [MQTTProbe] = []
        for broker in brokers {
            let recorder = try await MQTTProbe(url: broker.url, name: "recorder")
            try recorder.subscribe(a.topic("update", "#"))
            recorders.append(recorder)
        }
        defer { for recorder in recorders { Task { await recorder.shutdown() } } }

        var acknowledged: [Int] = []
        var value = 2
        for node in [a, b, a] {
            let answer = try await Self.patch(node, concurrency: value)
            try #require(answer.status == 200, "\(answer.text)")
            acknowledged.append(try #require(answer.json?["version"]?.integralValue))
            value += 1
        }

        await primary.crashing()
        let crashed = ContinuousClock.now
        // Until a primary is back, writes are refused (503) and reads are served from memory, marked stale.
        try await Harness.eventually("a write with no primary is refused") {
            let answer = try await Self.patch(a, concurrency: 99)
            #expect(answer.status != 200, "a write was acknowledged with no primary")
            return answer.status == 503 && answer.json?["type"]?.stringValue?.hasSuffix("store_unavailable") == true
        }
        try await Harness.eventually("reads on the other node are served from memory, marked stale") {
            let stale = try await b.get("/v1/config/report-worker")
            #expect(stale.status == 200)
            return stale.headers["confbus-stale"] == "true"
        }
        try await standby.promoting()
        for node in [a, b] {
            try await Harness.eventually("a write through \(node.node) is accepted by the promoted standby", timeout: .seconds(30)) {
                value += 1
                let answer = try await Self.patch(node, concurrency: value)
                guard answer.status == 200 else { return false }
                acknowledged.append(try #require(answer.json?["version"]?.integralValue))
                return true
            }
        }
        print("failover timing: writes through both nodes \(ContinuousClock.now - crashed) after the primary crashed")
        let stored = try await Harness.versions(in: standby.url, service: "report-worker")
        #expect(Set(acknowledged).isSubset(of: Set(stored)), "acknowledged \(acknowledged), the new primary holds \(stored)")
        for broker in brokers { try await Self.converged(broker: broker.url, prefix: a.prefix, database: standby.url) }

        // The old primary returns, out of recovery on timeline 1: refused for good.
        try await primary.starting()
        let before = try await Self.relayState(primary.url)
        try await Harness.eventually("both nodes have seen the returning old primary and refused it") {
            a.logTail(lines: 1_000_000).contains("older timeline") && b.logTail(lines: 1_000_000).contains("older timeline")
        }
        // A node started now, that never saw the promotion, finds the newest timeline itself
        // (the old primary is listed first in database_url).
        await a.stopping()
        try await a.start()
        for node in [b, a] {
            value += 1
            let answer = try await Self.patch(node, concurrency: value)
            #expect(answer.status == 200, "\(answer.text)")
            if let version = answer.json?["version"]?.integralValue { acknowledged.append(version) }
        }
        try await Task.sleep(for: .seconds(3))  // the relay renews its lease every second
        #expect(try await Self.relayState(primary.url) == before, "a node wrote or relayed through the old primary")
        let latest = try await Harness.versions(in: standby.url, service: "report-worker")
        #expect(Set(acknowledged).isSubset(of: Set(latest)))
        for broker in brokers { try await Self.converged(broker: broker.url, prefix: a.prefix, database: standby.url) }
        for recorder in recorders { try await Self.everyMessageCommitted(recorder, prefix: a.prefix, database: standby.url) }
    }

    /// The primary crashes with its last commit not yet on the (asynchronous) standby, after the
    /// broker had it: the promoted standby lacks a version clients may run. confbus marks the
    /// service diverged and commits the database's config again above the retained version, so
    /// every client moves off the lost one; history says which number was skipped and why.
    @Test(.timeLimit(.minutes(3)))
    func aVersionLostWithAnAsynchronousStandbyIsCommittedAgainAboveTheRetainedOne() async throws {
        let primary = try await PrivatePostgres.make()
        try await primary.starting()
        defer { primary.stop() }
        let standby = try await PrivatePostgres.make(standbyOf: primary)
        try await standby.starting()
        defer { standby.stop() }
        let url = "postgres://postgres@127.0.0.1:\(primary.port),127.0.0.1:\(standby.port)/postgres"
        let broker = try #require(TestServers.mqttURL)
        let node = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: url, mqttURL: broker)
        try await node.start()
        defer { node.stop() }
        let recorder = try await MQTTProbe(url: broker, name: "recorder")
        defer { Task { await recorder.shutdown() } }
        try recorder.subscribe(node.topic("update", "#"))
        try recorder.subscribe(node.topic("health", "_confbus/#"))
        let update = node.topic("update", "report-worker")

        let kept = try await Self.patch(node, concurrency: 2)
        let keptVersion = try #require(kept.json?["version"]?.integralValue)
        try await Harness.eventually("the standby has version \(keptVersion)") {
            (try? await Harness.versions(in: standby.url, service: "report-worker"))?.contains(keptVersion) == true
        }
        // The standby stops following; the next commit reaches the primary and the broker only.
        await standby.stopping()
        let lost = try await Self.patch(node, concurrency: 9)
        try #require(lost.status == 200, "\(lost.text)")
        let lostVersion = try #require(lost.json?["version"]?.integralValue)
        _ = try await recorder.waitFor(update) { $0.json?["version"]?.integralValue == lostVersion }
        await primary.crashing()
        try await standby.starting()
        try await standby.promoting()

        try await Harness.eventually("the service is repaired above the lost version", timeout: .seconds(30)) {
            (try? await Harness.versions(in: standby.url, service: "report-worker"))?.contains(lostVersion + 1) == true
        }
        let versions = try await Harness.versions(in: standby.url, service: "report-worker")
        #expect(!versions.contains(lostVersion), "the lost version came back: \(versions)")
        try await Self.converged(broker: broker, prefix: node.prefix, database: standby.url)
        // The repair carries the database's config (not the lost one), and says why.
        try await Harness.eventually("a pull gives the repair, with the database's config") {
            let document = try await node.get("/v1/config/report-worker").json
            return document?["version"]?.integralValue == lostVersion + 1 && document?["config"]?["concurrency"] == .integer(2)
        }
        let history = try await node.get("/v1/config/report-worker/history?limit=1").json?["versions"]?.arrayValue ?? []
        #expect(history.first?["source"] == "repair")
        #expect(history.first?["reason"]?.stringValue?.contains("version \(lostVersion) skipped") == true, "\(history)")
        let services = try await node.get("/v1/services").json?["services"]?.arrayValue ?? []
        let entry = try #require(services.first { $0["service"] == "report-worker" })
        #expect(entry["state"] == "diverged")
        #expect(entry["diverged"]?["retained_version"]?.integralValue == lostVersion)
        #expect(entry["diverged"]?["database_version"]?.integralValue == keptVersion)
        #expect(entry["diverged"]?["repaired_version"]?.integralValue == lostVersion + 1)
        #expect(services.filter { $0["state"] == "diverged" }.count == 1, "only the service that lost a version")
        try await Harness.eventually("the node's health names the diverged service") {
            recorder.messages(on: node.topic("health", "_confbus/\(node.node)")).last?.json?["diverged_services"] == ["report-worker"]
        }
        try await Self.everyMessageCommitted(recorder, prefix: node.prefix, database: standby.url, lost: ["report-worker \(lostVersion)"])

        // The history, skipped number and all, backs up and restores; a gap that is not a repair's does not.
        let export = try await node.get("/v1/export?history=true&secrets=true", headers: AdminTests.admin())
        try #require(export.status == 200)
        let emptyTree = try Harness.temporaryDirectory("empty").appendingPathComponent("config")
        try FileManager.default.createDirectory(at: emptyTree.appendingPathComponent("services"), withIntermediateDirectories: true)
        let target = try Confbus(configDir: emptyTree, databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await target.start()
        defer { target.stop() }
        let gapped = String(decoding: export.body, as: UTF8.self)
            .replacingOccurrences(of: #""source":"repair""#, with: #""source":"override""#)
        let refused = try await target.request("POST", "/v1/import", headers: AdminTests.admin(), body: Data(gapped.utf8))
        #expect(refused.status == 422, "\(refused.text)")
        let restored = try await target.request("POST", "/v1/import", headers: AdminTests.admin(), body: export.body)
        #expect(restored.status == 200, "\(restored.text)")
        #expect(try await target.get("/v1/config/report-worker").json?["version"]?.integralValue == lostVersion + 1)

        // An operator's next write ends the notice.
        #expect(try await Self.patch(node, concurrency: 3).status == 200)
        let after = try await node.get("/v1/services").json?["services"]?.arrayValue ?? []
        #expect(after.first { $0["service"] == "report-worker" }?["state"] == "ok")
    }

    /// Two brokers (`mqtt_urls`) and two nodes on one database. One broker is killed and its
    /// persistence wiped: the other keeps delivering, and the wiped one holds every latest version
    /// again within `reconcile_interval` of its return. Then the relaying node is killed: the
    /// other takes the lease within 10 s and delivers to both; no topic ever goes back a version.
    @Test(.timeLimit(.minutes(3)))
    func everyBrokerConvergesAndTheRelayFailsOver() async throws {
        let first = try Broker(persistence: true)
        let second = try Broker(persistence: true)
        try await first.start()
        defer { first.stop() }
        try await second.start()
        defer { second.stop() }
        let database = try await Harness.createDatabase()
        let tree = try Harness.copyOfExampleTree()
        let brokers = ["CONFBUS_MQTT_URLS": "\(first.url),\(second.url)"]
        let a = try Confbus(configDir: tree, databaseURL: database, mqttURL: first.url, environment: brokers)
        try await a.start()
        defer { a.stop() }
        let b = try Confbus(configDir: tree, databaseURL: database, mqttURL: first.url, environment: brokers)
        b.prefixOverride = a.prefix
        try await b.start()
        defer { b.stop() }
        let ready = try await a.get("/readyz").json
        #expect(ready?["brokers"] == ["connected", "connected"])
        var recorders = [try await MQTTProbe(url: first.url, name: "recorder-1"), try await MQTTProbe(url: second.url, name: "recorder-2")]
        defer { for recorder in recorders { Task { await recorder.shutdown() } } }
        for recorder in recorders { try recorder.subscribe(a.topic("update", "#")) }
        for broker in [first, second] { try await Self.converged(broker: broker.url, prefix: a.prefix, database: database) }

        // The second broker crashes and loses everything it held.
        second.stop()
        // (Killed before an autosave it has written nothing yet; whatever it wrote goes too.)
        let store = second.directory.appendingPathComponent("mosquitto.db")
        if FileManager.default.fileExists(atPath: store.path) { try FileManager.default.removeItem(at: store) }
        let update = a.topic("update", "report-worker")
        let written = try await Self.patch(a, concurrency: 7)
        try #require(written.status == 200, "\(written.text)")
        let version = try #require(written.json?["version"]?.integralValue)
        _ = try await recorders[0].waitFor(update) { $0.json?["version"]?.integralValue == version }
        try await Harness.eventually("readiness shows the second broker down") {
            try await a.get("/readyz").json?["brokers"] == ["connected", "disconnected"]
        }

        try await second.start()
        let returned = ContinuousClock.now
        await recorders[1].shutdown()
        recorders[1] = try await MQTTProbe(url: second.url, name: "recorder-2")
        try recorders[1].subscribe(a.topic("update", "#"))
        try await Self.converged(broker: second.url, prefix: a.prefix, database: database, timeout: .seconds(2) + .seconds(5))
        print("failover timing: the wiped broker converged \(ContinuousClock.now - returned) after its return (reconcile_interval 2 s)")

        // The relaying node dies; the other takes over and delivers to both brokers.
        let holder = try await Harness.withPostgres(database) { client in
            var holder = ""
            for try await h in try await client.query("SELECT holder FROM relay_lease", logger: Harness.logger).decode(String.self) { holder = h }
            return holder
        }
        let (relaying, other) = holder == a.node ? (a, b) : (b, a)
        try #require([a.node, b.node].contains(holder), "lease held by \(holder)")
        relaying.kill9()
        let killed = ContinuousClock.now
        let next = try await Self.patch(other, concurrency: 8)
        try #require(next.status == 200, "\(next.text)")
        let nextVersion = try #require(next.json?["version"]?.integralValue)
        for recorder in recorders {
            _ = try await recorder.waitFor(update, timeout: .seconds(10)) { $0.json?["version"]?.integralValue == nextVersion }
        }
        print("failover timing: both brokers had the next version \(ContinuousClock.now - killed) after the relaying node was killed")
        #expect(ContinuousClock.now - killed < .seconds(10))
        for broker in [first, second] { try await Self.converged(broker: broker.url, prefix: a.prefix, database: database) }
        for recorder in recorders {
            try await Self.everyMessageCommitted(recorder, prefix: a.prefix, database: database)
            // Live messages per topic never go back (a duplicate of the same version may come).
            for topic in Set(recorder.messages.map(\.topic)) {
                let versions = recorder.messages(on: topic).filter { !$0.retained }.compactMap { $0.json?["version"]?.integralValue }
                #expect(versions == versions.sorted(), "\(topic) went back: \(versions)")
            }
        }
    }

    /// A `ConfbusClient` given both brokers (and no HTTP, so MQTT alone can carry it) moves to the
    /// second when its broker dies: it gets the next version from there and its ack reaches confbus.
    @Test(.timeLimit(.minutes(2)))
    func aClientMovesToTheNextBrokerWhenItsBrokerDies() async throws {
        let first = try Broker()
        let second = try Broker()
        try await first.start()
        defer { first.stop() }
        try await second.start()
        defer { second.stop() }
        let node = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: try await Harness.createDatabase(), mqttURL: first.url,
                               environment: ["CONFBUS_MQTT_URLS": "\(first.url),\(second.url)"])
        try await node.start()
        defer { node.stop() }
        var configuration = ConfbusClientService.Configuration(service: "billing-api", instance: "web-failover")
        configuration.mqttURLs = [first.url, second.url]
        configuration.brokerFailover = .seconds(1)
        configuration.topicPrefix = node.prefix
        configuration.startup = .empty
        let client = ConfbusClientService(configuration: configuration, logger: Harness.logger, accept: { _ in .accept })
        let running = Task { try await client.run() }
        defer { running.cancel() }
        try await Harness.eventually("the client holds version 1 from the first broker") { client.heldVersion == 1 }

        first.stop()
        let written = try await node.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                             body: Data(#"{"database": {"pool_size": 33}}"#.utf8))
        try #require(written.status == 200, "\(written.text)")
        let version = try #require(written.json?["version"]?.integralValue)
        try await Harness.eventually("the client gets version \(version) from the second broker", timeout: .seconds(15)) { client.heldVersion == version }
        try await Harness.eventually("its ack reaches confbus through the second broker") {
            let instances = try await node.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == "web-failover" && $0["applied_version"]?.integralValue == version }
        }
    }

    /// `docker/compose.ha.yaml` stays the layout these tests run: both confbus nodes have the same
    /// settings but their node id, name both PostgreSQL services as hosts and both brokers, and the
    /// standby is made by `pg_basebackup -R`.
    @Test func theShippedLayoutNamesEveryDatabaseHostAndBroker() throws {
        let file = Harness.repo.appendingPathComponent("docker/compose.ha.yaml").path
        let services = try #require(try YAMLLoader().load(contentsOf: file).value["services"]?.objectValue)
        let nodes = services.keys.filter { $0.hasPrefix("confbus-") }.sorted()
        #expect(nodes == ["confbus-1", "confbus-2"])
        let environments = nodes.map { services[$0]?["environment"]?.objectValue ?? [:] }
        #expect(Set(environments.map { $0["CONFBUS_NODE_ID"] }).count == 2)
        #expect(environments[0].filter { $0.key != "CONFBUS_NODE_ID" } == environments[1].filter { $0.key != "CONFBUS_NODE_ID" })
        let environment = environments[0]
        let databaseHosts = try PostgresClient.Configuration.cluster(url: try #require(environment["CONFBUS_DATABASE_URL"]?.stringValue))
            .map { "\($0.host ?? ""):\($0.port ?? 0)" }
        let postgres = services.keys.filter { $0.hasPrefix("postgres-") }.sorted()
        #expect(Set(databaseHosts) == Set(postgres.map { "\($0):5432" }) && postgres.count == 2)
        let brokers = try #require(environment["CONFBUS_MQTT_URLS"]?.stringValue)
            .replacingOccurrences(of: #"\$\{[^}]*\}"#, with: "secret", options: .regularExpression)
            .split(separator: ",").compactMap { URLComponents(string: String($0))?.host }
        #expect(Set(brokers) == Set(services.keys.filter { $0.hasPrefix("mosquitto-") }) && brokers.count == 2)
        let standby = try String(contentsOf: Harness.repo.appendingPathComponent("docker/postgres/standby.sh"), encoding: .utf8)
        #expect(standby.contains("pg_basebackup -h postgres-primary") && standby.contains(" -R "))
        #expect(services["postgres-standby"]?["entrypoint"] == ["bash", "/standby.sh"])
    }

    /// Without a failover: a retained message at the database's own number but with another config
    /// (its checksum its config's: a client would apply it) is repaired above it; a forged one (a
    /// checksum that is not its config's: every client drops it) is simply overwritten.
    @Test(.timeLimit(.minutes(2)))
    func aGenuineForeignVersionIsRepairedAndAForgedOneOverwritten() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (node, _) = try await Harness.startedConfbus(broker: broker)
        defer { node.stop() }
        let probe = try await MQTTProbe(url: broker, name: "intruder")
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(node.topic("update", "#"))
        let update = node.topic("update", "report-worker")
        let current = try await probe.waitFor(update)
        let version = try #require(current.json?["version"]?.integralValue)

        // Forged: version 50, a checksum that is not its config's.
        let forged = JSONValue.object(["service": "report-worker", "environment": "development", "version": 50,
                                       "checksum": .string("sha256:" + String(repeating: "b", count: 64)), "config": ["concurrency": 1]])
        try await probe.publish(update, forged.serialized(.canonical), retain: true)
        try await Self.converged(broker: broker, prefix: node.prefix, database: node.databaseURL)
        #expect(try await Harness.versions(in: node.databaseURL, service: "report-worker") == [version])

        // Genuine: the database's own number, another config with its true checksum.
        let config: JSONValue = ["concurrency": 77, "queue": "elsewhere"]
        let foreign = JSONValue.object(["service": "report-worker", "environment": "development", "version": .integer(version),
                                        "checksum": .string(config.checksum), "config": config])
        try await probe.publish(update, foreign.serialized(.canonical), retain: true)
        try await Harness.eventually("the service is repaired above the foreign version") {
            try await Harness.versions(in: node.databaseURL, service: "report-worker") == [version, version + 1]
        }
        try await Self.converged(broker: broker, prefix: node.prefix, database: node.databaseURL)
        let services = try await node.get("/v1/services").json?["services"]?.arrayValue ?? []
        #expect(services.first { $0["service"] == "report-worker" }?["state"] == "diverged")
    }

    /// The choice itself, answer by answer.
    @Test func thePrimaryIsTheServerOutOfRecoveryOnTheNewestTimeline() {
        var choice = PrimaryChoice()
        #expect(choice.observe([.primary(timeline: 1), .standby(timeline: 1)]) == .chose(member: 0, timeline: 1))
        #expect(choice.observe([.unreachable, .standby(timeline: 1)]) == .lost)
        #expect(choice.observe([.unreachable, .primary(timeline: 2)]) == .chose(member: 1, timeline: 2))
        // The old primary back on timeline 1: fenced, though listed first.
        #expect(choice.observe([.primary(timeline: 1), .primary(timeline: 2)]) == .none)
        #expect(choice.primary == 1 && choice.fenced == [0])
        // Even alone, it is never written through again.
        #expect(choice.observe([.primary(timeline: 1), .unreachable]) == .lost)
        #expect(choice.primary == nil && choice.fenced == [0])
        // A fresh choice over both takes the newer one; a standby's timeline counts as seen too.
        var fresh = PrimaryChoice()
        #expect(fresh.observe([.primary(timeline: 1), .primary(timeline: 2)]) == .chose(member: 1, timeline: 2))
        var behind = PrimaryChoice()
        #expect(behind.observe([.primary(timeline: 3), .standby(timeline: 4)]) == .none)
        #expect(behind.primary == nil && behind.fenced == [0])
        // A single server that is in recovery is not written through.
        var single = PrimaryChoice(primary: 0)
        #expect(single.observe([.standby(timeline: 1)]) == .lost)
    }

    @Test func aDatabaseURLMayNameSeveralHosts() throws {
        let hosts = try PostgresClient.Configuration.cluster(url: "postgres://u:p%40ss@db1:5433,db2,[::1]:5434/cfg?sslmode=disable")
        #expect(hosts.map(\.host) == ["db1", "db2", "::1"])
        #expect(hosts.map(\.port) == [5433, 5432, 5434])
        #expect(hosts.allSatisfy { $0.username == "u" && $0.password == "p@ss" && $0.database == "cfg" })
        #expect(throws: DatabaseURLError.self) { try PostgresClient.Configuration.cluster(url: "postgres://u@db1,,db2/cfg") }
        #expect(throws: DatabaseURLError.self) { try PostgresClient.Configuration.cluster(url: "db1:5432") }
    }

    static func patch(_ node: Confbus, concurrency: Int) async throws -> Confbus.HTTPResult {
        try await node.request("PATCH", "/v1/config/report-worker/override", headers: AdminTests.admin(),
                               body: Data(#"{"concurrency": \#(concurrency)}"#.utf8))
    }

    /// What a node writing or relaying through this server would move: the newest version of any
    /// service, the outbox, the relay lease and what was published.
    static func relayState(_ url: String) async throws -> [String] {
        try await Harness.withPostgres(url) { client in
            var state: [String] = []
            for try await row in try await client.query("""
                SELECT 'versions ' || count(*) || ' ' || coalesce(max(created_at)::text, '') FROM config_versions
                UNION ALL SELECT 'outbox ' || count(*) FROM outbox
                UNION ALL SELECT 'lease ' || holder || ' ' || epoch || ' ' || expires_at FROM relay_lease
                UNION ALL SELECT 'published ' || sum(published_version) FROM services
                """, logger: Harness.logger).decode(String.self) { state.append(row) }
            return state
        }
    }

    /// The database's released (version, checksum) of every service.
    static func released(_ url: String) async throws -> [String: (version: Int, checksum: String)] {
        try await Harness.withPostgres(url) { client in
            var released: [String: (Int, String)] = [:]
            for try await (name, version, checksum) in try await client.query("""
                SELECT s.name, v.version, v.checksum FROM services s
                JOIN config_versions v ON v.service = s.name AND v.version = s.released_version
                """, logger: Harness.logger).decode((String, Int, String).self) { released[name] = (version, checksum) }
            return released
        }
    }

    /// Every service's retained update on `broker` carries the database's released version and
    /// checksum (read by a new subscriber, as a new instance would).
    static func converged(broker: String, prefix: String, database: String, timeout: Duration = .seconds(30)) async throws {
        var last = ""
        do {
            try await Harness.eventually("\(broker) holds the database's latest of every service", timeout: timeout) {
                let expected = try await released(database)
                let reader = try await MQTTProbe(url: broker, name: "reader")
                try reader.subscribe("\(prefix)/update/#")
                try await Task.sleep(for: .milliseconds(500))
                let retained = reader.messages.filter(\.retained)
                await reader.shutdown()
                var held: [String: (Int, String)] = [:]
                for message in retained {
                    guard let json = message.json, case .string(let checksum)? = json["checksum"],
                          let version = json["version"]?.integralValue else { continue }
                    held[String(message.topic.dropFirst(prefix.count + "/update/".count))] = (version, checksum)
                }
                let wrong = expected.filter { held[$0.key]?.0 != $0.value.version || held[$0.key]?.1 != $0.value.checksum }
                last = wrong.map { "\($0.key): database \($0.value.version), broker \(held[$0.key].map { String($0.0) } ?? "none")" }
                    .sorted().joined(separator: "; ")
                return !expected.isEmpty && wrong.isEmpty
            }
        } catch {
            Issue.record("not converged: \(last)")
            throw error
        }
    }

    /// No message the recorder saw carried a (version, checksum) the database does not hold,
    /// except `lost` (service and version) that a test lost on purpose with an asynchronous standby.
    static func everyMessageCommitted(_ recorder: MQTTProbe, prefix: String, database: String,
                                      lost: Set<String> = []) async throws {
        let stored = try await Harness.withPostgres(database) { client in
            var stored = Set<String>()
            for try await (service, version, checksum) in try await client.query(
                "SELECT service, version, checksum FROM config_versions", logger: Harness.logger).decode((String, Int, String).self) {
                stored.insert("\(service) \(version) \(checksum)")
            }
            return stored
        }
        var seen = 0
        for message in recorder.messages where message.topic.hasPrefix("\(prefix)/update/") {
            guard let json = message.json, case .string(let checksum)? = json["checksum"],
                  let version = json["version"]?.integralValue else { continue }
            let service = String(message.topic.dropFirst(prefix.count + "/update/".count))
            seen += 1
            if lost.contains("\(service) \(version)") { continue }
            #expect(stored.contains("\(service) \(version) \(checksum)"), "\(service) version \(version) was published but is not in the database")
        }
        #expect(seen > 0)
    }
}

extension Confbus {
    /// `stop()` (SIGTERM, then waiting for the exit) off the test pool's threads.
    func stopping() async { _ = try? await PrivatePostgres.offThePool { self.stop() } }
}
