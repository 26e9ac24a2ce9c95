import ConfbusCore
import ConfbusEngine
import ConfbusMosquitto
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// confbus on the bus: publishes committed versions (retained), answers registrations, acks
/// and health messages, announces its own health, and reconciles the retained
/// `config/update/#` messages with the database on every (re)connect and every
/// `reconcileInterval`. Connection events have their own path (a re-subscribe never waits
/// behind messages); instance messages go through `InstanceInbox`, concurrent across services.
public final class MQTTGateway: Service, UpdatePublisher, RolloutPublisher {
    public struct Options: Sendable {
        public var node: String
        public var healthInterval: Duration
        public var reconcileInterval: Duration
        /// How long retained messages may take to arrive after a subscribe.
        public var retainedSettle: Duration = .milliseconds(500)
        /// A broker that answers no PUBACK for this long is not ready, though the TCP connection
        /// stands (a paused or wedged broker; libmosquitto's keepalive notices only after 7.5 s).
        public var livenessTimeout: Duration = .seconds(2)
        public var livenessInterval: Duration = .seconds(1)
        /// Which of `mqtt_urls` this gateway's broker is (its place in `Readiness.brokers`).
        public var broker = 0

        public init(node: String, healthInterval: Duration, reconcileInterval: Duration) {
            self.node = node
            self.healthInterval = healthInterval
            self.reconcileInterval = reconcileInterval
        }
    }

    public let client: MosquittoClient
    public let topics: TopicCodec
    let reads: ConfigReads
    let outbox: any OutboxStore
    let limits: PublishLimits
    let signal: WakeSignal
    let status: Readiness
    let relay: RelayStatus
    let options: Options
    let logger: Logger
    let startedAt = Date()
    /// The newest (version, checksum) seen on each `config/update/<service>`, retained or live, and
    /// whether it is a version clients may have applied (its checksum is its config's: ours, or one
    /// this database lost), as opposed to a forged or damaged message that clients drop.
    private let seenOnBroker = Mutex<[ServiceName: Retained]>([:])

    struct Retained {
        var version: Int
        var checksum: String
        var genuine: Bool

        /// A version this database does not have, above its latest or with another checksum at
        /// its number: clients may hold it, so publishing `latest` would not reach them (§11).
        func diverges(from latest: StoredVersion) -> Bool {
            genuine && (version > latest.version || (version == latest.version && checksum != latest.checksum))
        }
    }
    /// The invalid services last announced on `config/error/<service>`, with their errors' text.
    private let announcedInvalid = Mutex<[ServiceName: String]>([:])
    private let counters: GatewayCounters
    let inbox: InstanceInbox
    /// Run after a repair of a divergence: the files are read again onto the repaired version.
    let afterRepair: @Sendable () async -> Void

    public init(client: MosquittoClient, topics: TopicCodec, distributor: Distributor, outbox: any OutboxStore, status: Readiness, relay: RelayStatus,
                options: Options, counters: GatewayCounters = GatewayCounters(), logger: Logger,
                afterRepair: @escaping @Sendable () async -> Void = {}) {
        self.afterRepair = afterRepair
        self.client = client
        self.topics = topics
        self.reads = distributor.reads
        self.outbox = outbox
        self.limits = distributor.pipeline.limits
        self.signal = distributor.pipeline.signal
        self.status = status
        self.relay = relay
        self.options = options
        self.counters = counters
        self.logger = logger
        self.inbox = InstanceInbox(client: client, topics: topics, reports: distributor.instances, readiness: status, counters: counters,
                                   logger: logger)
    }

    public static func willPayload(node: String, startedAt: Date) -> [UInt8] {
        JSONValue.object(["status": "offline", "node": .string(node), "started_at": .string(Timestamp.format(startedAt))])
            .serializedBytes()
    }

    // MARK: UpdatePublisher

    public func publishUpdate(_ version: StoredVersion) async throws {
        // Never below a version the broker holds and the database lost: that is repaired instead,
        // by a version above it (which the relay publishes next); this one is superseded.
        if let held = seenOnBroker.withLock({ $0[version.service] }) {
            if held.diverges(from: version) {
                try await repair(version.service, held)
                return
            }
            // The broker already holds exactly this (a reconcile that queued it while the relay sent
            // it): sending it again would only be a duplicate. What it holds is read afresh on every
            // connect and every reconcile, so a broker that lost it is never taken to have it.
            if held.genuine, held.version == version.version, held.checksum == version.checksum { return }
        }
        try await client.publish(version.document.serializedBytes(), to: topics.update(version.service), retain: true)
        counters.published.increment()
        seenOnBroker.withLock { seen in
            if (seen[version.service]?.version ?? 0) <= version.version {
                seen[version.service] = Retained(version: version.version, checksum: version.checksum, genuine: true)
            }
        }
    }

    private func repair(_ service: ServiceName, _ held: Retained) async throws {
        guard let repaired = try await outbox.repairDivergence(service, retained: (held.version, held.checksum)) else { return }
        logger.error("the broker held a version this database does not have; committed the database's config again above it",
                     metadata: ["confbus.service": "\(service)", "confbus.retained_version": "\(held.version)",
                                "confbus.repaired_version": "\(repaired.version)"])
        counters.diverged.increment()
        signal.signal()
        await afterRepair()
    }

    /// The retained rollout message (CONTRACT.md §8), or an empty one that clears it.
    public func publishRollout(_ service: ServiceName, payload: JSONValue?) async throws {
        try await client.publish(payload?.serializedBytes() ?? [], to: topics.rollout(service), retain: true)
    }

    public func failureReason(_ error: any Error) -> String {
        (error as? MQTTError)?.reasonLabel ?? "error"
    }

    /// A reason code from the broker, or a message larger than it takes.
    public func isRefusal(_ error: any Error) -> Bool {
        switch error as? MQTTError {
        case .refused?, .tooLarge?: true
        default: false
        }
    }

    // MARK: Service

    public func run() async throws {
        client.start()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.inbox.run() }
            group.addTask { await self.consumeEvents() }
            group.addTask {
                while !Task.isCancelled {
                    await self.status.changed.wait(timeout: self.options.healthInterval)
                    if Task.isCancelled { return }
                    await self.publishHealth()
                    await self.announceInvalidServices()
                }
            }
            group.addTask { await self.periodic(self.options.reconcileInterval) { await self.refreshRetainedAndReconcile() } }
            group.addTask { await self.periodic(self.options.livenessInterval) { await self.probeLiveness() } }
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

    /// Connection events are handled here at once; messages are handed to the inbox (bounded,
    /// ordered per service) or, for our own update topics, recorded for reconcile.
    private func consumeEvents() async {
        await withDiscardingTaskGroup { group in
            for await event in client.events {
                if Task.isCancelled { return }
                switch event {
                case .connected(let maximumPacketSize):
                    limits.setBrokerMaximumPacketSize(maximumPacketSize)
                    status.setMQTT(true, broker: options.broker)
                    logger.info("connected to the MQTT broker", metadata: ["mqtt.url": "\(client.configuration.url)",
                                                                           "mqtt.maximum_packet_size": "\(maximumPacketSize.map(String.init) ?? "none")"])
                    seenOnBroker.withLock { $0.removeAll() }
                    announcedInvalid.withLock { $0.removeAll() }
                    do {
                        try client.subscribe(topics.subscriptions + [topics.updates])
                    } catch {
                        logger.error("cannot subscribe", metadata: ["error": "\(error)"])
                    }
                    group.addTask { await self.publishHealth() }
                    group.addTask { await self.reconcileAfterSettle() }
                    signal.signal()
                case .disconnected(let reason):
                    status.setMQTT(false, broker: options.broker)
                    logger.warning("disconnected from the MQTT broker", metadata: ["mqtt.reason": "\(reason)"])
                case .message(let topic, let payload, _):
                    guard let incoming = topics.parse(topic) else { continue }
                    if case .update(let raw) = incoming {
                        recordRetained(raw, payload)
                    } else {
                        inbox.enqueue(incoming, payload: payload)
                    }
                }
            }
        }
    }

    /// Our own publishes and the retained state: the newest (version, checksum) per valid service
    /// name; retained messages on names that are not services are ignored.
    private static let retainedFields: Set<String> = ["version", "checksum"]

    private func recordRetained(_ raw: String, _ payload: [UInt8]) {
        guard let service = try? ServiceName(validating: raw) else { return }
        // Only the two fields are read; the config in the payload is stepped over, not built.
        guard let value = try? JSONParser(maxDepth: 64).members(Self.retainedFields, of: payload),
              case .integer(let version)? = value["version"], case .string(let checksum)? = value["checksum"] else {
            // An empty or unreadable retained message: the broker holds nothing usable for it.
            seenOnBroker.withLock { $0[service] = Retained(version: 0, checksum: "", genuine: false) }
            return
        }
        // The version this node holds is genuine as it stands, and one below it does not matter (it
        // is republished anyway); any other — above it, or at its number with another checksum — only
        // if its checksum is its config's (the whole payload is read only then, which is rare).
        let held = reads.latest(service)
        let genuine = if let held, held.version > version || (held.version == version && held.checksum == checksum) {
            held.version == version
        } else {
            (try? JSONParser(maxDepth: 64).parse(payload))?["config"]?.checksum == checksum
        }
        seenOnBroker.withLock { seen in
            if (seen[service]?.version ?? 0) <= version { seen[service] = Retained(version: version, checksum: checksum, genuine: genuine) }
        }
    }

    // MARK: Liveness

    /// A QoS 1 publish the broker must acknowledge within `livenessTimeout`: any PUBACK, even a
    /// refusal, shows it alive; none marks MQTT down for `/readyz` and health until one comes.
    func probeLiveness() async {
        guard client.isConnected else { return }
        do {
            try await client.publish([], to: topics.liveness(options.node), retain: false, timeout: options.livenessTimeout)
            answered()
        } catch MQTTError.timedOut {
            if status.mqtt(broker: options.broker) {
                logger.warning("the MQTT broker does not acknowledge; not ready until it does", metadata: ["mqtt.url": "\(client.configuration.url)"])
            }
            status.setMQTT(false, broker: options.broker)
        } catch MQTTError.refused {
            answered()
        } catch {
            // Not connected: the connection events say so.
        }
    }

    private func answered() {
        if !status.mqtt(broker: options.broker), client.isConnected {
            logger.info("the MQTT broker acknowledges again", metadata: ["mqtt.url": "\(client.configuration.url)"])
            status.setMQTT(true, broker: options.broker)
        }
    }

    // MARK: Health

    public func publishHealth(offline: Bool = false) async {
        guard client.isConnected else { return }
        let databaseUp = status.database
        let outbox = relay.outbox
        // The node's own dependencies only: one team's invalid files never degrade it (§6a, P18).
        // Stuck means the relay makes no progress. A service whose publishes the broker answers with a
        // refusal (an ACL, a size) is that service's fault, counted and shown in the backlog, not the node's:
        // only versions waiting beyond those refused ones count.
        let stuck = (outbox.oldestAge ?? 0) > Double(options.reconcileInterval.components.seconds) && outbox.backlog > relay.refused.count
        let degraded = !databaseUp || stuck
        let invalid = reads.invalidServices
        var payload: [String: JSONValue] = [
            "status": .string(offline ? "offline" : (degraded ? "degraded" : "online")),
            "node": .string(options.node),
            "started_at": .string(Timestamp.format(startedAt)),
            "services": .integer(reads.all.count),
            "invalid_services": .integer(invalid.count),
            "mqtt": .string(offline ? "disconnected" : "connected"),
            "database": .string(databaseUp ? "connected" : "disconnected"),
            "outbox_backlog": .integer(outbox.backlog),
            "oldest_unpublished_age_s": outbox.oldestAge.map { .number(($0 * 10).rounded() / 10) } ?? .integer(0),
            "relay": .bool(relay.isRelaying),
            "session_takeovers": .integer(client.sessionTakeovers),
            "timestamp": .string(Timestamp.format(Date())),
        ]
        if let epoch = relay.lease?.epoch { payload["epoch"] = .integer(Int(epoch)) }
        if !relay.failing.isEmpty { payload["publish_failures"] = .integer(relay.failing.count) }
        // Services whose broker held a version the database lost, repaired (§11): an operator should look.
        let diverged = relay.diverged
        if !diverged.isEmpty { payload["diverged_services"] = .array(diverged.map { .string($0.rawValue) }) }
        do {
            try await client.publish(JSONValue.object(payload).serializedBytes(), to: topics.nodeHealth(options.node), retain: true)
        } catch {
            logger.debug("health not published", metadata: ["error": "\(error)"])
        }
    }

    /// A service whose files turned invalid is told on `config/error/<service>` (once per change
    /// of its errors), with the file, line and rule, never a value.
    func announceInvalidServices() async {
        guard client.isConnected else { return }
        let invalid = reads.invalidServices
        let toSend: [(ServiceName, [ConfbusError])] = announcedInvalid.withLock { announced in
            var out: [(ServiceName, [ConfbusError])] = []
            for (service, errors) in invalid {
                let text = errors.map(\.description).joined(separator: "\n")
                if announced[service] != text { out.append((service, errors)); announced[service] = text }
            }
            for service in announced.keys where invalid[service] == nil { announced[service] = nil }
            return out
        }
        for (service, errors) in toSend {
            let first = errors.first
            var error: [String: JSONValue] = ["code": .string(first?.code.description ?? "invalid"),
                                              "message": .string("the service's files are invalid; its last valid version stays live: \(first?.message ?? "")")]
            if let location = first?.location { error["location"] = .string(location.description) }
            try? await client.publish(JSONValue.object(["error": .object(error)]).serializedBytes(), to: topics.error(service), retain: false)
        }
    }

    // MARK: Reconcile

    private func reconcileAfterSettle() async {
        try? await Task.sleep(for: options.retainedSettle)
        await reconcile()
    }

    /// Subscribing again makes the broker send every retained update once more.
    private func refreshRetainedAndReconcile() async {
        guard client.isConnected, relay.isRelaying else { return }
        seenOnBroker.withLock { $0.removeAll() }
        do {
            try client.unsubscribe([topics.updates])
            try client.subscribe([topics.updates])
        } catch {
            return
        }
        await reconcileAfterSettle()
    }

    /// Queues again, through the relay, every service whose retained (version, checksum) differs
    /// from the database's latest: missing, behind, ahead, or the same version with another checksum.
    @discardableResult
    public func reconcile() async -> Int {
        guard client.isConnected, relay.isRelaying else { return 0 }
        let latest: [StoredVersion]
        do {
            latest = try await reads.storedLatest()
        } catch {
            return 0
        }
        let seen = seenOnBroker.withLock { $0 }
        var diverged: [(ServiceName, Retained)] = []
        let differing = latest.filter { version in
            guard let held = seen[version.service] else { return true }
            if held.diverges(from: version) {
                diverged.append((version.service, held))
                return false
            }
            return held.version != version.version || held.checksum != version.checksum
        }
        for (service, held) in diverged {
            do {
                try await repair(service, held)
            } catch {
                logger.debug("reconcile could not repair a divergence; will retry", metadata: ["error.type": "\(type(of: error))"])
            }
        }
        // What is still queued (or being sent) goes out anyway: queued again, it would go out twice.
        // (One the relay finished sending while this looked is skipped by `publishUpdate`.)
        guard !differing.isEmpty, let queued = try? await outbox.queuedServices() else { return diverged.count }
        let mismatched = differing.filter { !queued.contains($0.service) }
        guard !mismatched.isEmpty else { return diverged.count }
        do {
            try await outbox.requeue(mismatched)
        } catch {
            logger.debug("reconcile could not queue; will retry", metadata: ["error.type": "\(type(of: error))"])
            return 0
        }
        relay.requeued(mismatched.map(\.service))
        signal.signal()
        counters.reconciled.increment(by: mismatched.count)
        logger.info("queued retained updates the broker was missing or held differently", metadata: ["count": "\(mismatched.count)"])
        return mismatched.count
    }
}
