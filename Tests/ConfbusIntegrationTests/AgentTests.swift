import ConfbusCore
import Foundation
import Testing

/// `confbus agent` end to end (issue 10): the built binary as a sidecar against a running confbus,
/// real PostgreSQL and mosquitto.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct AgentTests {
    final class AgentProcess: @unchecked Sendable {
        let process = Process()
        let log: URL

        init(_ arguments: [String], in dir: URL) throws {
            log = touch(dir.appendingPathComponent("agent-\(UUID().uuidString.prefix(4)).log"))
            process.executableURL = try Harness.binary()
            process.arguments = ["agent"] + arguments
            process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONFBUS_") }
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.currentDirectoryURL = dir
            try process.run()
            track(process)
        }

        func exit(timeout: Duration = .seconds(20)) async throws -> Int32 {
            let deadline = ContinuousClock.now + timeout
            while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit(); return -1 }
            return process.terminationStatus
        }

        var text: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
    }

    /// `--mqtt-url a,b`: with the first broker down, the agent moves to the second and registers and
    /// says `online` there (CONTRACT.md §11), while the file still follows the server.
    @Test(.timeLimit(.minutes(1)))
    func theAgentMovesToTheNextBrokerOfItsList() async throws {
        let dead = try Broker()  // never started: nothing listens on its port
        let live = try Broker()
        try await live.start()
        defer { live.stop() }
        let confbus = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: try await Harness.createDatabase(), mqttURL: live.url)
        try await confbus.start()
        defer { confbus.stop() }
        let dir = try Harness.temporaryDirectory("agent")
        let output = dir.appendingPathComponent("app.env")
        let probe = try await MQTTProbe(url: live.url)
        defer { Task { await probe.shutdown() } }
        let health = confbus.topic("health", "billing-api/agent-two")
        try probe.subscribe(health)
        try probe.subscribe(confbus.topic("register", "billing-api"))
        let agent = try AgentProcess(["--service", "billing-api", "--instance", "agent-two", "--output", output.path, "--format", "env",
                                      "--url", confbus.baseURL, "--mqtt-url", "\(dead.url),\(live.url)", "--topic-prefix", confbus.prefix,
                                      "--token", Confbus.adminToken, "--cache-dir", dir.appendingPathComponent("cache").path], in: dir)
        defer { kill(agent.process.processIdentifier, SIGKILL) }
        try await Harness.eventually("the file holds version 1") { Self.read(output).contains("DATABASE_POOL_SIZE=10\n") }
        _ = try await probe.waitFor(health, timeout: .seconds(20)) { $0.json?["status"] == "online" }
        #expect(probe.messages(on: confbus.topic("register", "billing-api")).contains { $0.json?["instance"] == "agent-two" })
    }

    static func read(_ path: URL) -> String { (try? String(contentsOf: path, encoding: .utf8)) ?? "" }

    @Test(.timeLimit(.minutes(2)))
    func withRequireServerAndNothingCachedTheAgentExits3() async throws {
        let dir = try Harness.temporaryDirectory("agent")
        let agent = try AgentProcess(["--service", "billing-api", "--instance", "web-1", "--output", dir.appendingPathComponent("app.json").path,
                                      "--url", "http://127.0.0.1:\(try Harness.freePort())", "--require-server",
                                      "--cache-dir", dir.appendingPathComponent("cache").path], in: dir)
        #expect(try await agent.exit() == 3, "\(agent.text)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("app.json").path))
    }

    @Test(.timeLimit(.minutes(3)))
    func theAgentWritesChecksReloadsAcksAndServesItsCache() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let dir = try Harness.temporaryDirectory("agent")
        let output = dir.appendingPathComponent("app.env")
        let reloads = dir.appendingPathComponent("reloads")
        // An instance id of its own: the broker is shared with tests running beside this one.
        let instance = "agent-\(UUID().uuidString.prefix(6).lowercased())"
        let arguments = ["--service", "billing-api", "--instance", instance, "--output", output.path, "--format", "env",
                         "--url", "http://127.0.0.1:\(confbus.httpPort)", "--mqtt-url", broker, "--topic-prefix", confbus.prefix,
                         "--token", Confbus.adminToken, "--cache-dir", dir.appendingPathComponent("cache").path,
                         // The check refuses a pool of 77 and says why on stderr; the reload counts itself.
                         "--check", "sh -c 'if grep -q DATABASE_POOL_SIZE=77 \"$0\"; then echo pool 77 refused >&2; exit 1; fi'",
                         "--exec", "echo reloaded >> \(reloads.path)"]
        let probe = try await MQTTProbe(url: broker)
        try probe.subscribe(confbus.topic("health", "billing-api/\(instance)"))
        let registrations = confbus.topic("register", "billing-api")
        try probe.subscribe(registrations)
        func registered() -> [JSONValue] {
            probe.messages(on: registrations).compactMap(\.json).filter { $0["instance"] == .string(instance) }
        }
        let agent = try AgentProcess(arguments, in: dir)
        try await Harness.eventually("the file holds version 1") { Self.read(output).contains("DATABASE_POOL_SIZE=10\n") }
        #expect(Self.read(output).contains("DATABASE_HOST=\""))
        try await Harness.eventually("acked applied") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(instance) && $0["applied_version"] == .integer(1) }
        }
        _ = try await probe.waitFor(confbus.topic("health", "billing-api/\(instance)")) { $0.json?["status"] == "online" }
        // By default the agent takes part in rollouts.
        #expect(registered().first?["features"] == ["rollout"])

        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 40}}"#.utf8)).status == 200)
        try await Harness.eventually("the file holds version 2") { Self.read(output).contains("DATABASE_POOL_SIZE=40\n") }
        try await Harness.eventually("the reload ran for each version") { Self.read(reloads) == "reloaded\nreloaded\n" }

        // The check refuses: acked rejected with its stderr, the file keeps version 2, no reload.
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 77}}"#.utf8)).status == 200)
        try await Harness.eventually("acked rejected") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(instance) && $0["ack_status"] == "rejected"
                && $0["detail"]?.stringValue?.contains("pool 77 refused") == true && $0["applied_version"] == .integer(2) }
        }
        #expect(Self.read(output).contains("DATABASE_POOL_SIZE=40\n") && Self.read(reloads) == "reloaded\nreloaded\n")

        // SIGTERM: offline, exit 0.
        agent.process.terminate()
        #expect(try await agent.exit() == 0, "\(agent.text)")
        _ = try await probe.waitFor(confbus.topic("health", "billing-api/\(instance)")) { $0.json?["status"] == "offline" }
        let afterStop = probe.messages(on: confbus.topic("health", "billing-api/\(instance)")).count

        // No server: a new agent serves the cached version 2 (even with --require-server), writing the file again.
        confbus.stop()
        try FileManager.default.removeItem(at: output)
        let registeredBefore = registered().count
        let offline = try AgentProcess(arguments + ["--require-server", "--no-rollouts"], in: dir)
        try await Harness.eventually("the cached config is written") { Self.read(output).contains("DATABASE_POOL_SIZE=40\n") }
        #expect(offline.process.isRunning)

        // SIGKILL: the broker publishes the Will.
        try await Harness.eventually("the new agent says online") {
            probe.messages(on: confbus.topic("health", "billing-api/\(instance)")).dropFirst(afterStop).contains { $0.json?["status"] == "online" }
        }
        // --no-rollouts: registered without the feature.
        try await Harness.eventually("the new agent registered") { registered().count > registeredBefore }
        #expect(registered().last?["features"] == nil)
        let count = probe.messages(on: confbus.topic("health", "billing-api/\(instance)")).count
        kill(offline.process.processIdentifier, SIGKILL)
        offline.process.waitUntilExit()
        _ = try await probe.waitFor(confbus.topic("health", "billing-api/\(instance)")) { _ in
            probe.messages(on: confbus.topic("health", "billing-api/\(instance)")).count > count
        }
        #expect(probe.messages(on: confbus.topic("health", "billing-api/\(instance)")).last?.json?["status"] == "offline")
        await probe.shutdown()
    }
}
