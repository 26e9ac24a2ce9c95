import ConfbusCore
import Logging
import ServiceLifecycle
import Synchronization

/// Brings the distributor up whenever the database is reachable, and keeps watching: migrations,
/// the live cache, the first reload of the tree, ready; then a probe every `probeInterval`
/// (bounded by `probeTimeout`) that marks the database up or down for `/readyz`, the health
/// topic and `Confbus-Stale`, a periodic refresh of the cache under LISTEN, and the expiry of
/// silent instances. confbus starts without a database and catches up when it appears.
public struct Startup: Service {
    public struct Options: Sendable {
        public var probeInterval: Duration = .seconds(1)
        public var probeTimeout: Duration = .seconds(2)
        public var refreshInterval: Duration
        public var instanceTTL: Duration

        public init(refreshInterval: Duration, instanceTTL: Duration = .seconds(86_400)) {
            self.refreshInterval = refreshInterval
            self.instanceTTL = instanceTTL
        }
    }

    let reads: ConfigReads
    let reloader: TreeReload
    let instances: any InstanceStore
    let signal: WakeSignal
    let readiness: Readiness
    let options: Options
    let probe: @Sendable () async throws -> Void
    let migrate: @Sendable () async throws -> Void
    /// Grows when the database written through changes (a promotion, CONTRACT.md §11).
    let databaseGeneration: @Sendable () -> UInt64
    let logger: Logger

    public init(distributor: Distributor, instances: any InstanceStore, readiness: Readiness, options: Options, logger: Logger,
                probe: @escaping @Sendable () async throws -> Void, migrate: @escaping @Sendable () async throws -> Void,
                databaseGeneration: @escaping @Sendable () -> UInt64 = { 0 }) {
        self.databaseGeneration = databaseGeneration
        self.reads = distributor.reads
        self.reloader = distributor.reloader
        self.signal = distributor.pipeline.signal
        self.instances = instances
        self.readiness = readiness
        self.options = options
        self.probe = probe
        self.migrate = migrate
        self.logger = logger
    }

    public func run() async throws {
        try await cancelWhenGracefulShutdown { try await supervise() }
    }

    private func supervise() async throws {
        var started = false
        var sinceRefresh = ContinuousClock.now
        var generation = databaseGeneration()
        while !Task.isCancelled {
            let up = await Self.succeeds(within: options.probeTimeout, probe)
            if up != readiness.database {
                if up { logger.info("database reachable") } else { logger.warning("database unreachable") }
            }
            readiness.setDatabase(up)
            if up {
                do {
                    if !started {
                        try await migrate()
                        try await reads.refreshAll()
                        let report = try await reloader.reload(reason: "start-up")
                        logger.info("start-up reload", metadata: ["committed": "\(report.committed.count)", "unchanged": "\(report.unchanged.count)",
                                                                  "invalid": "\(report.failed.count)"])
                        signal.signal()
                        readiness.setLoaded()
                        started = true
                        sinceRefresh = .now
                        generation = databaseGeneration()
                    } else if databaseGeneration() != generation {
                        // A new primary may lack what the old one committed last (an asynchronous
                        // standby): read what it holds, reload the files onto it, wake the relay.
                        generation = databaseGeneration()
                        logger.notice("following a new database primary")
                        try await reads.refreshAll()
                        let report = try await reloader.reload(reason: "new database primary")
                        if !report.committed.isEmpty { logger.info("reloaded onto the new primary", metadata: ["committed": "\(report.committed.count)"]) }
                        signal.signal()
                        sinceRefresh = .now
                    } else if ContinuousClock.now - sinceRefresh > options.refreshInterval {
                        // A safety net under LISTEN/NOTIFY: pick up other nodes' commits.
                        try await reads.refreshAll()
                        let expired = try await instances.expireInstances(olderThan: options.instanceTTL)
                        if expired > 0 { logger.info("forgot silent instances", metadata: ["count": "\(expired)"]) }
                        sinceRefresh = .now
                    }
                } catch let refusal as StartupRefusal {
                    logger.critical("confbus cannot start on this database", metadata: ["reason": "\(refusal.message)"])
                    throw refusal
                } catch {
                    logger.error("start-up against the database failed; retrying", metadata: ["error": "\(String(reflecting: error).prefix(500))"])
                }
            }
            try? await Task.sleep(for: options.probeInterval)
        }
    }

    /// Whether `operation` succeeds within `timeout`.
    static func succeeds(within timeout: Duration, _ operation: @escaping @Sendable () async throws -> Void) async -> Bool {
        await Deadline.race(timeout, otherwise: false) { (try? await operation()) != nil }
    }
}

/// A start-up that retrying cannot fix (a database sealed under a key this node does not hold):
/// the process stops with this message.
public struct StartupRefusal: Error, Sendable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// The answer of `operation`, or `fallback` if it takes longer than `timeout`. A driver call that
/// hangs (a stopped server, a pool waiting for a connection) is abandoned, not waited for, so the
/// answer comes in time.
public enum Deadline {
    public static func race<T: Sendable>(_ timeout: Duration, otherwise fallback: T,
                                         _ operation: @escaping @Sendable () async -> T) async -> T {
        let slot = ContinuationSlot<T>()
        return await withCheckedContinuation { continuation in
            slot.value.withLock { $0 = continuation }
            let work = Task {
                slot.resume(await operation())
            }
            Task {
                try? await Task.sleep(for: timeout)
                work.cancel()
                slot.resume(fallback)
            }
        }
    }
}

/// The one continuation of `Deadline.race`, resumed by whichever of its two tasks ends first.
private final class ContinuationSlot<T: Sendable>: Sendable {
    let value = Mutex<CheckedContinuation<T, Never>?>(nil)

    func resume(_ result: T) {
        value.withLock { $0.take() }?.resume(returning: result)
    }
}
