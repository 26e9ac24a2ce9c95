import ConfbusCore
import Logging
import Metrics
import ServiceLifecycle
import Synchronization

/// Who relays, as the relay last saw it: for the health payload, readiness and reconcile (only
/// the node that holds the lease republishes).
public final class RelayStatus: Sendable {
    private struct State {
        var lease: RelayLease?
        var failing: [ServiceName: String] = [:]
        var refused: Set<ServiceName> = []
        var outbox = OutboxStatus()
        var requeued: Set<ServiceName> = []
        var diverged: [ServiceName] = []
    }
    private let state = Mutex(State())

    public init() {}

    public var lease: RelayLease? { state.withLock { $0.lease } }
    public var isRelaying: Bool { lease != nil }
    /// Services whose last publish failed, with the reason.
    public var failing: [ServiceName: String] { state.withLock { $0.failing } }
    /// Of those, the services whose publishes the broker refused (an ACL, a size): their own fault.
    public var refused: Set<ServiceName> { state.withLock { $0.refused } }
    public var outbox: OutboxStatus { state.withLock { $0.outbox } }

    func setLease(_ lease: RelayLease?) {
        state.withLock { $0.lease = lease }
    }

    /// Reconcile queued these services again: the relay must send them even if it sent them before.
    public func requeued(_ services: [ServiceName]) { state.withLock { $0.requeued.formUnion(services) } }

    func takeRequeued() -> Set<ServiceName> { state.withLock { s in defer { s.requeued = [] }; return s.requeued } }

    func setFailing(_ failing: [ServiceName: String], refused: Set<ServiceName>) {
        state.withLock { $0.failing = failing; $0.refused = refused }
    }
    public func setOutbox(_ outbox: OutboxStatus) { state.withLock { $0.outbox = outbox } }

    /// The services marked diverged (CONTRACT.md §11), as last read, for the health topic.
    public var diverged: [ServiceName] { state.withLock { $0.diverged } }
    public func setDiverged(_ services: [ServiceName]) { state.withLock { $0.diverged = services } }
}

/// Relays the outbox: every committed version is published, each service in version order and
/// independently of the others. Exactly one node relays at a time, holding a lease in the
/// database with an epoch that grows on every takeover; publishing happens with no transaction
/// open (claim, publish, then mark done under the lease). The decisions are the pure
/// `OutboxStateMachine`; this is the loop around it.
public struct OutboxRelay: Service {
    public struct Options: Sendable {
        public var node: String
        /// A dead holder's lease lapses after this; another node takes over within it plus `pollInterval`.
        public var leaseTTL: Duration = .seconds(5)
        public var pollInterval: Duration = .seconds(1)
        public var batchSize = 256
        /// Publishes in flight at once; libmosquitto queues past the broker's Receive Maximum.
        public var concurrency = 256
        public var backoff = OutboxStateMachine<ContinuousClock.Instant>.Backoff()

        public init(node: String) { self.node = node }
    }

    public let store: any OutboxStore
    public let publisher: any UpdatePublisher
    public let signal: WakeSignal
    public let status: RelayStatus
    /// The relay starts once the start-up sequence has loaded (the lease table exists then).
    public let readiness: Readiness
    public let options: Options
    public let failpoints: Failpoints
    public let logger: Logger
    public let onPublished: @Sendable (StoredVersion) -> Void
    /// This node's fresh commits, published before the outbox is read (nil: read the outbox only).
    public let handoff: OutboxHandoff?

    public init(store: any OutboxStore, publisher: any UpdatePublisher, signal: WakeSignal, status: RelayStatus = RelayStatus(),
                readiness: Readiness, options: Options, failpoints: Failpoints = Failpoints(), logger: Logger,
                handoff: OutboxHandoff? = nil, onPublished: @escaping @Sendable (StoredVersion) -> Void = { _ in }) {
        self.handoff = handoff
        self.store = store
        self.publisher = publisher
        self.signal = signal
        self.status = status
        self.readiness = readiness
        self.options = options
        self.failpoints = failpoints
        self.logger = logger
        self.onPublished = onPublished
    }

    final class Machine: Sendable {
        let state: Mutex<OutboxStateMachine<ContinuousClock.Instant>>
        init(backoff: OutboxStateMachine<ContinuousClock.Instant>.Backoff) {
            state = Mutex(OutboxStateMachine(backoff: backoff, advance: { $0 + $1 }))
        }
    }

    public func run() async throws {
        let machine = Machine(backoff: options.backoff)
        await cancelWhenGracefulShutdown {
            while !(await readiness.waitUntilLoaded(timeout: .seconds(60))) {
                if Task.isCancelled { return }
            }
            var lastRenewal = ContinuousClock.now - .seconds(3600)
            while !Task.isCancelled {
                if ContinuousClock.now - lastRenewal >= options.pollInterval {
                    await renewLease(machine)
                    lastRenewal = .now
                }
                if status.isRelaying {
                    await pass(machine)
                } else {
                    // Another node relays: it reads these from the outbox.
                    _ = handoff?.take()
                }
                let retry = machine.state.withLock { $0.nextRetry }
                var wait = options.pollInterval
                if let retry { wait = max(.milliseconds(10), min(wait, retry - .now)) }
                await signal.wait(timeout: wait)
            }
        }
        // A clean shutdown: one last pass within a few seconds, then hand the lease back so
        // another node takes over at once (what is left goes out there or after the next start).
        await withTaskGroup(of: Void.self) { group in
            group.addTask { if self.status.isRelaying { await self.pass(machine) } }
            group.addTask { try? await Task.sleep(for: .seconds(5)) }
            await group.next()
            group.cancelAll()
        }
        if let lease = status.lease { try? await store.releaseLease(lease) }
        status.setLease(nil)
    }

    private func renewLease(_ machine: Machine) async {
        let before = status.lease
        do {
            let lease = try await store.acquireLease(holder: options.node, ttl: options.leaseTTL)
            try failpoints.hit("after_lease_check")
            if lease != before {
                machine.state.withLock { $0.leadershipLost() }
                // A new tenure knows nothing of what was published before it: the outbox decides.
                _ = handoff?.take()
                if let lease {
                    logger.info("holding the relay lease", metadata: ["confbus.epoch": "\(lease.epoch)"])
                } else if before != nil {
                    logger.warning("the relay lease passed to another node")
                }
            }
            status.setLease(lease)
        } catch {
            // Without the database nobody can mark anything done: stop relaying until it is back.
            if before != nil { logger.warning("cannot renew the relay lease", metadata: ["error.type": "\(type(of: error))"]) }
            machine.state.withLock { $0.leadershipLost() }
            status.setLease(nil)
        }
    }

    /// One look at the outbox: publishes what is due, concurrently across services.
    @discardableResult
    func pass(_ machine: Machine) async -> Int {
        guard let lease = status.lease else { return 0 }
        let requeued = status.takeRequeued()
        if !requeued.isEmpty { machine.state.withLock { m in for service in requeued { m.forget(service) } } }
        let actions: [OutboxStateMachine<ContinuousClock.Instant>.Action]
        // This node's fresh commits go out without a look at the outbox; a pass that read the
        // outbox follows, so nothing the handoff missed waits for the poll.
        let handed = handoff?.take() ?? []
        if !handed.isEmpty { signal.signal() }
        do {
            let blocked = machine.state.withLock { $0.blocked(at: .now) }
            let pending: [StoredVersion]
            if handed.isEmpty {
                pending = try await store.pendingOutbox(limit: options.batchSize, excluding: blocked)
            } else {
                let skipped = Set(blocked)
                pending = handed.filter { !skipped.contains($0.service) }
            }
            try failpoints.hit("after_outbox_claim")
            actions = machine.state.withLock { $0.schedule(pending, at: .now) }
        } catch {
            logger.debug("outbox not read; will retry", metadata: ["error.type": "\(type(of: error))"])
            return 0
        }
        // Everything due is published at once (each tracked to its own PUBACK), then marked
        // done in one statement.
        var marks: [ServiceName: Int] = [:]
        await withTaskGroup(of: (ServiceName, Int)?.self) { group in
            var running = 0
            for action in actions {
                if running >= options.concurrency {
                    if let mark = await group.next() ?? nil { marks[mark.0] = max(marks[mark.0] ?? 0, mark.1) }
                    running -= 1
                }
                running += 1
                group.addTask { await self.perform(action, machine: machine) }
            }
            for await mark in group {
                if let mark { marks[mark.0] = max(marks[mark.0] ?? 0, mark.1) }
            }
        }
        let (failing, refused) = machine.state.withLock { ($0.failing, $0.refused) }
        status.setFailing(failing, refused: refused)
        if !marks.isEmpty {
            do {
                try failpoints.hit("after_publish_before_mark")
                if try await !store.markPublished(marks, lease: lease) {
                    logger.warning("the relay lease was lost; another node relays now")
                    status.setLease(nil)
                    machine.state.withLock { $0.leadershipLost() }
                }
                try failpoints.hit("after_mark")
            } catch {
                logger.debug("publishes not marked; the next pass marks them", metadata: ["error.type": "\(type(of: error))"])
            }
        }
        if actions.count >= options.batchSize { signal.signal() }
        return marks.count
    }

    /// Publishes one version (or only marks one done); returns what to mark.
    private func perform(_ action: OutboxStateMachine<ContinuousClock.Instant>.Action, machine: Machine) async -> (ServiceName, Int)? {
        switch action {
        case .markDone(let service, let version):
            return (service, version)
        case .publish(let version):
            do {
                try failpoints.hit("before_publish")
                try await publisher.publishUpdate(version)
            } catch {
                let reason = publisher.failureReason(error)
                Counter(label: "confbus_publish_failures_total", dimensions: [("reason", reason)]).increment()
                let refused = publisher.isRefusal(error)
                let delay = machine.state.withLock { $0.failed(version.service, version: version.version, reason: reason, refused: refused, at: .now) }
                logger.warning("publish failed; this service retries with backoff, the others go on",
                               metadata: ["confbus.service": "\(version.service)", "confbus.version": "\(version.version)",
                                          "confbus.reason": "\(reason)", "confbus.retry_in": "\(delay)"])
                return nil
            }
            machine.state.withLock { $0.published(version.service, version: version.version) }
            onPublished(version)
            return (version.service, version.version)
        }
    }
}
