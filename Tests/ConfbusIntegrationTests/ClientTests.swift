import ConfbusClient
import ConfbusCore
import Configuration
import Foundation
import Testing

/// The client library against a running confbus, real PostgreSQL and mosquitto (issue 10).
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct ClientLibraryTests {
    static func client(_ confbus: Confbus?, broker: String?, cache: String?, startup: ConfbusClientService.StartupPolicy,
                       instance: String = "web-\(UUID().uuidString.prefix(6).lowercased())",
                       accept: @escaping @Sendable (ClientDocument) async -> ConfbusClientService.Verdict = { _ in .accept }) -> ConfbusClientService {
        var configuration = ConfbusClientService.Configuration(
            service: "billing-api", instance: instance,
            serverURL: confbus.map { "http://127.0.0.1:\($0.httpPort)" } ?? "http://127.0.0.1:\((try? Harness.freePort()) ?? 9)",
            mqttURL: broker)
        configuration.topicPrefix = confbus?.prefix ?? "nobody"
        configuration.cacheDirectory = cache
        configuration.startup = startup
        configuration.recheckInterval = .seconds(2)
        configuration.serverWait = .seconds(1)
        configuration.token = Confbus.adminToken
        return ConfbusClientService(configuration: configuration, logger: Harness.logger, accept: accept)
    }

    @Test(.timeLimit(.minutes(1)))
    func withNoServerAndNoCacheTheStartupPolicyDecides() async throws {
        let cache = try Harness.temporaryDirectory("client-cache").path
        await #expect(throws: ConfbusClientService.StartupFailure.self) {
            try await Self.client(nil, broker: nil, cache: cache, startup: .requireServer).start()
        }
        await #expect(throws: ConfbusClientService.StartupFailure.self) {
            try await Self.client(nil, broker: nil, cache: cache, startup: .lastKnownGood(maxWait: .milliseconds(300))).start()
        }
        let empty = Self.client(nil, broker: nil, cache: cache, startup: .empty)
        try await empty.start()
        #expect(empty.heldVersion == 0)
        #expect(try empty.provider.value(forKey: AbsoluteConfigKey(["database", "pool_size"]), type: .int).value == nil)
    }

    @Test(.timeLimit(.minutes(2)))
    func theClientFollowsPatchesRefusesWhatTheAppRefusesAndStartsFromItsCache() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let cache = try Harness.temporaryDirectory("client-cache").path
        let client = Self.client(confbus, broker: broker, cache: cache, startup: .requireServer) { document in
            document.config["database"]?["pool_size"] == .integer(77) ? .reject("pool_size 77 is not allowed here") : .accept
        }
        try await client.start()
        #expect(client.heldVersion == 1)
        let running = Task { try await client.run() }
        defer { running.cancel() }
        try await Harness.eventually("the client holds version 1") { client.heldVersion == 1 }
        let reader = ConfigReader(provider: client.provider)
        #expect(reader.int(forKey: "database.pool_size") == 10)
        // The schema marks database.password writeOnly: it comes back secret, pool_size does not.
        let password = AbsoluteConfigKey(["database", "password"])
        #expect(try client.provider.value(forKey: password, type: .string).value?.isSecret == true)
        #expect(try client.provider.value(forKey: AbsoluteConfigKey(["database", "pool_size"]), type: .int).value?.isSecret == false)
        // The instance registered and acked over MQTT.
        try await Harness.eventually("the instance is listed with version 1 applied") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(client.configuration.instance) && $0["applied_version"] == .integer(1) }
        }

        // A PATCH reaches a watcher.
        let watched = Task {
            try await client.provider.watchValue(forKey: AbsoluteConfigKey(["database", "pool_size"]), type: .int) { updates in
                for await update in updates {
                    if case .int(40)? = try update.get().value?.content { return true }
                }
                return false
            }
        }
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 40}}"#.utf8)).status == 200)
        #expect(try await watched.value)
        #expect(client.heldVersion == 2)

        // A version the application refuses is acked rejected and not applied.
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 77}}"#.utf8)).status == 200)
        try await Harness.eventually("the refusal is acked") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(client.configuration.instance) && $0["ack_status"] == "rejected" && $0["applied_version"] == .integer(2) }
        }
        #expect(reader.int(forKey: "database.pool_size") == 40)

        // A forged document (another checksum) and a stale one are dropped.
        let probe = try await MQTTProbe(url: broker)
        let forged = JSONValue.object(["service": "billing-api", "environment": "development", "version": 50,
                                       "checksum": .string("sha256:" + String(repeating: "a", count: 64)), "config": ["database": ["pool_size": 1]]])
        try await probe.publish(confbus.topic("update", "billing-api"), forged.serialized(.canonical))
        try await Harness.eventually("the forged document is counted") { await client.dropped()[.checksumMismatch] == 1 }
        #expect(client.heldVersion == 2 && reader.int(forKey: "database.pool_size") == 40)
        await probe.shutdown()
        running.cancel()
        _ = try? await running.value

        // With confbus gone, a new client starts from the cache: version 2, verified.
        confbus.stop()
        let restarted = Self.client(confbus, broker: nil, cache: cache, startup: .lastKnownGood(maxWait: .milliseconds(500)))
        try await restarted.start()
        #expect(restarted.heldVersion == 2)
        #expect(ConfigReader(provider: restarted.provider).int(forKey: "database.pool_size") == 40)
        // Which values are secret was cached too.
        #expect(try restarted.provider.value(forKey: password, type: .string).value?.isSecret == true)
    }

    /// An open reader gets billing-api with its secret masked, and says so (`Confbus-Masked`): a client
    /// without a token that sees it refuses the pull by that reason, not as a forged document.
    @Test(.timeLimit(.minutes(1)))
    func aPullWithMaskedSecretsIsRefusedWithItsReason() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let open = try await confbus.get("/v1/config/billing-api")
        #expect(open.headers["confbus-masked"] == "true")
        #expect(try await confbus.get("/v1/config/billing-api", headers: AdminTests.admin()).headers["confbus-masked"] == nil)
        var configuration = Self.client(confbus, broker: nil, cache: nil, startup: .requireServer).configuration
        configuration.token = nil
        let client = ConfbusClientService(configuration: configuration, logger: Harness.logger)
        do {
            try await client.start()
            Issue.record("a masked document must not start the client")
        } catch let failure as ConfbusClientService.StartupFailure {
            #expect(failure.description.contains("read token"), "\(failure)")
        }
        #expect(client.heldVersion == 0)
        let dropped = await client.dropped()
        #expect((dropped[.masked] ?? 0) >= 1 && dropped[.checksumMismatch] == nil)
    }

    /// An ack sent while confbus was away from the broker is lost (acks are not retained); the
    /// instance's retained health carries the version it runs, so confbus learns it all the same.
    @Test(.timeLimit(.minutes(1)))
    func retainedHealthCarriesTheVersionRunAndConfbusRecordsIt() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let client = Self.client(confbus, broker: broker, cache: nil, startup: .requireServer)
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        let healthTopic = confbus.topic("health", "billing-api/\(client.configuration.instance)")
        try probe.subscribe(healthTopic)
        let running = Task { try await client.run() }
        defer { running.cancel() }
        try await Harness.eventually("the client's health says it runs version 1") {
            probe.messages(on: healthTopic).contains { $0.json?["status"] == "online" && $0.json?["version"] == 1 }
        }
        // confbus's half: an instance it never heard an ack from, known by its health alone.
        try await probe.publish(confbus.topic("health", "billing-api/silent-acker"), #"{"status":"online","version":1}"#, retain: true)
        try await Harness.eventually("the instance is listed as running version 1") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == "silent-acker" && $0["applied_version"] == 1 && $0["health"] == "online" }
        }
        // The periodic check (every 2 s here) is an ETag check: answered 304, the document not sent again.
        try await Harness.eventually("a recheck is answered 304") {
            let metrics = String(decoding: try await confbus.get("/metrics").body, as: UTF8.self)
            return metrics.split(separator: "\n").contains { $0.contains("route=\"/v1/config/{service}\"") && $0.contains("status=\"304\"") }
        }
        // The drift view: what each registered with, and how long a lagging one has lagged.
        try await Harness.eventually("the client is listed with the rollout feature") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(client.configuration.instance) && $0["features"] == ["rollout"] && $0["lagging_since"] == .null }
        }
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"http": {"port": 8083}}"#.utf8)).status == 200)
        let version2 = try #require(try await confbus.get("/v1/config/billing-api?version=2", headers: AdminTests.admin()).json)
        try await Task.sleep(for: .milliseconds(300))
        let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
        let silent = try #require(instances.first { $0["instance"] == "silent-acker" })
        #expect(silent["lagging"] == true && silent["lagging_since"] == version2["updated_at"], "\(silent)")
        #expect((silent["lag_seconds"]?.doubleValue ?? -1) >= 0.2)
        try await probe.publish(confbus.topic("health", "billing-api/silent-acker"), "", retain: true)
    }

    /// CONTRACT.md §8 from the instance's side: it registers with the rollout feature, takes a
    /// candidate from `config/rollout/<service>` only when it is in the cohort, verifies it like any
    /// document, and acks it; the rollback (a higher version on the update topic) replaces it.
    @Test(.timeLimit(.minutes(2)))
    func aCandidateIsAppliedOnlyByItsCohort() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let probe = try await MQTTProbe(url: broker)
        defer { Task { await probe.shutdown() } }
        try probe.subscribe(confbus.topic("register", "billing-api"))
        let client = Self.client(confbus, broker: broker, cache: nil, startup: .requireServer)
        try probe.subscribe(confbus.topic("ack", "billing-api/\(client.configuration.instance)"))
        let running = Task { try await client.run() }
        defer { running.cancel() }
        try await Harness.eventually("the client holds version 1") { client.heldVersion == 1 }
        try await Harness.eventually("it registered with the rollout feature") {
            probe.messages(on: confbus.topic("register", "billing-api")).contains { message in
                let body = try? JSONParser().parse(message.payload)
                return body?["instance"] == .string(client.configuration.instance) && body?["features"] == ["rollout"]
            }
        }
        let reader = ConfigReader(provider: client.provider)
        let held = try #require(client.heldConfig)
        let candidateConfig = MergePatch.apply(["database": ["pool_size": 33]], to: held)
        func rollout(cohort: [String], config: JSONValue, checksum: String? = nil) -> String {
            JSONValue.object(["rollout": "r-test", "service": "billing-api", "version": 2, "checksum": .string(checksum ?? config.checksum),
                              "config": config, "stable_version": 1, "step": 0, "cohort": .array(cohort.map(JSONValue.string))]).serialized(.canonical)
        }
        let topic = confbus.topic("rollout", "billing-api")
        // Another cohort: not applied.
        try await probe.publish(topic, rollout(cohort: ["someone-else"], config: candidateConfig), retain: true)
        try await Task.sleep(for: .milliseconds(500))
        #expect(client.heldVersion == 1 && reader.int(forKey: "database.pool_size") == 10)
        // Its cohort, but a checksum that is not the config's: dropped and counted.
        try await probe.publish(topic, rollout(cohort: [client.configuration.instance], config: candidateConfig,
                                               checksum: "sha256:" + String(repeating: "0", count: 64)), retain: true)
        try await Harness.eventually("the forged candidate is counted") { await client.dropped()[.checksumMismatch] == 1 }
        #expect(client.heldVersion == 1)
        // Its cohort: applied and acked.
        try await probe.publish(topic, rollout(cohort: ["someone-else", client.configuration.instance], config: candidateConfig), retain: true)
        try await Harness.eventually("the candidate is applied") { client.heldVersion == 2 }
        #expect(reader.int(forKey: "database.pool_size") == 33)
        // (confbus itself records no ack of a version it never made: the ack is read off the broker.)
        try await Harness.eventually("the candidate is acked applied") {
            probe.messages(on: confbus.topic("ack", "billing-api/\(client.configuration.instance)")).contains {
                $0.json?["version"] == 2 && $0.json?["status"] == "applied"
            }
        }
        // The rollout ends (an empty retained message); a rollback version above it replaces the candidate.
        try await probe.publish(topic, "", retain: true)
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"http": {"port": 8081}}"#.utf8)).status == 200)
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"http": {"port": 8082}}"#.utf8)).status == 200)
        try await Harness.eventually("version 3 replaces the candidate") { client.heldVersion == 3 }
        #expect(reader.int(forKey: "database.pool_size") == 10 && reader.int(forKey: "http.port") == 8082)
    }

    @Test(.timeLimit(.minutes(2)))
    func withTheBrokerDownUpdatesArriveByLongPollAndARestartMakesNoVersion() async throws {
        _ = try #require(TestServers.mqttURL)
        let broker = try Broker()
        try await broker.start()
        defer { broker.stop() }
        let tree = try Harness.copyOfExampleTree()
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker.url)
        try await confbus.start()
        defer { confbus.stop() }
        let client = Self.client(confbus, broker: broker.url, cache: try Harness.temporaryDirectory("client-cache").path, startup: .requireServer)
        try await client.start()
        let running = Task { try await client.run() }
        defer { running.cancel() }
        try await Harness.eventually("acked over MQTT") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(client.configuration.instance) && $0["applied_version"] == .integer(1) }
        }
        // The broker dies: the PATCH still reaches the client, by long-poll.
        broker.stop()
        try await Task.sleep(for: .milliseconds(500))
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 33}}"#.utf8)).status == 200)
        try await Harness.eventually("version 2 by long-poll") { client.heldVersion == 2 }
        #expect(ConfigReader(provider: client.provider).int(forKey: "database.pool_size") == 33)
        // The broker comes back: once both ends are connected again, the next version comes over MQTT and is acked.
        // (The ack of version 2, made while the broker was away, is sent on the client's reconnect; whether
        // confbus is subscribed again by then is a race this test does not rely on.)
        try await broker.start()
        try await Harness.eventually("confbus is connected to the broker again") {
            try await confbus.get("/readyz").json?["mqtt"] == "connected"
        }
        try await Task.sleep(for: .seconds(1))
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 34}}"#.utf8)).status == 200)
        try await Harness.eventually("version 3 applied and acked") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(client.configuration.instance) && $0["applied_version"] == .integer(3) }
        }
        // confbus restarts: the client stays at version 3 (a retained replay is stale) and no version is made.
        confbus.stop()
        confbus.prefixOverride = confbus.prefix
        try await confbus.start()
        try await Task.sleep(for: .seconds(1))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2, 3])
        #expect(client.heldVersion == 3)
        #expect(await client.dropped()[.checksumMismatch] == nil)
        running.cancel()
    }
}
