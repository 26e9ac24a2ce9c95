import ConfbusCore
import ConfbusMQTT
import Foundation
import Logging
import PostgresNIO
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Commit → receipt on a subscribed MQTT client, next to the floors measured in the same run:
/// a bare mosquitto publish → receive hop, and a bare PostgreSQL commit.
enum LatencyBench {
    struct Options {
        var http: String
        var mqtt: String
        var database: String
        var token: String
        var configDir: String
        var prefix: String
        var count: Int
    }

    static func percentiles(_ samples: [Double]) -> String {
        let sorted = samples.sorted()
        func p(_ q: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count - 1) * q))] * 1000 }
        return String(format: "p50 %.2f ms  p99 %.2f ms  max %.2f ms  (n=%d)", p(0.5), p(0.99), sorted.last! * 1000, sorted.count)
    }

    static func run(_ o: Options) async throws {
        let logger = Logger(label: "bench")
        _ = MosquittoClient.libraryInitialized
        let url = try MQTTURL(o.mqtt)
        func client(_ name: String) async throws -> MosquittoClient {
            let c = try MosquittoClient(configuration: .init(url: url, clientID: "bench-\(name)-\(UUID().uuidString.prefix(6))"), logger: logger)
            c.start()
            for await event in c.events { if case .connected = event { break } }
            return c
        }

        // Floor 1: mosquitto publish → receive (QoS 1, one hop through the broker).
        let sub = try await client("sub")
        let pub = try await client("pub")
        let hopTopic = "bench/hop/\(UUID().uuidString.prefix(6))"
        try sub.subscribe([hopTopic])
        try await Task.sleep(for: .milliseconds(200))
        var hops: [Double] = []
        var events = sub.events.makeAsyncIterator()
        for i in 0..<o.count {
            let start = Date()
            try await pub.publish(Array("\(i)".utf8), to: hopTopic, retain: false)
            while let event = await events.next() {
                if case .message(let topic, _, _) = event, topic == hopTopic { break }
            }
            hops.append(Date().timeIntervalSince(start))
        }
        print("floor  mosquitto publish→receive      \(percentiles(hops))")

        // Floor 2: a bare PostgreSQL commit (BEGIN; INSERT; COMMIT).
        let c = URLComponents(string: o.database)!
        let pg = PostgresClient(configuration: .init(host: c.host!, port: c.port ?? 5432, username: c.user!, password: c.password,
                                                     database: String(c.path.dropFirst()), tls: .disable), backgroundLogger: logger)
        let pgTask = Task { await pg.run() }
        try await pg.query("CREATE TEMP TABLE IF NOT EXISTS bench_floor (id serial, at timestamptz default now())", logger: logger)
        try await pg.query("CREATE TABLE IF NOT EXISTS bench_floor_commits (id serial primary key, at timestamptz default now())", logger: logger)
        var commits: [Double] = []
        for _ in 0..<o.count {
            let start = Date()
            try await pg.withTransaction(logger: logger) { connection in
                try await connection.query("INSERT INTO bench_floor_commits DEFAULT VALUES", logger: logger)
            }
            commits.append(Date().timeIntervalSince(start))
        }
        print("floor  PostgreSQL commit               \(percentiles(commits))")

        // confbus: reload request → update received, and commit (updated_at) → update received.
        let service = "billing-api"
        let topic = "\(o.prefix)/update/\(service)"
        try sub.subscribe([topic])
        try await Task.sleep(for: .milliseconds(300))
        let file = URL(fileURLWithPath: o.configDir).appendingPathComponent("services/\(service)/defaults.yaml")
        let original = try String(contentsOf: file, encoding: .utf8)
        defer { try? original.write(to: file, atomically: true, encoding: .utf8) }
        var requestToReceipt: [Double] = []
        var lastVersion = Int.max
        // The version held now (the retained message delivered on subscribe) is not a sample.
        while let event = await events.next() {
            if case .message(let t, let payload, _) = event, t == topic, case .integer(let v)? = (try? JSONParser().parse(payload))?["version"] {
                lastVersion = v
                break
            }
        }
        for i in 0..<o.count {
            try original.replacingOccurrences(of: "pool_size: 10", with: "pool_size: \(11 + i % 150)").write(to: file, atomically: true, encoding: .utf8)
            var request = URLRequest(url: URL(string: "\(o.http)/v1/reload")!)
            request.httpMethod = "POST"
            request.setValue("Bearer \(o.token)", forHTTPHeaderField: "Authorization")
            let start = Date()
            _ = try await URLSession.shared.data(for: request)
            while let event = await events.next() {
                guard case .message(let t, let payload, _) = event, t == topic, let doc = try? JSONParser().parse(payload),
                      case .integer(let v)? = doc["version"], v > lastVersion else { continue }
                lastVersion = v
                requestToReceipt.append(Date().timeIntervalSince(start))
                break
            }
        }
        // The same request when nothing changed: reading and resolving the tree plus the HTTP round
        // trip, the part of the figure above that comes before the commit.
        var unchanged: [Double] = []
        for _ in 0..<max(20, o.count / 4) {
            var request = URLRequest(url: URL(string: "\(o.http)/v1/reload")!)
            request.httpMethod = "POST"
            request.setValue("Bearer \(o.token)", forHTTPHeaderField: "Authorization")
            let start = Date()
            _ = try await URLSession.shared.data(for: request)
            unchanged.append(Date().timeIntervalSince(start))
        }
        print("confbus reload request→MQTT receipt   \(percentiles(requestToReceipt))   (resolve + commit + outbox + publish + hop)")
        print("confbus unchanged reload round trip   \(percentiles(unchanged))   (resolve + HTTP, no commit)")
        pgTask.cancel()
        await sub.shutdown()
        await pub.shutdown()
    }
}
