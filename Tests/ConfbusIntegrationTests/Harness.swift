import ConfbusCore
import ConfbusMQTT
import ConfbusMosquitto
import ConfbusTestSupport
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Real processes for integration tests: `confbus serve` (the built binary), a private
/// PostgreSQL database per test on the server `make test` started, private mosquitto brokers
/// where a test must stop one, and MQTT and HTTP clients. Nothing here is a fake.
enum Harness {
    static let repo = BuiltProducts.repository
    static let logger = Logger(label: "confbus-tests")

    static func binary() throws -> URL {
        try #require(BuiltProducts.confbus(), "build confbus first")
    }

    static func temporaryDirectory(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("confbus-it-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// A copy of the example tree that a test may edit.
    static func copyOfExampleTree() throws -> URL {
        let dir = try temporaryDirectory("tree").appendingPathComponent("config")
        try FileManager.default.copyItem(at: repo.appendingPathComponent("config"), to: dir)
        return dir
    }

    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        try #require(bound)
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A new, empty database on the test server; returns its URL.
    static func createDatabase() async throws -> String {
        let base = try #require(TestServers.databaseURL, "CONFBUS_TEST_DATABASE_URL is not set (run make test)")
        var components = try #require(URLComponents(string: base))
        let name = "t_\(UUID().uuidString.prefix(12).lowercased().replacingOccurrences(of: "-", with: ""))"
        try await withPostgres(base) { client in
            // Identifiers cannot be bound; this one is made here from hex digits only.
            try await client.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        }
        components.path = "/\(name)"
        return components.string!
    }

    /// A `confbus serve` on a copy of the example tree with a database of its own, started and ready.
    static func startedConfbus(broker: String, environment: [String: String] = [:]) async throws -> (Confbus, URL) {
        let tree = try copyOfExampleTree()
        let confbus = try Confbus(configDir: tree, databaseURL: try await createDatabase(), mqttURL: broker, environment: environment)
        try await confbus.start()
        return (confbus, tree)
    }

    /// Two `confbus serve` nodes (not started) on one copy of the example tree, one new database,
    /// one broker and one topic prefix, as a fleet runs them.
    static func twoNodes(broker: String) async throws -> (a: Confbus, b: Confbus, database: String) {
        let tree = try copyOfExampleTree()
        let database = try await createDatabase()
        let a = try Confbus(configDir: tree, databaseURL: database, mqttURL: broker)
        let b = try Confbus(configDir: tree, databaseURL: database, mqttURL: broker)
        b.prefixOverride = a.prefix
        return (a, b, database)
    }

    /// Waits until `condition` holds, polling; records a failure (with `what`) on timeout.
    static func eventually(_ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for: \(what)")
        throw POSIXError(.ETIMEDOUT)
    }

    static func withPostgres<T: Sendable>(_ url: String, _ body: @Sendable (PostgresClient) async throws -> T) async throws -> T {
        var configuration = try PostgresClient.Configuration(url: url)
        configuration.options.maximumConnections = 2
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { await client.run(); return nil }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    static func versions(in databaseURL: String, service: String) async throws -> [Int] {
        try await withPostgres(databaseURL) { client in
            var versions: [Int] = []
            for try await v in try await client.query("SELECT version FROM config_versions WHERE service = \(service) ORDER BY version",
                                                      logger: logger).decode(Int.self) { versions.append(v) }
            return versions
        }
    }
}

extension PostgresClient.Configuration {
    init(url text: String) throws {
        let c = try #require(URLComponents(string: text))
        self.init(host: c.host ?? "127.0.0.1", port: c.port ?? 5432, username: c.user ?? "confbus", password: c.password,
                  database: String(c.path.dropFirst()), tls: .disable)
    }
}

/// Every child process a test started; whatever is still running when the test process exits is
/// killed then, so no broker or confbus outlives `swift test`, even after a failed test.
let spawnedProcesses = Mutex<Set<pid_t>>([])
private let reaperInstalled: Bool = {
    atexit {
        for pid in spawnedProcesses.withLock({ $0 }) { kill(pid, SIGKILL) }
    }
    return true
}()

func track(_ process: Process) {
    _ = reaperInstalled
    spawnedProcesses.withLock { _ = $0.insert(process.processIdentifier) }
}

/// A private mosquitto broker on a free port, for tests that stop or restart it.
final class Broker: @unchecked Sendable {
    let port: Int
    let directory: URL
    let persistence: Bool
    /// More mosquitto.conf lines (an ACL, a max_packet_size).
    let extra: String
    private(set) var process: Process?

    init(persistence: Bool = false, extra: String = "") throws {
        port = try Harness.freePort()
        directory = try Harness.temporaryDirectory("broker")
        self.persistence = persistence
        self.extra = extra
        if getuid() == 0 { chown(directory.path, mosquittoUID(), 0) }
    }

    var url: String { "mqtt://127.0.0.1:\(port)" }

    func start() async throws {
        let conf = directory.appendingPathComponent("mosquitto.conf")
        try """
            listener \(port) 127.0.0.1
            allow_anonymous true
            persistence \(persistence)
            persistence_location \(directory.path)/
            max_queued_messages 100000
            set_tcp_nodelay true
            \(extra)
            """.write(to: conf, atomically: true, encoding: .utf8)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/sbin/mosquitto") ? "/usr/sbin/mosquitto" : "/usr/bin/mosquitto")
        p.arguments = ["-c", conf.path]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = try FileHandle(forWritingTo: touch(directory.appendingPathComponent("broker.log")))
        try p.run()
        track(p)
        process = p
        try await waitForPort(port)
    }

    /// Stops the broker the hard way (SIGKILL): a crashed broker, and no signal mask can stop it.
    func stop() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    deinit { stop() }
}

func mosquittoUID() -> uid_t {
    getpwnam("mosquitto").map { $0.pointee.pw_uid } ?? 0
}

func touch(_ url: URL) -> URL {
    FileManager.default.createFile(atPath: url.path, contents: nil)
    return url
}

func waitForPort(_ port: Int, timeout: Duration = .seconds(10)) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if (try? TCPClient(host: "127.0.0.1", port: UInt16(port))) != nil { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    Issue.record("nothing listens on port \(port)")
    throw POSIXError(.ETIMEDOUT)
}

/// `confbus serve` as a child process.
final class Confbus: @unchecked Sendable {
    let configDir: URL
    let databaseURL: String
    var mqttURL: String
    private let ownPrefix: String
    /// Set to reuse an earlier process's topic prefix (a restart of the same node).
    var prefixOverride: String?
    var prefix: String { prefixOverride ?? ownPrefix }
    let httpPort: Int
    let node: String
    var extraEnvironment: [String: String]
    private(set) var process: Process?
    let log: URL

    init(configDir: URL, databaseURL: String, mqttURL: String, environment: [String: String] = [:]) throws {
        self.configDir = configDir
        self.databaseURL = databaseURL
        self.mqttURL = mqttURL
        ownPrefix = "t\(UUID().uuidString.prefix(8).lowercased())"
        httpPort = try Harness.freePort()
        node = "it-\(UUID().uuidString.prefix(6).lowercased())"
        extraEnvironment = environment
        log = touch(configDir.deletingLastPathComponent().appendingPathComponent("confbus-\(UUID().uuidString.prefix(4)).log"))
    }

    static let adminToken = "it-admin-secret"

    func start(waitUntilReady: Bool = true) async throws {
        try launch()
        try await waitForPort(httpPort)
        if waitUntilReady { try await self.waitUntilReady() }
    }

    /// Starts the process without waiting for anything (for a start that is expected to be refused).
    func launch() throws {
        let p = Process()
        p.executableURL = try Harness.binary()
        p.arguments = ["serve", "--config-dir", configDir.path, "--database-url", databaseURL, "--mqtt-url", mqttURL,
                       "--http-port", String(httpPort), "--topic-prefix", prefix, "--node-id", node,
                       "--admin-tokens", "ops=\(Self.adminToken)", "--reconcile-interval", "2s", "--health-interval", "1s",
                       "--log-level", "debug"]
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("CONFBUS_") }
        env.merge(extraEnvironment) { $1 }
        p.environment = env
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        track(p)
        process = p
    }

    func waitUntilReady(timeout: Duration = .seconds(30)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let r = try? await get("/readyz"), r.status == 200 { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        Issue.record("confbus did not become ready; log:\n\(logTail())")
        throw POSIXError(.ETIMEDOUT)
    }

    /// SIGTERM (a graceful shutdown), then SIGKILL if it has not ended within 15 s.
    func stop() {
        guard let p = process else { return }
        if p.isRunning {
            p.terminate()
            let deadline = Date().addingTimeInterval(15)
            while p.isRunning && Date() < deadline { usleep(20_000) }
            if p.isRunning {
                Issue.record("confbus did not stop on SIGTERM within 15 s; log:\n\(logTail())")
                kill(p.processIdentifier, SIGKILL)
            }
            p.waitUntilExit()
        }
        process = nil
    }

    func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    /// Waits for the process to end by itself (a failpoint's `exit`).
    func waitForExit(timeout: Duration = .seconds(30)) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while let p = process, p.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        if let p = process, p.isRunning {
            Issue.record("confbus did not end by itself; log:\n\(logTail())")
            kill9()
            return -1
        }
        let status = process?.terminationStatus ?? -1
        process = nil
        return status
    }

    func logTail(lines: Int = 40) -> String {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    deinit { stop() }

    struct HTTPResult {
        var status: Int
        var headers: [String: String]
        var body: Data
        var json: JSONValue? { try? JSONParser().parse([UInt8](body)) }
        var text: String { String(decoding: body, as: UTF8.self) }
    }

    func request(_ method: String, _ path: String, headers: [String: String] = [:], body: Data? = nil) async throws -> HTTPResult {
        var request = URLRequest(url: URL(string: "http://127.0.0.1:\(httpPort)\(path)")!)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 70
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        let (data, response) = try await URLSession.shared.data(for: request)
        let http = try #require(response as? HTTPURLResponse)
        var fields: [String: String] = [:]
        for (k, v) in http.allHeaderFields { fields[String(describing: k).lowercased()] = String(describing: v) }
        return HTTPResult(status: http.statusCode, headers: fields, body: data)
    }

    func get(_ path: String, headers: [String: String] = [:]) async throws -> HTTPResult {
        try await request("GET", path, headers: headers)
    }

    func reload() async throws -> HTTPResult {
        try await request("POST", "/v1/reload", headers: ["Authorization": "Bearer \(Self.adminToken)"])
    }

    func topic(_ kind: String, _ rest: String) -> String { "\(prefix)/\(kind)/\(rest)" }

    /// `http://127.0.0.1:<port>`, for a browser.
    var baseURL: String { "http://127.0.0.1:\(httpPort)" }
}

/// A real MQTT client that records what it receives.
final class MQTTProbe: Sendable {
    struct Message: Sendable, CustomStringConvertible {
        var description: String { "\(topic) \(retained ? "(retained) " : "")\(String(decoding: payload.prefix(120), as: UTF8.self))" }
        var topic: String
        var payload: [UInt8]
        var retained: Bool
        var json: JSONValue? { try? JSONParser().parse(payload) }
        var text: String { String(decoding: payload, as: UTF8.self) }
    }

    final class Inbox: Sendable {
        let messages = Mutex<[Message]>([])
    }

    let client: MosquittoClient
    private let received = Inbox()
    private let pump: Task<Void, Never>

    /// `clientID` takes another client's session over (MQTT reason 0x8E for the other one).
    init(url: String, name: String = "probe", clientID: String? = nil, caFile: String? = nil) async throws {
        _ = MosquittoClient.libraryInitialized
        var configuration = MosquittoClient.Configuration(url: try MQTTURL(url), clientID: clientID ?? "\(name)-\(UUID().uuidString.prefix(8))")
        configuration.caFile = caFile
        configuration.maximumBackoff = .milliseconds(500)
        let client = try MosquittoClient(configuration: configuration, logger: Harness.logger)
        self.client = client
        let received = self.received
        let connected = AsyncStream<Void>.makeStream()
        pump = Task {
            for await event in client.events {
                switch event {
                case .connected: connected.continuation.yield()
                case .message(let topic, let payload, let retained):
                    received.messages.withLock { $0.append(Message(topic: topic, payload: payload, retained: retained)) }
                case .disconnected: break
                }
            }
        }
        client.start()
        var iterator = connected.stream.makeAsyncIterator()
        _ = await iterator.next()
    }

    func subscribe(_ filter: String) throws { try client.subscribe([filter]) }

    func publish(_ topic: String, _ text: String, retain: Bool = false) async throws {
        try await client.publish(Array(text.utf8), to: topic, retain: retain)
    }

    var messages: [Message] { received.messages.withLock { $0 } }

    func messages(on topic: String) -> [Message] { messages.filter { $0.topic == topic } }

    /// Waits for a message on `topic` that satisfies `predicate`.
    func waitFor(_ topic: String, timeout: Duration = .seconds(15), _ predicate: (Message) -> Bool = { _ in true }) async throws -> Message {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let m = messages(on: topic).first(where: predicate) { return m }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("no matching message on \(topic) within \(timeout); saw \(messages.map(\.topic))")
        throw POSIXError(.ETIMEDOUT)
    }

    func shutdown() async {
        await client.shutdown()
        pump.cancel()
    }
}
