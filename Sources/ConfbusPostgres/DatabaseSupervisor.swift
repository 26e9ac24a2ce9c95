import ConfbusCore
import ConfbusEngine
import Logging
import PostgresNIO
import ServiceLifecycle

/// Brings the distributor up whenever PostgreSQL is reachable, and keeps watching: migrations,
/// the live cache, the first reload of the tree; then a probe every `probeInterval` that marks
/// the database up or down for `/readyz`, the health topic and `Confbus-Stale`. confbus starts
/// without a database and catches up when it appears (no restart needed).
public struct DatabaseSupervisor: Service {
    let client: PostgresClient
    let distributor: Distributor
    let readiness: Readiness
    let refreshInterval: Duration
    let probeInterval: Duration
    let logger: Logger

    public init(client: PostgresClient, distributor: Distributor, readiness: Readiness,
                refreshInterval: Duration, probeInterval: Duration = .seconds(2), logger: Logger) {
        self.client = client
        self.distributor = distributor
        self.readiness = readiness
        self.refreshInterval = refreshInterval
        self.probeInterval = probeInterval
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown { await supervise() }
    }

    private func supervise() async {
        var started = false
        var sinceRefresh = ContinuousClock.now
        while !Task.isCancelled {
                do {
                try await client.query("SELECT 1", logger: logger)
                if !readiness.database { logger.info("database reachable") }
                readiness.setDatabase(true)
            } catch {
                if readiness.database {
                    logger.warning("database unreachable", metadata: ["error": "\(String(reflecting: error).prefix(300))"])
                }
                readiness.setDatabase(false)
            }
            if readiness.database {
                do {
                    if !started {
                        try await Migrations.run(on: client, logger: logger)
                        try await distributor.loadCache()
                        let report = try await distributor.reload(reason: "start-up")
                        logger.info("start-up reload", metadata: ["committed": "\(report.committed.count)", "unchanged": "\(report.unchanged.count)",
                                                                  "invalid": "\(report.failed.count)"])
                        distributor.outboxSignal.signal()
                        readiness.setLoaded()
                        started = true
                        sinceRefresh = .now
                    } else if ContinuousClock.now - sinceRefresh > refreshInterval {
                        // A safety net under LISTEN/NOTIFY: pick up other nodes' commits.
                        try await distributor.loadCache()
                        sinceRefresh = .now
                    }
                } catch {
                    logger.error("start-up against the database failed; retrying", metadata: ["error": "\(String(reflecting: error).prefix(500))"])
                }
            }
                try? await Task.sleep(for: probeInterval)
        }
    }
}

/// Listens for other nodes' commits (`pg_notify` in the commit transaction) and loads them into
/// the live cache, so pull is never staler than the last commit this node saw. Notifications
/// are only a wake-up: the supervisor's periodic refresh covers any that are lost.
public struct VersionListener: Service {
    let client: PostgresClient
    let distributor: Distributor
    let logger: Logger

    public init(client: PostgresClient, distributor: Distributor, logger: Logger) {
        self.client = client
        self.distributor = distributor
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await client.withConnection { connection in
                        for try await notification in try await connection.listen(PostgresVersionStore.notificationChannel) {
                            guard let colon = notification.payload.lastIndex(of: ":"),
                                  let service = try? ServiceName(validating: String(notification.payload[..<colon]))
                            else { continue }
                            if let latest = try await distributor.store.latest(service) {
                                distributor.cache.offer(latest)
                            }
                        }
                    }
                } catch {
                    logger.debug("LISTEN connection lost; reconnecting", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
