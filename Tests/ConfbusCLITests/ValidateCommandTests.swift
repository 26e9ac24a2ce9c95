import ConfbusCore
import ConfbusTestSupport
import Foundation
import Testing

/// `confbus validate` run as a user runs it: the built binary, a config tree on disk, exit codes.
@Suite(.serialized) struct ValidateCommandTests {
    static let repo = BuiltProducts.repository

    struct Run {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func binary() throws -> URL {
        try #require(BuiltProducts.confbus(), "build confbus first")
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = try binary()
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONFBUS_") }
        env.merge(environment) { _, new in new }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(status: process.terminationStatus, stdout: String(decoding: stdout, as: UTF8.self),
                   stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// A copy of the example tree to break.
    static func copyOfExampleTree() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("confbus-cli-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: repo.appendingPathComponent("config"), to: dir)
        return dir
    }

    static func edit(_ file: URL, _ transform: (String) -> String) throws {
        let text = try String(contentsOf: file, encoding: .utf8)
        let changed = transform(text)
        #expect(changed != text, "the edit changed nothing in \(file.lastPathComponent)")
        try changed.write(to: file, atomically: true, encoding: .utf8)
    }

    @Test(arguments: ["development", "production"])
    func exampleTreeIsValid(environment: String) throws {
        let run = try Self.run(["validate", "--config-dir", Self.repo.appendingPathComponent("config").path, "--environment", environment])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("3 services: 3 valid, 0 invalid"))
    }

    @Test func brokenTreeNamesEveryProblemWithItsLocation() throws {
        let tree = try Self.copyOfExampleTree()
        defer { try? FileManager.default.removeItem(at: tree) }
        let services = tree.appendingPathComponent("services")
        // One broken value, one bad YAML file, one invalid schema.
        try Self.edit(services.appendingPathComponent("billing-api/production.yaml")) { $0.replacingOccurrences(of: "pool_size: 50", with: "pool_size: 500") }
        try Self.edit(services.appendingPathComponent("feature-flags/production.yaml")) { $0 + "  oops: [unclosed\n" }
        try Self.edit(services.appendingPathComponent("report-worker/schema.yaml")) { $0.replacingOccurrences(of: "burst: { type: integer", with: "burst: { type: intger") }

        let run = try Self.run(["validate", "--config-dir", tree.path, "--environment", "production"])
        #expect(run.status == 1)
        #expect(run.stdout.contains("billing-api: \(services.path)/billing-api/production.yaml:3:3: /database/pool_size: must be at most 200"), "\(run.stdout)")
        #expect(run.stdout.contains("feature-flags: \(services.path)/feature-flags/production.yaml:"), "\(run.stdout)")
        #expect(run.stdout.contains("report-worker: \(services.path)/report-worker/schema.yaml:22:"), "\(run.stdout)")
        #expect(run.stdout.contains("/properties/rate_limit/properties/burst/type"))
        #expect(run.stdout.contains("3 services: 0 valid, 3 invalid"))
    }

    @Test func jsonFormatPrintsResolvedDocuments() throws {
        let run = try Self.run(["validate", "--config-dir", Self.repo.appendingPathComponent("config").path,
                                "--environment", "production", "--format", "json"])
        #expect(run.status == 0)
        let report = try JSONParser().parse(run.stdout)
        #expect(report["valid"] == .bool(true))
        let documents = try #require(report["documents"]?.arrayValue)
        #expect(documents.compactMap { $0["service"]?.stringValue } == ["billing-api", "feature-flags", "report-worker"])
        for document in documents {
            let config = try #require(document["config"])
            #expect(document["checksum"]?.stringValue == config.checksum)
            #expect(document["environment"] == .string("production"))
            #expect(document["version"] == nil)
            #expect(document["updated_at"]?.stringValue?.hasSuffix("Z") == true)
        }
        #expect(documents[0]["config"]?["database"]?["pool_size"] == .integer(50))
    }

    @Test func overrideVariablesApplyAndAreValidated() throws {
        let config = Self.repo.appendingPathComponent("config").path
        let ok = try Self.run(["validate", "--config-dir", config, "--format", "json"],
                              environment: ["CONFBUS_OVERRIDE__BILLING_API__DATABASE__POOL_SIZE": "99"])
        #expect(ok.status == 0)
        #expect(try JSONParser().parse(ok.stdout)["documents"]?.arrayValue?.first?["config"]?["database"]?["pool_size"] == .integer(99))
        let refused = try Self.run(["validate", "--config-dir", config],
                                   environment: ["CONFBUS_OVERRIDE__BILLING_API__DATABASE__POOL_SIZE": "500"])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("/database/pool_size: must be at most 200"))
        #expect(refused.stdout.contains("CONFBUS_OVERRIDE__BILLING_API__DATABASE__POOL_SIZE"))
        let stray = try Self.run(["validate", "--config-dir", config], environment: ["CONFBUS_OVERRIDE__NOPE__X": "1"])
        #expect(stray.status == 0)
        #expect(stray.stderr.contains("CONFBUS_OVERRIDE__NOPE__X names no service"))
    }

    @Test func explainShowsTheLayerOfEveryValue() throws {
        let run = try Self.run(["validate", "--config-dir", Self.repo.appendingPathComponent("config").path,
                                "--environment", "production", "--explain"])
        #expect(run.status == 0)
        #expect(run.stdout.contains("/database/pool_size = 50  ← environment "))
        #expect(run.stdout.contains("/database/port = 5432  ← schema default"))
        #expect(run.stdout.contains("/database/name = \"billing\"  ← defaults "))
    }

    @Test func environmentFromVariableAndUsageErrors() throws {
        let config = Self.repo.appendingPathComponent("config").path
        let viaEnv = try Self.run(["validate", "--config-dir", config, "--format", "json"], environment: ["CONFBUS_ENVIRONMENT": "production"])
        #expect(try JSONParser().parse(viaEnv.stdout)["documents"]?.arrayValue?.first?["environment"] == .string("production"))
        #expect(try Self.run(["validate", "--config-dir", config, "--environment", "../etc"]).status == 2)
        #expect(try Self.run(["validate", "--format", "xml"]).status == 2)
        #expect(try Self.run(["validate", "--config-dir", "/nonexistent"]).status == 1)
    }
}
