import ConfbusCore
import ConfbusMQTT
import ConfbusMosquitto
import Foundation
import Logging
import Synchronization
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A batch over every service of a generated tree: time from the request to the last update
/// received on a subscribed MQTT client.
enum BatchBench {
    /// `seed`: one above the previous run's, so every service's value changes (values repeat every 60 or 100 seeds).
    static func run(http: String, mqtt: String, token: String, prefix: String, services: [String], seed: Int) async throws {
        _ = MosquittoClient.libraryInitialized
        // A run that loses a message would wait forever: after a minute it says where it stood.
        let stage = Mutex("connecting")
        let counts = Mutex((0, 0))
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            let (have, want) = counts.withLock { $0 }
            FileHandle.standardError.write(Data("batch bench: no progress while \(stage.withLock { $0 }) (\(have) of \(want)); giving up\n".utf8))
            exit(3)
        }
        defer { watchdog.cancel() }
        let client = try MosquittoClient(configuration: .init(url: try MQTTURL(mqtt), clientID: "bench-batch-\(UUID().uuidString.prefix(6))"),
                                         logger: Logger(label: "bench"))
        client.start()
        var events = client.events.makeAsyncIterator()
        while let event = await events.next() { if case .connected = event { break } }
        try client.subscribe(["\(prefix)/update/+"])
        // Retained version 1 of every service first.
        var held: [String: Int] = [:]
        stage.withLock { $0 = "receiving the retained versions" }
        while held.count < services.count, let event = await events.next() {
            if case .message(let topic, let payload, _) = event, case .integer(let v)? = (try? JSONParser().parse(payload))?["version"] {
                held[String(topic.split(separator: "/").last ?? "")] = v
                counts.withLock { $0 = (held.count, services.count) }
            }
        }
        // The floor: the same number of topics published at once from one client (QoS 1, all in
        // flight) and received by this one.
        let publisher = try MosquittoClient(configuration: .init(url: try MQTTURL(mqtt), clientID: "bench-fan-\(UUID().uuidString.prefix(6))"),
                                            logger: Logger(label: "bench"))
        publisher.start()
        for await event in publisher.events { if case .connected = event { break } }
        let fanPrefix = "bench-fan/\(UUID().uuidString.prefix(6))"
        try client.subscribe(["\(fanPrefix)/+"])
        try await Task.sleep(for: .milliseconds(300))
        let fanStart = Date()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<services.count {
                group.addTask { try await publisher.publish(Array(#"{"version": 1}"#.utf8), to: "\(fanPrefix)/\(n)", retain: false) }
            }
            try await group.waitForAll()
        }
        var fanned = 0
        stage.withLock { $0 = "receiving the fan-out" }
        while fanned < services.count, let event = await events.next() {
            if case .message(let topic, _, _) = event, topic.hasPrefix(fanPrefix) {
                fanned += 1
                counts.withLock { $0 = (fanned, services.count) }
            }
        }
        print(String(format: "floor  %d topics published at once, all received after %.0f ms", services.count, Date().timeIntervalSince(fanStart) * 1000))
        await publisher.shutdown()

        // Values that differ from the last run's (its seed was one below), so every service changes.
        let updates: [JSONValue] = services.enumerated().map { n, name in
            let patch: JSONValue = name.hasSuffix("billing-api") ? ["database": ["pool_size": .integer(20 + (n + seed) % 100)]]
                : name.hasSuffix("feature-flags") ? ["refresh_seconds": .integer(30 + (n + seed) % 100)]
                : ["concurrency": .integer(1 + (n + seed) % 60)]
            return ["service": .string(name), "patch": patch]
        }
        let body: JSONValue = ["reason": "bench", "updates": .array(updates)]
        var request = URLRequest(url: URL(string: "\(http)/v1/batch")!)
        request.httpMethod = "POST"
        request.httpBody = Data(body.serializedBytes())
        request.timeoutInterval = 300
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        let start = Date()
        let (data, response) = try await URLSession.shared.data(for: request)
        let answered = Date().timeIntervalSince(start)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        // Only the services the batch changed are published again.
        var changed = services.count
        if case .array(let results)? = (try? JSONParser().parse([UInt8](data)))?["results"] {
            changed = results.filter { $0["changed"] == .bool(true) }.count
        }
        var updated = Set<String>()
        stage.withLock { $0 = "receiving the batch's updates" }
        while updated.count < changed, let event = await events.next() {
            if case .message(let topic, let payload, _) = event, case .integer(let v)? = (try? JSONParser().parse(payload))?["version"] {
                let name = String(topic.split(separator: "/").last ?? "")
                if v > (held[name] ?? 0) { updated.insert(name) }
                counts.withLock { $0 = (updated.count, changed) }
            }
        }
        let total = Date().timeIntervalSince(start)
        print(String(format: "batch of %d services (%d changed): HTTP %d answered after %.0f ms; last update received after %.0f ms",
                     services.count, changed, status, answered * 1000, total * 1000))
        await client.shutdown()
    }
}
