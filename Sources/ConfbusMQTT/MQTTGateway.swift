import ConfbusCore
import ConfbusEngine
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// confbus on the bus: publishes committed versions (retained), answers registrations, acks
/// and health messages, announces its own health, and reconciles the retained
/// `config/update/#` messages with the database on every (re)connect and every
/// `reconcileInterval`, republishing whatever the broker lost or holds behind.
public final class MQTTGateway: Service, UpdatePublisher {
    public struct Options: Sendable {
        public var node: String
        public var healthInterval: Duration
        public var reconcileInterval: Duration
        /// How long retained messages may take to arrive after a subscribe.
        public var retainedSettle: Duration = .milliseconds(500)

        public init(node: String, healthInterval: Duration, reconcileInterval: Duration) {
            self.node = node
            self.healthInterval = healthInterval
            self.reconcileInterval = reconcileInterval
        }
    }

    public let client: MosquittoClient
    public let topics: TopicCodec
    let distributor: Distributor
    let status: Readiness
    let options: Options
    let logger: Logger
    let startedAt = Date()
    /// The newest version seen on each `config/update/<service>`, retained or live.
    private let seenOnBroker = Mutex<[String: Int]>([:])
    private let counters: GatewayCounters

    public init(client: MosquittoClient, topics: TopicCodec, distributor: Distributor, status: Readiness,
                options: Options, counters: GatewayCounters = GatewayCounters(), logger: Logger) {
        self.client = client
        self.topics = topics
        self.distributor = distributor
        self.status = status
        self.options = options
        self.counters = counters
        self.logger = logger
    }

    public static func willPayload(node: String, startedAt: Date) -> [UInt8] {
        JSONValue.object(["status": "offline", "node": .string(node), "started_at": .string(Timestamp.format(startedAt))])
            .serializedBytes()
    }

    // MARK: UpdatePublisher

    public func publishUpdate(_ version: StoredVersion) async throws {
        try await client.publish(version.document.serializedBytes(), to: topics.update(version.service), retain: true)
        counters.published.increment()
        seenOnBroker.withLock { seen in seen[version.service.rawValue] = max(seen[version.service.rawValue] ?? 0, version.version) }
    }

    // MARK: Service

    public func run() async throws {
        client.start()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.consumeEvents() }
            group.addTask {
                while !Task.isCancelled {
                    await self.status.changed.wait(timeout: self.options.healthInterval)
                    if Task.isCancelled { return }
                    await self.publishHealth()
                }
            }
            group.addTask { await self.periodic(self.options.reconcileInterval) { await self.refreshRetainedAndReconcile() } }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        await publishHealth(offline: true)
        await client.shutdown()
    }

    private func periodic(_ interval: Duration, _ body: @Sendable () async -> Void) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            if Task.isCancelled { return }
            await body()
        }
    }

    private func consumeEvents() async {
        for await event in client.events {
            if Task.isCancelled { return }
            switch event {
            case .connected:
                status.setMQTT(true)
                logger.info("connected to the MQTT broker", metadata: ["mqtt.url": "\(client.configuration.url)"])
                do {
                    try client.subscribe(topics.subscriptions + [topics.updates])
                } catch {
                    logger.error("cannot subscribe", metadata: ["error": "\(error)"])
                }
                Task { await self.publishHealth() }
                Task { await self.reconcileAfterSettle() }
                distributor.outboxSignal.signal()
            case .disconnected(let reason):
                status.setMQTT(false)
                logger.warning("disconnected from the MQTT broker", metadata: ["mqtt.reason": "\(reason)"])
            case .message(let topic, let payload, _):
                await handle(topic: topic, payload: payload)
            }
        }
    }

    func handle(topic: String, payload: [UInt8]) async {
        guard let incoming = topics.parse(topic) else { return }
        switch incoming {
        case .update, .health("_confbus", _): break   // our own and other nodes' announcements
        default:
            // Instance messages wait (in order) until the versions are loaded from the database.
            _ = await status.waitUntilLoaded(timeout: .seconds(30))
        }
        switch incoming {
        case .update(let raw):
            // Our own publishes and the retained state: remember the newest version per service.
            guard case .integer(let version)? = (try? JSONParser(maxDepth: 64).parse(payload))?["version"] else { return }
            seenOnBroker.withLock { seen in seen[raw] = max(seen[raw] ?? 0, version) }
        case .register(let raw):
            await answer(raw, kind: "register", instance: Self.instance(in: payload)) { (service: ServiceName) async throws(ConfbusError) in
                try await self.distributor.register(service, payload: payload)
            }
        case .ack(let raw, let instance):
            await answer(raw, kind: "ack", instance: instance) { (service: ServiceName) async throws(ConfbusError) in
                try await self.distributor.acknowledge(service, instance: instance, payload: payload)
            }
        case .health(let raw, let instance):
            if raw == "_confbus" { return }   // other nodes' health
            await answer(raw, kind: "health", instance: instance) { (service: ServiceName) async throws(ConfbusError) in
                try await self.distributor.health(service, instance: instance, payload: payload)
            }
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
        do {
            try await body(service)
        } catch {
            counters.refused(code: error.code.description)
            logger.info("refused a message", metadata: ["confbus.service": "\(service)", "confbus.kind": "\(kind)",
                                                         "error.code": "\(error.code)", "error": "\(error.message)"])
            var body: [String: JSONValue] = ["error": .object(["code": .string(error.code.description), "message": .string(error.message)])]
            if let instance, InstanceMessages.isValidInstanceID(instance) { body["instance"] = .string(instance) }
            try? await client.publish(JSONValue.object(body).serializedBytes(), to: topics.error(service), retain: false)
        }
    }

    /// The instance a registration names, when the payload is readable enough to tell.
    static func instance(in payload: [UInt8]) -> String? {
        guard payload.count <= 4096, let value = try? JSONParser(maxDepth: 4).parse(payload),
              case .string(let instance)? = value["instance"] else { return nil }
        return instance
    }

    // MARK: Health

    public func publishHealth(offline: Bool = false) async {
        guard client.isConnected else { return }
        let databaseUp = status.database
        let degraded = !databaseUp || !distributor.brokenServices.isEmpty
        let payload: JSONValue = .object([
            "status": .string(offline ? "offline" : (degraded ? "degraded" : "online")),
            "node": .string(options.node),
            "started_at": .string(Timestamp.format(startedAt)),
            "services": .integer(distributor.cache.all.count),
            "mqtt": .string(offline ? "disconnected" : "connected"),
            "database": .string(databaseUp ? "connected" : "disconnected"),
            "timestamp": .string(Timestamp.format(Date())),
        ])
        do {
            try await client.publish(payload.serializedBytes(), to: topics.nodeHealth(options.node), retain: true)
        } catch {
            logger.debug("health not published", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Reconcile

    private func reconcileAfterSettle() async {
        try? await Task.sleep(for: options.retainedSettle)
        await reconcile()
    }

    /// Subscribing again makes the broker send every retained update once more.
    private func refreshRetainedAndReconcile() async {
        guard client.isConnected else { return }
        seenOnBroker.withLock { $0.removeAll() }
        do {
            try client.unsubscribe([topics.updates])
            try client.subscribe([topics.updates])
        } catch {
            return
        }
        await reconcileAfterSettle()
    }

    /// Republishes each service whose retained version is missing or behind the database's latest.
    @discardableResult
    public func reconcile() async -> Int {
        guard client.isConnected else { return 0 }
        let latest: [StoredVersion]
        do {
            latest = try await distributor.store.latestVersions()
        } catch {
            latest = distributor.cache.all
        }
        var republished = 0
        for version in latest {
            let seen = seenOnBroker.withLock { $0[version.service.rawValue] ?? 0 }
            guard seen < version.version else { continue }
            do {
                try await publishUpdate(version)
                republished += 1
            } catch {
                logger.debug("reconcile publish failed; will retry", metadata: ["confbus.service": "\(version.service)"])
                break
            }
        }
        if republished > 0 {
            counters.reconciled.increment(by: republished)
            logger.info("republished retained updates the broker was missing", metadata: ["count": "\(republished)"])
        }
        return republished
    }
}
