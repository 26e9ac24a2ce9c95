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

    public func queuedServices() async throws -> Set<ServiceName> {
        var queued = Set<ServiceName>()
        for try await name in try await client.query("SELECT DISTINCT service FROM outbox", logger: logger).decode(String.self) {
            if let service = try? ServiceName(validating: name) { queued.insert(service) }
        }
        return queued
    }

    public func repairDivergence(_ service: ServiceName, retained: (version: Int, checksum: String)) async throws -> StoredVersion? {
        let name = service.rawValue
        return try await Self.unwrapping { try await client.withTransaction(logger: logger) { connection -> StoredVersion? in
            var row: (latest: Int, released: Int)?
            for try await found in try await connection.query(
                "SELECT latest_version, released_version FROM services WHERE name = \(name) FOR UPDATE", logger: logger).decode((Int, Int).self) {
                row = found
            }
            // Moved above the retained version on its own meanwhile, or nothing to commit again.
            guard let row, row.released > 0, row.latest <= retained.version else { return nil }
            if row.latest == retained.version {
                guard row.released == row.latest, try await !holds(name, retained, on: connection) else { return nil }
            }
            let repaired = max(row.latest, retained.version) + 1
            let divergence = Divergence(retainedVersion: retained.version, retainedChecksum: retained.checksum,
                                        databaseVersion: row.released, repairedVersion: repaired, detectedAt: Date())
            let marker = JSONValue.object([
                "retained_version": .integer(retained.version), "retained_checksum": .string(retained.checksum),
                "database_version": .integer(row.released), "repaired_version": .integer(repaired),
                "detected_at_ms": .integer(Int((divergence.detectedAt.timeIntervalSince1970 * 1000).rounded())),
            ]).serialized(.canonical)
            let rows = try await connection.query("""
                WITH v AS (
                    INSERT INTO config_versions (service, version, config, checksum, source, author, reason, environment, layers, override_layer)
                    SELECT service, \(repaired), config, checksum, 'repair', 'confbus', \(divergence.reason), environment, layers, override_layer
                    FROM config_versions WHERE service = \(name) AND version = \(row.released)
                    RETURNING *
                ), s AS (
                    UPDATE services SET latest_version = v.version, released_version = v.version, latest_checksum = v.checksum,
                        diverged = \(marker)
                    FROM v WHERE services.name = v.service
                ), q AS (
                    INSERT INTO outbox (service, version) SELECT service, version FROM v
                )
                SELECT \(unescaped: Self.versionColumns), pg_notify('\(unescaped: Self.notificationChannel)', service || ':' || version) IS NULL FROM v
                """, logger: logger).collect()
            guard let first = rows.first else { return nil }
            try await Self.insertAudit(AuditRecord(actor: "confbus", requestID: "repair-\(name)-\(repaired)", action: "repair", outcome: "accepted",
                                                   services: [name], reason: divergence.reason), on: connection, logger: logger)
            return try Self.decodeVersion(first, atRest)
        } }
    }

    /// Whether the database's `retained.version` of the service has the retained checksum.
    private func holds(_ service: String, _ retained: (version: Int, checksum: String), on connection: PostgresConnection) async throws -> Bool {
        for try await checksum in try await connection.query(
            "SELECT checksum FROM config_versions WHERE service = \(service) AND version = \(retained.version)", logger: logger).decode(String.self) {
            return checksum == retained.checksum
        }
        return false
    }

    public func divergedServices() async throws -> [ServiceName: Divergence] {
        var diverged: [ServiceName: Divergence] = [:]
        for try await (name, text) in try await client.query(
            "SELECT name, diverged FROM services WHERE diverged IS NOT NULL", logger: logger).decode((String, String).self) {
            guard let service = try? ServiceName(validating: name), let value = try? JSONParser().parse(Array(text.utf8)),
                  let retained = value["retained_version"]?.integralValue, case .string(let checksum)? = value["retained_checksum"],
                  let database = value["database_version"]?.integralValue, let repaired = value["repaired_version"]?.integralValue,
                  let at = value["detected_at_ms"]?.integralValue else { continue }
            diverged[service] = Divergence(retainedVersion: retained, retainedChecksum: checksum, databaseVersion: database,
                                           repairedVersion: repaired, detectedAt: Date(timeIntervalSince1970: Double(at) / 1000))
        }
        return diverged
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
