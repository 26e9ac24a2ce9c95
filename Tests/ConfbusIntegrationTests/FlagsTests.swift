import AsyncHTTPClient
import ConfbusClient
import ConfbusCore
import Foundation
import NIOCore
import Testing

/// Feature flags (issue 14, CONTRACT.md §12) against real PostgreSQL and mosquitto: the endpoints,
/// the CLI, `ConfbusProvider` and `confbus agent --flags-socket` all answer by the one rule.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct FlagsTests {
    static let pointer = "/flags/new_checkout"

    /// `POST /v1/flags/feature-flags/evaluate` for one context: pointer → (value, reason).
    static func evaluate(_ confbus: Confbus, key: String, attributes: JSONValue = [:], flags: [String]? = nil,
                         version: Int? = nil) async throws -> (version: Int, results: [String: FlagResult]) {
        var body: [String: JSONValue] = ["context": ["key": .string(key), "attributes": attributes]]
        if let flags { body["flags"] = .array(flags.map(JSONValue.string)) }
        var request = HTTPClientRequest(url: "\(confbus.baseURL)/v1/flags/feature-flags/evaluate" + (version.map { "?version=\($0)" } ?? ""))
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(string: JSONValue.object(body).serialized(.canonical)))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let text = String(buffer: try await response.body.collect(upTo: 1 << 20))
        guard response.status == .ok, let json = try? JSONParser().parse(text) else { throw Failure(text: "\(response.status): \(text)") }
        var results: [String: FlagResult] = [:]
        for (pointer, result) in json["results"]?.objectValue ?? [:] {
            let value: FlagValue = result["value"]?.boolValue.map(FlagValue.bool) ?? .variant(result["value"]?.stringValue ?? "?")
            results[pointer] = FlagResult(value: value, reason: result["reason"]?.stringValue ?? "")
        }
        return (json["version"]?.integralValue ?? 0, results)
    }

    struct Failure: Error { var text: String }

    static func patch(_ confbus: Confbus, _ body: String) async throws -> Confbus.HTTPResult {
        try await confbus.request("PATCH", "/v1/config/feature-flags/override", headers: AdminTests.admin(["X-Confbus-Reason": "flags"]),
                                  body: Data(body.utf8))
    }

    /// The flags of the released version as `GET /v1/flags` lists them, parsed by the rule's own type.
    static func listed(_ confbus: Confbus) async throws -> (version: Int, flags: [String: FeatureFlag]) {
        let json = try #require(try await confbus.get("/v1/flags/feature-flags").json)
        var flags: [String: FeatureFlag] = [:]
        for entry in json["flags"]?.arrayValue ?? [] { flags[entry["pointer"]?.stringValue ?? ""] = try FeatureFlag(json: entry["flag"] ?? .null) }
        return (json["version"]?.integralValue ?? 0, flags)
    }

    @Test(.timeLimit(.minutes(2)))
    func theEndpointsAnswerByTheRule() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }

        let (version, flags) = try await Self.listed(confbus)
        #expect(version == 1)
        #expect(flags.keys.sorted() == ["/flags/bulk_export", "/flags/checkout_button", "/flags/dark_mode", "/flags/new_checkout"])
        #expect(flags["/flags/checkout_button"]?.variants.map(\.name) == ["blue", "green"])

        // A rollout of 30 % with a rule for the beta group.
        let patched = try await Self.patch(confbus, #"{"flags": {"new_checkout": {"rollout_percentage": 30, "rules": [{"attribute": "group", "op": "in", "values": ["beta"], "serve": true}]}}}"#)
        try #require(patched.status == 200, "\(patched.text)")
        let (released, now) = try await Self.listed(confbus)
        #expect(released == 2)
        let flag = try #require(now[Self.pointer])

        // 1,000 keys: the endpoint equals the formula, for every flag of the service.
        var on: Set<String> = []
        for n in 0..<1_000 {
            let key = "user-\(n)"
            let (answered, results) = try await Self.evaluate(confbus, key: key)
            #expect(answered == 2)
            for (pointer, expected) in now {
                let local = expected.evaluate(FlagContext(key: key), service: "feature-flags", pointer: JSONPointer(pointer)!)
                if results[pointer] != local { Issue.record("\(pointer) for \(key): server \(String(describing: results[pointer])), formula \(local)") }
            }
            if results[Self.pointer]?.value == .bool(true) { on.insert(key) }
        }
        #expect(abs(on.count - 300) <= 50, "\(on.count) of 1000 on at 30 %")
        #expect(flag.rolloutPercentage == 30)

        // A rule beats the rollout: a beta user whose bucket is out is on, by rule 0.
        let out = try #require((0..<1_000).map { "user-\($0)" }.first { !on.contains($0) })
        let beta = try await Self.evaluate(confbus, key: out, attributes: ["group": "beta"], flags: [Self.pointer])
        #expect(beta.results == [Self.pointer: FlagResult(value: .bool(true), reason: "rule:0")])

        // Raising the percentage keeps every key that was on.
        try #require(try await Self.patch(confbus, #"{"flags": {"new_checkout": {"rollout_percentage": 60}}}"#).status == 200)
        var stillOn = 0
        for key in on {
            let (answered, results) = try await Self.evaluate(confbus, key: key, flags: [Self.pointer])
            #expect(answered == 3)
            if results[Self.pointer] == FlagResult(value: .bool(true), reason: "rollout") { stillOn += 1 }
        }
        #expect(stillOn == on.count, "\(on.count - stillOn) keys turned off when the percentage rose")
        // The earlier version still answers as it did.
        #expect(try await Self.evaluate(confbus, key: out, flags: [Self.pointer], version: 2).results[Self.pointer]?.value == .bool(false))

        // A disabled flag is off, reason disabled, rules or not.
        try #require(try await Self.patch(confbus, #"{"flags": {"new_checkout": {"enabled": false}}}"#).status == 200)
        let disabled = try await Self.evaluate(confbus, key: "user-1", attributes: ["group": "beta"], flags: [Self.pointer])
        #expect(disabled.results == [Self.pointer: FlagResult(value: .bool(false), reason: "disabled")])

        // Requests the endpoint refuses.
        let noKey = try await confbus.request("POST", "/v1/flags/feature-flags/evaluate", headers: ["Content-Type": "application/json"],
                                              body: Data(#"{"context": {"attributes": {}}}"#.utf8))
        #expect(noKey.status == 400 && noKey.text.contains("/context/key"), "\(noKey.text)")
        let unknown = try await confbus.request("POST", "/v1/flags/feature-flags/evaluate", headers: ["Content-Type": "application/json"],
                                                body: Data(#"{"context": {"key": "u"}, "flags": ["/flags/nothing"]}"#.utf8))
        #expect(unknown.status == 404, "\(unknown.text)")
        #expect(try await confbus.get("/v1/flags/billing-api").json?["flags"]?.arrayValue == [], "a service without flags lists none")
        #expect(try await confbus.get("/v1/flags/nothing-here").status == 404)
    }

    /// A flag the schema marks secret is neither listed nor evaluated, for any reader.
    @Test(.timeLimit(.minutes(1)))
    func aSecretFlagIsNeverListed() async throws {
        let broker = try #require(TestServers.mqttURL)
        let tree = try Harness.copyOfExampleTree()
        let service = tree.appendingPathComponent("services/feature-flags")
        let schema = try String(contentsOf: service.appendingPathComponent("schema.yaml"), encoding: .utf8)
        try (schema + "  internal_kill: { $ref: \"urn:confbus:flag\", x-confbus-secret: true }\n")
            .write(to: service.appendingPathComponent("schema.yaml"), atomically: true, encoding: .utf8)
        let defaults = try String(contentsOf: service.appendingPathComponent("defaults.yaml"), encoding: .utf8)
        try (defaults + "internal_kill:\n  enabled: true\n  rules: [{ attribute: tenant, op: eq, values: [acme], serve: false }]\n")
            .write(to: service.appendingPathComponent("defaults.yaml"), atomically: true, encoding: .utf8)
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: broker)
        try await confbus.start()
        defer { confbus.stop() }
        let document = try await confbus.get("/v1/config/feature-flags", headers: AdminTests.admin())
        #expect(document.json?["config"]?["internal_kill"]?["enabled"] == true, "\(document.text)")
        for headers in [[:], AdminTests.admin()] {
            let listed = try await confbus.get("/v1/flags/feature-flags", headers: headers)
            #expect(listed.status == 200 && !listed.text.contains("internal_kill") && listed.text.contains("/flags/new_checkout"), "\(listed.text)")
            let all = try await Self.evaluate(confbus, key: "k")
            #expect(all.results["/internal_kill"] == nil && all.results["/flags/dark_mode"] != nil)
            let named = try await confbus.request("POST", "/v1/flags/feature-flags/evaluate", headers: headers.merging(["Content-Type": "application/json"]) { a, _ in a },
                                                  body: Data(#"{"context": {"key": "k"}, "flags": ["/internal_kill"]}"#.utf8))
            #expect(named.status == 404, "\(named.text)")
        }
    }

    /// An invalid flag is refused with the path of the offending member, and nothing is stored.
    @Test(.timeLimit(.minutes(1)))
    func anInvalidFlagIsA422WithItsPath() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let cases: [(String, String)] = [
            (#"{"flags": {"new_checkout": {"rollout_percentage": 150}}}"#, "/flags/new_checkout/rollout_percentage"),
            (#"{"flags": {"new_checkout": {"rollout_percent": 15}}}"#, "/flags/new_checkout/rollout_percent"),
            (#"{"flags": {"checkout_button": {"rules": [{"attribute": "plan", "op": "eq", "values": ["pro"], "serve": "gold"}]}}}"#,
             "/flags/checkout_button/rules/0/serve"),
            (#"{"flags": {"dark_mode": {"rules": [{"attribute": "plan", "op": "near", "values": ["pro"], "serve": true}]}}}"#,
             "/flags/dark_mode/rules/0/op"),
        ]
        for (body, path) in cases {
            let answer = try await Self.patch(confbus, body)
            #expect(answer.status == 422, "\(body): \(answer.text)")
            let paths = answer.json?["errors"]?.arrayValue?.compactMap { $0["path"]?.stringValue } ?? []
            #expect(paths.contains(path), "\(body): \(answer.text)")
        }
        #expect(try await Harness.versions(in: confbus.databaseURL, service: "feature-flags") == [1])
    }

    /// The server and `ConfbusProvider` (a real client following the service) agree on 10,000
    /// contexts for the same version.
    @Test(.timeLimit(.minutes(3)))
    func theServerAndConfbusProviderAgree() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        try #require(try await Self.patch(confbus, #"{"flags": {"new_checkout": {"rollout_percentage": 45, "salt": "2026-12", "rules": [{"attribute": "plan", "op": "in", "values": ["pro"], "serve": true}, {"attribute": "age", "op": "lte", "values": [17], "serve": false}]}}}"#).status == 200)
        var configuration = ConfbusClientService.Configuration(service: "feature-flags", instance: "flags-1", serverURL: confbus.baseURL, mqttURL: broker)
        configuration.topicPrefix = confbus.prefix
        configuration.token = Confbus.adminToken
        configuration.startup = .requireServer
        let client = ConfbusClientService(configuration: configuration, logger: Harness.logger)
        try await client.start()
        let running = Task { try await client.run() }
        defer { running.cancel() }
        try await Harness.eventually("the client holds version 2") { client.heldVersion == 2 }

        let pointers = try await Self.listed(confbus).flags.keys.sorted()
        let plans: [JSONValue] = ["free", "pro", "team"]
        var disagreements: [String] = []
        var on = 0
        try await withThrowingTaskGroup(of: [String].self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var found: [String] = []
                    for n in stride(from: worker, to: 10_000, by: 8) {
                        let attributes: JSONValue = ["plan": plans[n % 3], "age": .integer(10 + n % 50)]
                        let (version, results) = try await Self.evaluate(confbus, key: "tenant-\(n)", attributes: attributes)
                        let context = try FlagContext(json: ["key": .string("tenant-\(n)"), "attributes": attributes])
                        for pointer in pointers where version == 2 {
                            let local = try client.provider.evaluateFlag(pointer, for: context)
                            if results[pointer] != local { found.append("\(pointer) tenant-\(n): server \(String(describing: results[pointer])), provider \(local)") }
                        }
                        if version != 2 { found.append("the server answered version \(version)") }
                    }
                    return found
                }
            }
            for try await found in group { disagreements += found }
        }
        for n in 0..<10_000 where client.provider.isEnabled(Self.pointer, for: FlagContext(key: "tenant-\(n)")) { on += 1 }
        #expect(disagreements.isEmpty, "\(disagreements.count) disagreements, first: \(disagreements.prefix(3))")
        #expect(abs(Double(on) / 100 - 45) <= 2, "\(on) of 10000 on at 45 %")
        #expect(client.provider.variant("/flags/checkout_button", for: FlagContext(key: "tenant-1")) != nil)
        #expect(throws: FlagEvaluationError.noFlag("/flags/nothing")) { try client.provider.evaluateFlag("/flags/nothing", for: FlagContext(key: "k")) }
    }

    /// `confbus flags list|eval` and `confbus agent --flags-socket`: the same answers as the endpoint.
    @Test(.timeLimit(.minutes(2)))
    func theCLIAndTheAgentsSocketAnswerAlike() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        try #require(try await Self.patch(confbus, #"{"flags": {"new_checkout": {"rollout_percentage": 50}}}"#).status == 200)

        let list = try RemoteCLITests.cli(["flags", "list", "feature-flags"], confbus: confbus)
        #expect(list.status == 0 && list.stdout.contains("/flags/new_checkout") && list.stdout.contains("blue,green"), "\(list.stdout)\(list.stderr)")
        let server = try await Self.evaluate(confbus, key: "user-7", attributes: ["group": "staff"])
        let eval = try RemoteCLITests.cli(["flags", "eval", "feature-flags", "--key", "user-7", "--attr", "group=staff", "--output", "json"], confbus: confbus)
        #expect(eval.status == 0, "\(eval.stderr)")
        let printed = try JSONParser().parse(eval.stdout)
        for (pointer, result) in server.results {
            #expect(printed["results"]?[pointer] == result.json, "\(pointer): \(eval.stdout)")
        }
        #expect(server.results["/flags/bulk_export"] == FlagResult(value: .bool(true), reason: "rule:0"), "staff get bulk export by rule")
        let table = try RemoteCLITests.cli(["flags", "eval", "feature-flags", "--key", "user-7", "--flag", Self.pointer], confbus: confbus)
        #expect(table.stdout.contains(Self.pointer) && !table.stdout.contains("dark_mode"), "\(table.stdout)")

        let dir = try Harness.temporaryDirectory("flags-agent")
        let socket = dir.appendingPathComponent("flags.sock").path
        let agent = try AgentTests.AgentProcess(["--service", "feature-flags", "--instance", "flags-agent", "--output", dir.appendingPathComponent("flags.json").path,
                                                 "--url", confbus.baseURL, "--mqtt-url", broker, "--topic-prefix", confbus.prefix,
                                                 "--token", Confbus.adminToken, "--cache-dir", dir.appendingPathComponent("cache").path,
                                                 "--flags-socket", socket], in: dir)
        defer { kill(agent.process.processIdentifier, SIGKILL) }
        try await Harness.eventually("the agent listens on its socket") { FileManager.default.fileExists(atPath: socket) }
        let lines = try UnixLineClient(path: socket)
        defer { lines.close() }
        for n in 0..<200 {
            let key = "user-\(n)"
            let answer = try JSONParser().parse(try lines.ask(#"{"flag": "\#(Self.pointer)", "context": {"key": "\#(key)", "attributes": {"group": "beta"}}}"#))
            let expected = try await Self.evaluate(confbus, key: key, attributes: ["group": "beta"], flags: [Self.pointer]).results[Self.pointer]
            #expect(answer["value"] == expected?.value.json && answer["reason"] == expected.map { .string($0.reason) } && answer["version"] == 2,
                    "\(key): \(answer)")
        }
        #expect(try lines.ask(#"{"flag": "/flags/nothing", "context": {"key": "k"}}"#).contains(#""error":"no flag at /flags/nothing""#))
        #expect(try lines.ask(#"{"flag": "/flags/dark_mode", "context": {}}"#).contains("context/key"))
        #expect(try lines.ask("not json").contains("error"))
        // A line past 64 KiB is refused and its connection closed; the socket goes on serving others.
        let flood = try UnixLineClient(path: socket)
        defer { flood.close() }
        #expect(try flood.ask(String(repeating: "x", count: 70 * 1024), newline: false).contains("longer than 64 KiB"))
        #expect(try lines.ask(#"{"flag": "/flags/dark_mode", "context": {"key": "k"}}"#).contains(#""value":true"#))
        // A new version reaches the socket's answers.
        try #require(try await Self.patch(confbus, #"{"flags": {"new_checkout": {"enabled": false}}}"#).status == 200)
        try await Harness.eventually("the socket answers from version 3") {
            try lines.ask(#"{"flag": "\#(Self.pointer)", "context": {"key": "k"}}"#).contains(#""reason":"disabled""#)
        }
    }
}

/// A blocking line client on a Unix socket, for the agent's flag socket.
final class UnixLineClient: @unchecked Sendable {
    let fd: Int32
    private var buffered: [UInt8] = []

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in bytes.enumerated() where i < raw.count - 1 { raw[i] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    /// Sends `line` (with a newline unless told not to) and reads one line back.
    func ask(_ line: String, newline: Bool = true) throws -> String {
        let out = Array((line + (newline ? "\n" : "")).utf8)
        guard out.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == out.count else { throw POSIXError(.EPIPE) }
        while true {
            if let newline = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                defer { buffered.removeSubrange(...newline) }
                return String(decoding: buffered[..<newline], as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            guard n > 0 else { throw POSIXError(.ECONNRESET) }
            buffered += chunk[..<n]
        }
    }

    func close() { Glibc.close(fd) }
}
