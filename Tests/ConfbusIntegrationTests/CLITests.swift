import ConfbusCore
import Foundation
import Testing

/// The confbus command line against a running distributor.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct RemoteCLITests {
    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func cli(_ arguments: [String], confbus: Confbus?, token: String? = Confbus.adminToken, stdin: String? = nil) throws -> Run {
        let process = Process()
        process.executableURL = try Harness.binary()
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONFBUS_") }
        if let confbus { env["CONFBUS_URL"] = "http://127.0.0.1:\(confbus.httpPort)" }
        if let token { env["CONFBUS_TOKEN"] = token }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = stdin == nil ? FileHandle.nullDevice : nil
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self), stderr: String(decoding: stderr, as: UTF8.self))
    }

    @Test(.timeLimit(.minutes(3)))
    func commandsTalkToTheDistributor() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }

        let services = try Self.cli(["services"], confbus: confbus)
        #expect(services.status == 0)
        #expect(services.stdout.contains("SERVICE") && services.stdout.contains("billing-api"))
        let get = try Self.cli(["get", "billing-api", "--output", "json"], confbus: confbus)
        #expect(try JSONParser().parse(get.stdout)["version"] == .integer(1))
        #expect(try Self.cli(["get", "billing-api", "--pointer", "/database/port"], confbus: confbus).stdout == "5432\n")

        let dir = try Harness.temporaryDirectory("cli")
        let batch = dir.appendingPathComponent("batch.yaml")
        try """
            reason: more connections
            updates:
              - service: billing-api
                patch: {database: {pool_size: 25}}
            """.write(to: batch, atomically: true, encoding: .utf8)
        let dry = try Self.cli(["apply", "-f", batch.path, "--dry-run"], confbus: confbus)
        #expect(dry.status == 0)
        #expect(dry.stdout.contains("/database/pool_size") && dry.stdout.contains("25"))
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1])
        // Without a terminal and without --yes, nothing is applied.
        #expect(try Self.cli(["apply", "-f", batch.path], confbus: confbus).status == 2)
        let applied = try Self.cli(["apply", "-f", batch.path, "--yes"], confbus: confbus)
        #expect(applied.status == 0, "\(applied.stderr)")
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2])

        let history = try Self.cli(["history", "billing-api"], confbus: confbus)
        #expect(history.stdout.contains("batch") && history.stdout.contains("more connections"))
        let diff = try Self.cli(["diff", "billing-api", "--from", "1", "--to", "2", "--output", "json"], confbus: confbus)
        #expect(try JSONParser().parse(diff.stdout)["changes"]?.arrayValue?.count == 1)

        // Refused (invalid value): exit 1 with the path; usage: 2; unreachable: 3.
        try "updates: [{service: billing-api, patch: {database: {pool_size: 900}}}]\n".write(to: batch, atomically: true, encoding: .utf8)
        let refused = try Self.cli(["apply", "-f", batch.path, "--yes"], confbus: confbus)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("/database/pool_size"))
        #expect(try Self.cli(["rollback", "billing-api"], confbus: confbus).status == 2)
        #expect(try Self.cli(["services", "--url", "http://127.0.0.1:\(try Harness.freePort())"], confbus: nil).status == 3)
        #expect(try Self.cli(["apply", "-f", batch.path, "--yes"], confbus: confbus, token: "wrong").status == 1)

        let rollback = try Self.cli(["rollback", "billing-api", "--to", "1"], confbus: confbus)
        #expect(rollback.status == 0)
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "billing-api") == [1, 2, 3])

        let exported = dir.appendingPathComponent("export.json")
        #expect(try Self.cli(["export", "--history", "-o", exported.path], confbus: confbus).status == 0)
        let document = try JSONParser().parse(Array(Data(contentsOf: exported)))
        #expect(document["format"] == .string("confbus-export/1"))
        // Services without an override layer are exported too.
        #expect(document["services"]?.arrayValue?.compactMap { $0["service"]?.stringValue } == ["billing-api", "feature-flags", "report-worker"])
        // Importing into the same distributor is refused: the services exist.
        #expect(try Self.cli(["import", "-f", exported.path], confbus: confbus).status == 1)
    }
}
