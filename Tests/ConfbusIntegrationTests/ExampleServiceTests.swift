import ConfbusCore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing

/// `Examples/BillingService` (issue 10, item 3), the built binary against a running confbus, real
/// PostgreSQL and mosquitto: its `GET /settings` follows an operator's PATCH without a restart, and
/// a version its accept hook refuses is acked `rejected` while it keeps serving the last good one.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct ExampleServiceTests {
    static func settings(_ port: Int) async -> JSONValue? {
        guard let (data, _) = try? await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(port)/settings")!) else { return nil }
        return try? JSONParser().parse(Array(data))
    }

    @Test(.timeLimit(.minutes(2)))
    func theExampleChangesLiveWhenAnOperatorPatches() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let binary = try Harness.binary().deletingLastPathComponent().appendingPathComponent("billing-example")
        try #require(FileManager.default.isExecutableFile(atPath: binary.path), "build billing-example first")
        let dir = try Harness.temporaryDirectory("example")
        let port = try Harness.freePort()
        let instance = "example-\(UUID().uuidString.prefix(6).lowercased())"
        let log = touch(dir.appendingPathComponent("example.log"))
        let process = Process()
        process.executableURL = binary
        process.arguments = ["--instance", instance, "--url", "http://127.0.0.1:\(confbus.httpPort)", "--mqtt-url", broker,
                             "--topic-prefix", confbus.prefix, "--cache-dir", dir.appendingPathComponent("cache").path, "--port", String(port)]
        // A token that sees billing-api's secrets: a pull masked for an open reader could not be verified.
        process.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONFBUS_") }
            .merging(["CONFBUS_TOKEN": Confbus.adminToken]) { $1 }
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        track(process)
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

        try await Harness.eventually("the example serves version 1") {
            await Self.settings(port)?["version"] == 1
        }
        #expect(await Self.settings(port)?["pool_size"] == 10)
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 40}}"#.utf8)).status == 200)
        try await Harness.eventually("the PATCH reaches GET /settings") {
            let now = await Self.settings(port)
            return now?["version"] == 2 && now?["pool_size"] == 40
        }
        // Its hook refuses a pool above 100 (the schema allows 200): acked rejected, and it goes on with 40.
        #expect(try await confbus.request("PATCH", "/v1/config/billing-api/override", headers: AdminTests.admin(),
                                          body: Data(#"{"database": {"pool_size": 150}}"#.utf8)).status == 200)
        try await Harness.eventually("the refusal is acked") {
            let instances = try await confbus.get("/v1/services/billing-api/instances").json?["instances"]?.arrayValue ?? []
            return instances.contains { $0["instance"] == .string(instance) && $0["ack_status"] == "rejected" && $0["applied_version"] == 2 }
        }
        #expect(await Self.settings(port)?["pool_size"] == 40)
        // SIGTERM: a clean stop.
        kill(process.processIdentifier, SIGTERM)
        let deadline = ContinuousClock.now + .seconds(15)
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        #expect(!process.isRunning && process.terminationStatus == 0, "\((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
    }
}
