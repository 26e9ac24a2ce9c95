import ConfbusCore
import ConfbusMQTT
import ConfbusMosquitto
import Foundation
import Logging
import PostgresNIO
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// PUT override → receipt on a subscribed MQTT client, next to the floors measured in the same run:
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
        /// The stack-alone server (`floor-server`): its base URL and topic prefix.
        var floor: (http: String, prefix: String)?
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
        try await Task.sleep(for: .milliseconds(100))
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

        // confbus: PUT of the override layer → the new version received on MQTT, then the PUT alone.
        let service = "billing-api"
        let topic = "\(o.prefix)/update/\(service)"
        try sub.subscribe([topic])
        try await Task.sleep(for: .milliseconds(300))
        var lastVersion = Int.max
        // The version held now (the retained message delivered on subscribe) is not a sample.
        while let event = await events.next() {
            if case .message(let t, let payload, _) = event, t == topic, case .integer(let v)? = (try? JSONParser().parse(payload))?["version"] {
                lastVersion = v
                break
            }
        }
        func put(_ pool: Int) async throws -> Int {
            var request = URLRequest(url: URL(string: "\(o.http)/v1/config/\(service)/override")!)
            request.httpMethod = "PUT"
            request.setValue("Bearer \(o.token)", forHTTPHeaderField: "Authorization")
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.setValue("bench", forHTTPHeaderField: "X-Confbus-Reason")
            request.httpBody = Data(#"{"database": {"pool_size": \#(pool)}}"#.utf8)
            let (_, response) = try await URLSession.shared.data(for: request)
            return (response as? HTTPURLResponse)?.statusCode ?? 0
        }
        var putToReceipt: [Double] = []
        var putAlone: [Double] = []
        for i in 0..<o.count {
            let start = Date()
            let status = try await put(11 + i % 150)
            putAlone.append(Date().timeIntervalSince(start))
            guard status == 200 else { fatalError("PUT answered \(status)") }
            while let event = await events.next() {
                guard case .message(let t, let payload, _) = event, t == topic, let doc = try? JSONParser().parse(payload),
                      case .integer(let v)? = doc["version"], v > lastVersion else { continue }
                lastVersion = v
                putToReceipt.append(Date().timeIntervalSince(start))
                break
            }
        }
        // The HTTP client's own share: the same client, the same connection reuse, an endpoint that does nothing.
        var healthz: [Double] = []
        for _ in 0..<o.count {
            let start = Date()
            _ = try await URLSession.shared.data(for: URLRequest(url: URL(string: "\(o.http)/healthz")!))
            healthz.append(Date().timeIntervalSince(start))
        }
        print("floor  this HTTP client, GET /healthz   \(percentiles(healthz))")
        // The stack alone: the same client and subscriber, a handler that commits one INSERT
        // through postgres-nio and publishes the body through libmosquitto (`floor-server`).
        if let floor = o.floor {
            let floorTopic = "\(floor.prefix)/update/\(service)"
            try sub.subscribe([floorTopic])
            try await Task.sleep(for: .milliseconds(300))
            var stackAlone: [Double] = []
            for i in 0..<o.count {
                let body = #"{"database": {"pool_size": \#(i)}}"#
                var request = URLRequest(url: URL(string: "\(floor.http)/v1/config/\(service)/override")!)
                request.httpMethod = "PUT"
                request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                request.httpBody = Data(body.utf8)
                let start = Date()
                let (_, response) = try await URLSession.shared.data(for: request)
                guard (response as? HTTPURLResponse)?.statusCode == 200 else { fatalError("the floor server answered \(response)") }
                while let event = await events.next() {
                    guard case .message(let t, let payload, _) = event, t == floorTopic, payload == Array(body.utf8) else { continue }
                    stackAlone.append(Date().timeIntervalSince(start))
                    break
                }
            }
            print("floor  the stack alone: PUT→commit→MQTT \(percentiles(stackAlone))   (Hummingbird + one postgres-nio INSERT + libmosquitto publish)")
        }
        print("confbus PUT override→MQTT receipt     \(percentiles(putToReceipt))   (validate + commit + outbox + publish + hop)")
        print("confbus PUT override answer            \(percentiles(putAlone))")
        pgTask.cancel()
        await sub.shutdown()
        await pub.shutdown()
    }
}
