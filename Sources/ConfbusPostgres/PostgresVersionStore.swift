import ConfbusCore
import ConfbusEngine
import Foundation
import Logging
import PostgresNIO

/// `VersionStore` over PostgreSQL. Version numbers are assigned under a row lock on the
/// service's row, a primary key on (service, version) backs "no gaps, no duplicates", and the
/// outbox row is written in the same transaction as the version. Every query uses binds.
public struct PostgresVersionStore: VersionStore {
    public static let notificationChannel = "confbus_versions"
    static let drainLockKey: Int64 = 0x636F_6E66_6275_7302

    let client: PostgresClient
    let logger: Logger
    let failpoints: Failpoints

    public init(client: PostgresClient, logger: Logger, failpoints: Failpoints = Failpoints()) {
        self.client = client
        self.logger = logger
        self.failpoints = failpoints
    }

    static let versionColumns = "service, version, config, checksum, source, author, reason, created_at, environment, batch_id::text"
    static let qualifiedColumns = "v.service, v.version, v.config, v.checksum, v.source, v.author, v.reason, v.created_at, v.environment, v.batch_id::text"

    static func decodeVersion(_ row: PostgresRow) throws -> StoredVersion {
        let (service, version, config, checksum, source, author, reason, createdAt, environment, batchID) =
            try row.decode((String, Int, String, String, String, String, String?, Date, String, String?).self)
        return StoredVersion(service: try ServiceName(validating: service), version: version,
                             config: try JSONParser().parse(config), checksum: checksum,
                             source: VersionSource(rawValue: source) ?? .files, author: author, reason: reason,
                             createdAt: createdAt, environment: environment, batchID: batchID)
    }

    public func commit(_ new: NewVersion) async throws -> CommitOutcome {
        try failpoints.hit("before_commit")
        let name = new.service.rawValue
        let checksum = new.checksum
        let outcome: CommitOutcome = try await client.withTransaction(logger: logger) { connection in
            try await connection.query("INSERT INTO services (name) VALUES (\(name)) ON CONFLICT (name) DO NOTHING", logger: logger)
            var latest = 0
            var latestChecksum: String?
            for try await (v, c) in try await connection.query(
                "SELECT latest_version, latest_checksum FROM services WHERE name = \(name) FOR UPDATE", logger: logger
            ).decode((Int, String?).self) {
                latest = v
                latestChecksum = c
            }
            if latestChecksum == checksum, latest > 0 {
                let rows = try await connection.query(
                    "SELECT \(unescaped: Self.versionColumns) FROM config_versions WHERE service = \(name) AND version = \(latest)",
                    logger: logger).collect()
                return .unchanged(try Self.decodeVersion(rows[0]))
            }
            let next = latest + 1
            let config = new.config.serialized(.canonical)
            let layers = new.layers.isNull ? nil : new.layers.serialized(.canonical)
            let rows = try await connection.query("""
                INSERT INTO config_versions (service, version, config, checksum, source, author, reason, environment, layers, override_layer)
                VALUES (\(name), \(next), \(config), \(checksum), \(new.source.rawValue), \(new.author), \(new.reason), \(new.environment), \(layers),
                        (SELECT override_layer FROM services WHERE name = \(name)))
                RETURNING \(unescaped: Self.versionColumns)
                """, logger: logger).collect()
            try await connection.query(
                "UPDATE services SET latest_version = \(next), latest_checksum = \(checksum) WHERE name = \(name)", logger: logger)
            try await connection.query("INSERT INTO outbox (service, version) VALUES (\(name), \(next))", logger: logger)
            let payload = "\(name):\(next)"
            try await connection.query("SELECT pg_notify(\(Self.notificationChannel), \(payload))", logger: logger)
            return .committed(try Self.decodeVersion(rows[0]))
        }
        if case .committed = outcome { try failpoints.hit("after_commit") }
        return outcome
    }

    public func latestVersions() async throws -> [StoredVersion] {
        try await versions("""
            SELECT \(unescaped: Self.qualifiedColumns) FROM config_versions v
            JOIN services s ON s.name = v.service AND s.latest_version = v.version
            ORDER BY v.service
            """)
    }

    public func latest(_ service: ServiceName) async throws -> StoredVersion? {
        try await versions("""
            SELECT \(unescaped: Self.qualifiedColumns) FROM config_versions v
            JOIN services s ON s.name = v.service AND s.latest_version = v.version
            WHERE s.name = \(service.rawValue)
            """).first
    }

    public func version(_ service: ServiceName, _ number: Int) async throws -> StoredVersion? {
        try await versions(
            "SELECT \(unescaped: Self.versionColumns) FROM config_versions WHERE service = \(service.rawValue) AND version = \(number)"
        ).first
    }

    public func history(_ service: ServiceName, limit: Int, before: Int?) async throws -> [StoredVersion] {
        let upper = before ?? Int(Int32.max)
        return try await versions("""
            SELECT \(unescaped: Self.versionColumns) FROM config_versions
            WHERE service = \(service.rawValue) AND version < \(upper)
            ORDER BY version DESC LIMIT \(limit)
            """)
    }

    private func versions(_ query: PostgresQuery) async throws -> [StoredVersion] {
        try await client.query(query, logger: logger).collect().map(Self.decodeVersion)
    }

    public func drainOutbox(limit: Int, publish: @Sendable (StoredVersion) async throws -> Void) async throws -> Int {
        let (count, failure): (Int, (any Error)?) = try await client.withTransaction(logger: logger) { connection in
            // One node drains at a time, so each service's versions go out in commit order.
            var locked = false
            for try await got in try await connection.query("SELECT pg_try_advisory_xact_lock(\(Self.drainLockKey))", logger: logger).decode(Bool.self) {
                locked = got
            }
            guard locked else { return (0, nil) }
            let rows = try await connection.query("""
                SELECT o.id, \(unescaped: Self.qualifiedColumns)
                FROM outbox o JOIN config_versions v ON v.service = o.service AND v.version = o.version
                ORDER BY o.id LIMIT \(limit)
                """, logger: logger).collect()
            var published = 0
            for row in rows {
                let (id, service, version, config, checksum, source, author, reason, createdAt, environment, batchID) =
                    try row.decode((Int64, String, Int, String, String, String, String, String?, Date, String, String?).self)
                let stored = StoredVersion(service: try ServiceName(validating: service), version: version,
                                           config: try JSONParser().parse(config), checksum: checksum,
                                           source: VersionSource(rawValue: source) ?? .files, author: author, reason: reason,
                                           createdAt: createdAt, environment: environment, batchID: batchID)
                do {
                    try failpoints.hit("before_publish")
                    try await publish(stored)
                    try failpoints.hit("after_publish_before_mark")
                } catch {
                    // Keep what went out marked; the rest stays queued.
                    return (published, error)
                }
                try await connection.query("DELETE FROM outbox WHERE id = \(id)", logger: logger)
                published += 1
            }
            return (published, nil)
        }
        if let failure { throw failure }
        return count
    }

    public func outboxDepth() async throws -> Int {
        var depth = 0
        for try await n in try await client.query("SELECT count(*)::integer FROM outbox", logger: logger).decode(Int.self) { depth = n }
        return depth
    }

    public func recordRegistration(_ service: ServiceName, instance: String) async throws {
        try await client.query("""
            INSERT INTO instances (service, instance) VALUES (\(service.rawValue), \(instance))
            ON CONFLICT (service, instance) DO UPDATE SET last_seen = clock_timestamp()
            """, logger: logger)
    }

    public func recordAck(_ service: ServiceName, instance: String, version: Int, status: String, detail: String?) async throws {
        try await client.query("""
            INSERT INTO instances (service, instance, applied_version, ack_status, detail)
            VALUES (\(service.rawValue), \(instance), \(status == "applied" ? version : nil), \(status), \(detail))
            ON CONFLICT (service, instance) DO UPDATE SET last_seen = clock_timestamp(), ack_status = excluded.ack_status,
                detail = excluded.detail,
                applied_version = COALESCE(excluded.applied_version, instances.applied_version)
            """, logger: logger)
    }

    public func recordHealth(_ service: ServiceName, instance: String, status: String) async throws {
        try await client.query("""
            INSERT INTO instances (service, instance, health, health_at) VALUES (\(service.rawValue), \(instance), \(status), clock_timestamp())
            ON CONFLICT (service, instance) DO UPDATE SET last_seen = clock_timestamp(), health = excluded.health, health_at = excluded.health_at
            """, logger: logger)
    }

    public func instances(_ service: ServiceName) async throws -> [InstanceRecord] {
        var records: [InstanceRecord] = []
        let rows = try await client.query("""
            SELECT instance, first_seen, last_seen, health, health_at, applied_version, ack_status, detail
            FROM instances WHERE service = \(service.rawValue) ORDER BY instance
            """, logger: logger)
        for try await (instance, first, last, health, healthAt, applied, ack, detail) in rows.decode(
            (String, Date, Date, String?, Date?, Int?, String?, String?).self)
        {
            records.append(InstanceRecord(instance: instance, firstSeen: first, lastSeen: last, health: health, healthAt: healthAt,
                                          appliedVersion: applied, ackStatus: ack, detail: detail))
        }
        return records
    }

    public func instanceCounts() async throws -> [ServiceName: (total: Int, lagging: Int)] {
        var counts: [ServiceName: (total: Int, lagging: Int)] = [:]
        let rows = try await client.query("""
            SELECT i.service, count(*)::integer,
                   count(*) FILTER (WHERE i.applied_version IS NULL OR i.applied_version < s.latest_version)::integer
            FROM instances i JOIN services s ON s.name = i.service GROUP BY i.service
            """, logger: logger)
        for try await (service, total, lagging) in rows.decode((String, Int, Int).self) {
            if let name = try? ServiceName(validating: service) { counts[name] = (total, lagging) }
        }
        return counts
    }
}
