import ConfbusEngine
import Foundation
import PostgresNIO

/// The statements of the write path and the relay, prepared once per connection: each commit
/// then skips parsing and planning, which cost more than executing them.
enum Prepared {
    /// Locks existing service rows in name order and reads their bases.
    struct LockServices: PostgresPreparedStatement {
        static let sql = """
            SELECT name, latest_version, latest_checksum, override_layer, released_version FROM services
            WHERE name = ANY($1::text[]) ORDER BY name FOR UPDATE
            """
        typealias Row = (String, Int, String?, String?, Int)
        var names: [String]

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings()
            bindings.append(names)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// The services' rows, the new versions, their outbox rows and notifications, and the audit row:
    /// one statement (the outbox's foreign key is checked at its end, when the versions exist).
    /// `guarded`: the statement is its own transaction, with no row lock taken before it; a service's
    /// row changes only if it is still at the version before the new one with the override layer
    /// `$13` (what the plan was made from), else nothing at all is written and no row comes back.
    static func writeSQL(guarded: Bool) -> String {
        """
        WITH x AS (
            SELECT r.*, b.config, NULLIF(b.layers, '') AS layers
            FROM jsonb_to_recordset($1::text::jsonb) AS r(i integer, service text, version integer, checksum text,
                source text, author text, reason text, environment text, batch_id uuid, keep_layer boolean, layer text, release boolean)
            JOIN unnest($11::text[], $12::text[]) WITH ORDINALITY AS b(config, layers, n) ON b.n = r.i
        ), s AS (
            UPDATE services s SET latest_version = x.version, latest_checksum = x.checksum,
                released_version = CASE WHEN x.release THEN x.version ELSE s.released_version END,
                override_layer = CASE WHEN x.keep_layer THEN s.override_layer ELSE x.layer END,
                diverged = CASE WHEN x.source = 'files' THEN s.diverged ELSE NULL END
            FROM x WHERE s.name = x.service\(guarded ? " AND s.latest_version = x.version - 1 AND s.released_version = s.latest_version AND s.override_layer IS NOT DISTINCT FROM $13" : "")
            RETURNING s.name, s.override_layer
        ), v AS (
            INSERT INTO config_versions (service, version, config, checksum, source, author, reason, environment, layers, override_layer, batch_id)
            SELECT x.service, x.version, x.config, x.checksum, x.source, x.author, x.reason, x.environment, x.layers, s.override_layer, x.batch_id
            FROM x JOIN s ON s.name = x.service
            RETURNING service, version, created_at, override_layer
        ), queued AS (
            INSERT INTO outbox (service, version) SELECT v.service, v.version FROM v JOIN x ON x.service = v.service WHERE x.release
        ), audited AS (
            INSERT INTO audit (actor, request_id, action, outcome, services, changes, reason, detail)
            SELECT $2, $3, $4, $5, $6::text[], $7, $8, $9 WHERE $10::boolean AND EXISTS (SELECT 1 FROM v)
        )
        SELECT service, version, created_at, override_layer,
            pg_notify('\(PostgresVersionStore.notificationChannel)', service || ':' || version) IS NULL FROM v
        """
    }

    struct WriteVersions: PostgresPreparedStatement {
        static let sql = writeSQL(guarded: false)
        typealias Row = (String, Int, Date, String?, Bool)
        /// The small columns, with `i` the 1-based position of the row's config and layers.
        var records: String
        /// The configs and their layers ("" for none) as text arrays: inside the JSON records each
        /// would be escaped as a string and parsed again by the server.
        var configs: [String]
        var layers: [String]
        var audit: AuditRecord?

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings()
            bindings.append(records)
            bindings.append(audit?.actor ?? "")
            bindings.append(audit?.requestID ?? "")
            bindings.append(audit?.action ?? "")
            bindings.append(audit?.outcome ?? "accepted")
            bindings.append(audit?.services ?? [])
            bindings.append(audit?.changes.serialized(.canonical) ?? "[]")
            bindings.append(audit?.reason)
            bindings.append(audit?.detail)
            bindings.append(audit != nil)
            bindings.append(configs)
            bindings.append(layers)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// `WriteVersions` for one service whose base was not locked: a compare-and-set on the version
    /// and the stored override layer the plan started from.
    struct WriteVersionIfUnchanged: PostgresPreparedStatement {
        static let sql = writeSQL(guarded: true)
        typealias Row = WriteVersions.Row
        var write: WriteVersions
        /// The `override_layer` text the service's row held when the plan's base was read.
        var expectedLayer: String?

        func makeBindings() throws -> PostgresBindings {
            var bindings = try write.makeBindings()
            bindings.append(expectedLayer)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }

    /// The guarded mark of RELIABILITY P21(c): nothing changes unless the lease is still this one.
    struct MarkPublished: PostgresPreparedStatement {
        static let sql = """
            WITH lease AS (SELECT 1 FROM relay_lease WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires_at > now()),
                 m AS (SELECT * FROM unnest($3::text[], $4::integer[]) AS m(service, version)),
                 done AS (DELETE FROM outbox o USING m WHERE o.service = m.service AND o.version <= m.version
                          AND EXISTS (SELECT 1 FROM lease) RETURNING 1),
                 marked AS (UPDATE services s SET published_version = m.version, publisher_epoch = $2
                            FROM m WHERE s.name = m.service AND s.published_version < m.version AND EXISTS (SELECT 1 FROM lease) RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM lease)
            """
        typealias Row = Bool
        var holder: String
        var epoch: Int64
        var services: [String]
        var versions: [Int]

        func makeBindings() throws -> PostgresBindings {
            var bindings = PostgresBindings()
            bindings.append(holder)
            bindings.append(epoch)
            bindings.append(services)
            bindings.append(versions)
            return bindings
        }

        func decodeRow(_ row: PostgresRow) throws -> Row { try row.decode(Row.self) }
    }
}
