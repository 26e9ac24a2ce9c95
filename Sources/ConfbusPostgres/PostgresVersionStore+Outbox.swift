import ConfbusCore
import ConfbusEngine
import Foundation
import PostgresNIO

/// The outbox and the relay lease. Every decision about time uses the database's `now()`.
extension PostgresVersionStore: OutboxStore {
    public func acquireLease(holder: String, ttl: Duration) async throws -> RelayLease? {
        let ttlSeconds = ttl.seconds
        // Taken when free or lapsed (epoch + 1), renewed when ours and current (same epoch).
        for try await epoch in try await client.query("""
            INSERT INTO relay_lease AS l (id, holder, epoch, expires_at) VALUES (1, \(holder), 1, now() + make_interval(secs => \(ttlSeconds)))
            ON CONFLICT (id) DO UPDATE SET
                epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.epoch ELSE l.epoch + 1 END,
                holder = excluded.holder,
                expires_at = excluded.expires_at
            WHERE l.holder = excluded.holder OR l.expires_at <= now()
            RETURNING epoch
            """, logger: logger).decode(Int64.self) {
            return RelayLease(holder: holder, epoch: epoch)
        }
        return nil
    }

    public func releaseLease(_ lease: RelayLease) async throws {
        try await client.query("""
            UPDATE relay_lease SET expires_at = now() WHERE id = 1 AND holder = \(lease.holder) AND epoch = \(lease.epoch)
            """, logger: logger)
    }

    public func pendingOutbox(limit: Int, excluding: [ServiceName]) async throws -> [StoredVersion] {
        let skipped = excluding.map(\.rawValue)
        let rows = try await client.query("""
            SELECT \(unescaped: Self.qualifiedColumns)
            FROM (SELECT service, max(version) AS version, min(queued_at) AS oldest FROM outbox
                  WHERE service <> ALL(\(skipped)::text[]) GROUP BY service ORDER BY min(queued_at) LIMIT \(limit)) p
            JOIN config_versions v ON v.service = p.service AND v.version = p.version
            ORDER BY p.oldest
            """, logger: logger).collect()
        return try rows.map { try Self.decodeVersion($0, atRest) }
    }

    public func markPublished(_ marks: [ServiceName: Int], lease: RelayLease) async throws -> Bool {
        let services = marks.keys.map(\.rawValue)
        let versions = marks.keys.map { marks[$0]! }
        let statement = Prepared.MarkPublished(holder: lease.holder, epoch: lease.epoch, services: services, versions: versions)
        return try await client.withConnection { connection in
            for try await current in try await connection.execute(statement, logger: logger) { return current }
            return false
        }
    }

    public func requeue(_ versions: [StoredVersion]) async throws {
        guard !versions.isEmpty else { return }
        // The latest version at this moment, whatever the caller saw: never an older one.
        let services = versions.map(\.service.rawValue)
        try await client.query("""
            INSERT INTO outbox (service, version)
            SELECT name, released_version FROM services WHERE name = ANY(\(services)::text[]) AND released_version > 0
            ON CONFLICT (service, version) DO NOTHING
            """, logger: logger)
    }

    public func outboxStatus() async throws -> OutboxStatus {
        for try await (count, age) in try await client.query("""
            SELECT count(*)::integer, EXTRACT(EPOCH FROM now() - min(queued_at))::float8 FROM outbox
            """, logger: logger).decode((Int, Double?).self) {
            return OutboxStatus(backlog: count, oldestAge: age)
        }
        return OutboxStatus()
    }
}

extension PostgresVersionStore: InstanceStore {
    public func expireInstances(olderThan ttl: Duration) async throws -> Int {
        var removed = 0
        for try await n in try await client.query("""
            WITH gone AS (DELETE FROM instances WHERE last_seen < now() - make_interval(secs => \(ttl.seconds)) RETURNING 1)
            SELECT count(*)::integer FROM gone
            """, logger: logger).decode(Int.self) {
            removed = n
        }
        return removed
    }
}

extension PostgresVersionStore: AuditStore, ArchiveStore {}
