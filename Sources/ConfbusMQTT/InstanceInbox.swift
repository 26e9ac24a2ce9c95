import ConfbusCore
import ConfbusEngine
import ConfbusMosquitto
import Foundation
import Logging
import Synchronization

/// Registrations, acks and health messages from instances: a bounded queue per service, drained
/// in order per service and concurrently across services, so one slow database call for one
/// service never holds up another. Refusals are answered on `config/error/<service>`,
/// rate-limited per client so a flood cannot turn confbus into an amplifier.
final class InstanceInbox: Sendable {
    struct Message: Sendable {
        var incoming: TopicCodec.Incoming
        var payload: [UInt8]
    }

    private struct State {
        var queues: [String: [Message]] = [:]
        var active: Set<String> = []
        var queued = 0
        var ready: [String] = []
        var wake: CheckedContinuation<Void, Never>?
    }

    /// Messages held at most, over all services; more are dropped (and counted).
    let capacity: Int
    let concurrency: Int
    private let state = Mutex(State())
    private let limiter = Mutex(ReplyLimiter())
    private let client: MosquittoClient
    private let topics: TopicCodec
    private let reports: InstanceReports
    private let readiness: Readiness
    private let counters: GatewayCounters
    private let logger: Logger

    init(client: MosquittoClient, topics: TopicCodec, reports: InstanceReports, readiness: Readiness, counters: GatewayCounters,
         logger: Logger, capacity: Int = 10_000, concurrency: Int = 16) {
        self.client = client
        self.topics = topics
        self.reports = reports
        self.readiness = readiness
        self.counters = counters
        self.logger = logger
        self.capacity = capacity
        self.concurrency = concurrency
    }

    /// Called from the event loop: never waits.
    func enqueue(_ incoming: TopicCodec.Incoming, payload: [UInt8]) {
        let key: String
        switch incoming {
        case .register(let s), .ack(let s, _), .health(let s, _): key = s
        case .update: return
        }
        if case .health("_confbus", _) = incoming { return }   // other nodes' health
        let (accepted, wake): (Bool, CheckedContinuation<Void, Never>?) = state.withLock { s in
            guard s.queued < capacity else { return (false, nil) }
            s.queued += 1
            s.queues[key, default: []].append(Message(incoming: incoming, payload: payload))
            if !s.active.contains(key) && !s.ready.contains(key) { s.ready.append(key) }
            let w = s.wake
            s.wake = nil
            return (true, w)
        }
        if !accepted { counters.refused(code: "inbox_full") }
        wake?.resume()
    }

    /// Runs workers until cancelled.
    func run() async {
        await withDiscardingTaskGroup { group in
            var running = 0
            while !Task.isCancelled {
                let next: String? = state.withLock { s in
                    guard running < concurrency, !s.ready.isEmpty else { return nil }
                    let key = s.ready.removeFirst()
                    s.active.insert(key)
                    return key
                }
                if let key = next {
                    running += 1
                    group.addTask { await self.drain(key) }
                    continue
                }
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = state.withLock { s -> Bool in
                            if (!s.ready.isEmpty && running < concurrency) || Task.isCancelled { return true }
                            s.wake = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    state.withLock { s in defer { s.wake = nil }; return s.wake }?.resume()
                }
                running = state.withLock { s in s.active.count }
            }
        }
    }

    /// Handles one service's messages in order until its queue is empty.
    private func drain(_ key: String) async {
        while true {
            let message: Message? = state.withLock { s in
                guard var queue = s.queues[key], !queue.isEmpty else {
                    s.queues[key] = nil
                    s.active.remove(key)
                    return nil
                }
                let m = queue.removeFirst()
                s.queues[key] = queue.isEmpty ? nil : queue
                s.queued -= 1
                return m
            }
            guard let message else { break }
            await handle(message)
        }
        state.withLock { s in defer { s.wake = nil }; return s.wake }?.resume()
    }

    private func handle(_ message: Message) async {
        // Instance messages wait until the versions are loaded from the database.
        _ = await readiness.waitUntilLoaded(timeout: .seconds(30))
        let payload = message.payload
        let maxBytes = reports.maxPayloadBytes
        switch message.incoming {
        case .register(let raw):
            let registration = try? InstanceMessages.registration(payload, maxBytes: maxBytes)
            await answer(raw, kind: "register", instance: registration?.instance) { (service: ServiceName) async throws(ConfbusError) in
                // A payload that did not parse is parsed again only to say why.
                if let registration {
                    try await self.reports.register(service, registration)
                } else {
                    _ = try InstanceMessages.registration(payload, maxBytes: maxBytes)
                }
            }
        case .ack(let raw, let instance):
            await answer(raw, kind: "ack", instance: instance) { (service: ServiceName) async throws(ConfbusError) in
                try await self.reports.acknowledge(service, instance: instance, payload: payload)
            }
        case .health(let raw, let instance):
            await answer(raw, kind: "health", instance: instance) { (service: ServiceName) async throws(ConfbusError) in
                try await self.reports.health(service, instance: instance, payload: payload)
            }
        case .update:
            break
        }
    }

    /// Runs one message handler; a refusal is counted and answered on `config/error/<service>`
    /// when the topic names a valid service (else it cannot be answered, only counted).
    private func answer(_ raw: String, kind: String, instance: String?,
                        _ body: @Sendable (ServiceName) async throws(ConfbusError) -> Void) async {
        guard let service = try? ServiceName(validating: raw) else {
            counters.refused(code: ConfbusError.Code.invalidName.description)
            logger.debug("ignored a message on a topic with an invalid service name", metadata: ["confbus.kind": "\(kind)"])
            return
        }
        let failure: ConfbusError
        do {
            try await body(service)
            return
        } catch {
            failure = error
        }
        counters.refused(code: failure.code.description)
        let client = instance.flatMap { InstanceMessages.isValidInstanceID($0) ? $0 : nil }
        // Past its budget a client's refusals are counted only: neither answered nor logged, so a
        // flood turns confbus into neither an amplifier nor a log filler.
        guard limiter.withLock({ $0.allow(service: service.rawValue, client: client ?? "", now: .now) }) else {
            counters.refused(code: "reply_rate_limited")
            counters.rateLimited.increment()
            return
        }
        logger.info("refused a message", metadata: ["confbus.service": "\(service)", "confbus.kind": "\(kind)",
                                                     "error.code": "\(failure.code)", "error": "\(failure.message)"])
        var body: [String: JSONValue] = ["error": .object(["code": .string(failure.code.description), "message": .string(failure.message)])]
        if let client { body["instance"] = .string(client) }
        try? await self.client.publish(JSONValue.object(body).serializedBytes(), to: topics.error(service), retain: false)
    }
}

/// At most `burst` error replies per client and service in each `window`.
struct ReplyLimiter {
    var burst = 5
    var window: Duration = .seconds(10)
    private var counts: [String: (start: ContinuousClock.Instant, count: Int)] = [:]

    mutating func allow(service: String, client: String, now: ContinuousClock.Instant) -> Bool {
        let key = service + "/" + client
        if counts.count > 10_000 { counts = counts.filter { now - $0.value.start < window } }
        var entry = counts[key] ?? (now, 0)
        if now - entry.start >= window { entry = (now, 0) }
        entry.count += 1
        counts[key] = entry
        return entry.count <= burst
    }
}
