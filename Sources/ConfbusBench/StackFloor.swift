import ConfbusMosquitto
import Foundation
import Hummingbird
import Logging
import PostgresNIO
import Synchronization

/// The stack confbus is built on, with nothing of confbus in it: the floor under two of the bench's
/// figures. It serves, with Hummingbird's defaults,
/// - `GET /v1/config/{service}`: a request held on a continuation until `POST /v1/reload` (what a
///   long-poll waiter costs Hummingbird, NIO and a suspended task, with no confbus frame);
/// - `GET /metrics`: `confbus_long_poll_waiters N`, so the waiter script reads it as it reads confbus;
/// - `GET /document`: the bytes of a file read at start (the pulled document), as JSON;
/// - `PUT /v1/config/{service}/override`: the body inserted in one PostgreSQL statement (its own
///   commit, fsync on) through postgres-nio, then published QoS 1 retained on
///   `<prefix>/update/<service>` through libmosquitto, answered once committed.
/// `ConfbusBench floor-server <port> <database-url> <mqtt-url> <prefix> [<document-file>]` runs it until killed.
enum StackFloor {
    final class Waiters: Sendable {
        private let held = Mutex<[CheckedContinuation<Void, Never>]>([])

        var count: Int { held.withLock { $0.count } }

        func wait() async {
            await withCheckedContinuation { continuation in held.withLock { $0.append(continuation) } }
        }

        func releaseAll() {
            for continuation in held.withLock({ held in defer { held = [] }; return held }) { continuation.resume() }
        }
    }

    static func run(port: Int, database: String, mqtt: String, prefix: String, document: [UInt8]) async throws {
        let logger = Logger(label: "floor")
        let c = URLComponents(string: database)!
        let postgres = PostgresClient(configuration: .init(host: c.host!, port: c.port ?? 5432, username: c.user!, password: c.password,
                                                           database: String(c.path.dropFirst()), tls: .disable), backgroundLogger: logger)
        _ = MosquittoClient.libraryInitialized
        let client = try MosquittoClient(configuration: .init(url: try MQTTURL(mqtt), clientID: "floor-\(UUID().uuidString.prefix(6))"), logger: logger)
        client.start()
        let waiters = Waiters()

        let router = Router()
        router.get("/v1/config/{service}") { _, _ -> String in
            await waiters.wait()
            return #"{"version": 2}"#
        }
        router.get("/metrics") { _, _ -> String in "confbus_long_poll_waiters \(waiters.count)\n" }
        let documentBuffer = ByteBuffer(bytes: document)
        router.get("/document") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: documentBuffer))
        }
        router.post("/v1/reload") { _, _ -> HTTPResponse.Status in
            waiters.releaseAll()
            return .ok
        }
        router.put("/v1/config/{service}/override") { request, context -> HTTPResponse.Status in
            let service = try context.parameters.require("service")
            let body = String(buffer: try await request.body.collect(upTo: 1 << 20))
            try await postgres.query("INSERT INTO floor_versions (service, body) VALUES (\(service), \(body))", logger: logger)
            let payload = Array(body.utf8)
            Task { try? await client.publish(payload, to: "\(prefix)/update/\(service)", retain: true) }
            return .ok
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask { await postgres.run() }
            try await postgres.query("CREATE TABLE IF NOT EXISTS floor_versions (id bigserial PRIMARY KEY, service text NOT NULL, body text NOT NULL, at timestamptz NOT NULL DEFAULT now())", logger: logger)
            // Until SIGTERM; then the database client's run loop is stopped too.
            try await app.runService()
            group.cancelAll()
        }
    }
}
