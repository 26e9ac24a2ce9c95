import ConfbusCore
import ConfbusEngine
import Foundation
import Logging
import PostgresNIO
import Synchronization

/// `VersionStore` over PostgreSQL. Version numbers are assigned under a row lock on the
/// service's row, a primary key on (service, version) backs "no gaps, no duplicates", and the
/// outbox row is written in the same transaction as the version. Every query uses binds.
public struct PostgresVersionStore: VersionStore {
    public static let notificationChannel = "confbus_versions"

    let client: DatabaseCluster
    let logger: Logger
    let failpoints: Failpoints
    let atRest: AtRest
    /// Each service's row as this node last saw it: an edit of one service is planned on it and
    /// written in one guarded statement, with no transaction and no lock taken first.
    let seen = SeenBases()

    /// With a `sealer`, every secret value is stored sealed under its key (CONTRACT.md §10).
    public init(database: DatabaseCluster, logger: Logger, failpoints: Failpoints = Failpoints(), sealer: SecretSealer? = nil) {
        self.client = database
        self.logger = logger
        self.failpoints = failpoints
        self.atRest = AtRest(sealer: sealer)
    }

    /// Over one server that is the primary by definition.
    public init(client: PostgresClient, logger: Logger, failpoints: Failpoints = Failpoints(), sealer: SecretSealer? = nil) {
        self.init(database: DatabaseCluster(client: client, logger: logger), logger: logger, failpoints: failpoints, sealer: sealer)
    }

    static let versionColumns = "service, version, config, checksum, source, author, reason, created_at, environment, batch_id::text"
    /// How many columns `decodeVersion` reads; queries put any extra column after them.
    static let columnCount = 10
    static let qualifiedColumns = "v.service, v.version, v.config, v.checksum, v.source, v.author, v.reason, v.created_at, v.environment, v.batch_id::text"

    static func decodeVersion(_ row: PostgresRow, _ atRest: AtRest) throws -> StoredVersion {
        let (service, version, config, checksum, source, author, reason, createdAt, environment, batchID) =
            try row.decode((String, Int, String, String, String, String, String?, Date, String, String?).self)
        return StoredVersion(service: try ServiceName(validating: service), version: version,
                             config: try atRest.decode(config, service: service), checksum: checksum,
                             source: VersionSource(rawValue: source) ?? .files, author: author, reason: reason,
                             createdAt: createdAt, environment: environment, batchID: batchID)
    }

    public func commit(_ request: CommitRequest) async throws -> [CommitOutcome] {
        try failpoints.hit("before_commit")
        let outcomes: [CommitOutcome]
        if let optimistic = try await optimisticCommit(request) {
            outcomes = optimistic
        } else {
            outcomes = try await lockedCommit(request)
        }
        if outcomes.contains(where: \.isCommitted) { try failpoints.hit("after_commit") }
        return outcomes
    }

    /// The usual edit — one service, a new version, its row unchanged since this node last saw it —
    /// in one round trip: planned on the row as last seen and written by a statement that changes
    /// nothing unless the row still holds that version and override layer. nil when the edit is
    /// not of that kind or the row has moved: the locked path then plans it again on what is stored.
    /// A plan that throws on the remembered base is not an answer either (If-Match, for one, must
    /// be judged on what is stored).
    func optimisticCommit(_ request: CommitRequest) async throws -> [CommitOutcome]? {
        guard request.services.count == 1, request.idempotency == nil, request.rollout == nil,
              let (base, storedLayer) = seen.base(request.services[0]), !base.inRollout,
              let changes = try? request.plan([base]), changes.count == 1, changes[0].version.service == base.service,
              !base.holds(changes[0].version)
        else { return nil }
        let atRest = self.atRest
        let audit = Self.auditRecord(request, changes: changes, bases: [base])
        let outcomes: [CommitOutcome]
        do {
            outcomes = try await client.withConnection { connection in
                try await Self.write(changes, bases: [base], audit: audit, atRest: atRest, on: connection, logger: logger,
                                     unlessMoved: SeenRow(layer: storedLayer), seen: seen)
            }
        } catch is RowMoved {
            return nil
        }
        return outcomes
    }

    func lockedCommit(_ request: CommitRequest) async throws -> [CommitOutcome] {
        let atRest = self.atRest
        let seen = self.seen
        return try await Self.unwrapping { try await client.withTransaction(logger: logger) { connection in
            if let idempotency = request.idempotency {
                // A second request with the same key waits here for the first to end, then finds its answer.
                try await connection.query("SELECT pg_advisory_xact_lock(hashtextextended(\(idempotency.key), 0))", logger: logger)
                for try await (hash, answer) in try await connection.query(
                    "SELECT request_hash, answer FROM idempotency_keys WHERE key = \(idempotency.key)", logger: logger).decode((String, String).self) {
                    throw IdempotentReplay(requestHash: hash, answer: try atRest.decodeAnswer(answer, key: idempotency.key))
                }
            }
            let bases = try await Self.lockBases(request.services, atRest: atRest, on: connection, logger: logger)
            let changes = try request.plan(bases)
            try request.admit(changes, bases: bases)
            let audit = Self.auditRecord(request, changes: changes, bases: bases)
            let outcomes = try await Self.write(changes, bases: bases, audit: audit, atRest: atRest, on: connection, logger: logger, seen: seen)
            try await Self.storeRollout(request.rollout, outcomes: outcomes, on: connection, logger: logger)
            if let idempotency = request.idempotency {
                let answer = try atRest.encodeAnswer(idempotency.answer(outcomes), key: idempotency.key)
                try await connection.query("""
                    INSERT INTO idempotency_keys (key, request_hash, answer) VALUES (\(idempotency.key), \(idempotency.requestHash), \(answer))
                    """, logger: logger)
            }
            return outcomes
        } }
    }

    /// What the commit does is known before it runs (the bases are read): the audit row goes into
    /// the same statement as the versions. Versions made from the files are audited only when they
    /// make a version (nil otherwise).
    static func auditRecord(_ request: CommitRequest, changes: [PlannedChange], bases: [CommitBase]) -> AuditRecord? {
        let planned = Self.planned(changes, bases: bases)
        var record = request.audit
        // The services the commit changes or confirms (a plan may leave some out).
        if !planned.isEmpty { record.services = planned.map(\.service) }
        record.changes = .array(planned.map { p in
            ["service": .string(p.service), "old_version": .integer(p.old), "new_version": .integer(p.new), "checksum": .string(p.checksum)]
        })
        return record.action != "files" || planned.contains { $0.new > $0.old } ? record : nil
    }

    /// A refusal raised inside a transaction (a version conflict, a validation failure, an
    /// idempotent replay) reaches the caller as itself, not wrapped in the driver's error.
    static func unwrapping<T>(_ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as PostgresTransactionError {
            if let refusal = error.closureError as? ConfbusError { throw refusal }
            if let replay = error.closureError as? IdempotentReplay { throw replay }
            if let moved = error.closureError as? RolloutMoved { throw moved }
            if let refusal = error.closureError as? StartupRefusal { throw refusal }
            throw error
        }
    }

    /// Locks the services' rows in name order (so two commits over the same services cannot
    /// deadlock), creating the missing ones first; returns their bases in the order asked. Rows
    /// that exist, the usual case, take one statement.
    static func lockBases(_ services: [ServiceName], atRest: AtRest, on connection: PostgresConnection, logger: Logger) async throws -> [CommitBase] {
        let names = services.map(\.rawValue).sorted()
        var found = try await selectForUpdate(names, atRest: atRest, on: connection, logger: logger)
        let missing = names.filter { found[$0] == nil }
        if !missing.isEmpty {
            try await connection.query("""
                INSERT INTO services (name) SELECT unnest(\(missing)::text[]) ORDER BY 1 ON CONFLICT (name) DO NOTHING
                """, logger: logger)
            found.merge(try await selectForUpdate(missing, atRest: atRest, on: connection, logger: logger)) { $1 }
        }
        return services.map { found[$0.rawValue] ?? CommitBase(service: $0, latestVersion: 0, latestChecksum: nil, overrideLayer: nil) }
    }

    private static func selectForUpdate(_ names: [String], atRest: AtRest, on connection: PostgresConnection,
                                        logger: Logger) async throws -> [String: CommitBase] {
        var found: [String: CommitBase] = [:]
        for try await (name, latest, checksum, layer, released) in try await connection.execute(Prepared.LockServices(names: names), logger: logger) {
            let service = try ServiceName(validating: name)
            found[name] = CommitBase(service: service, latestVersion: latest, latestChecksum: latest > 0 ? checksum : nil,
                                     overrideLayer: try layer.map { try atRest.decode($0, service: name) }, releasedVersion: released)
        }
        return found
    }

    /// Each change's service, the version it starts from and the one it leaves (equal when the
    /// config does not change), and its checksum.
    static func planned(_ changes: [PlannedChange], bases: [CommitBase]) -> [(service: String, old: Int, new: Int, checksum: String)] {
        let byService = Dictionary(bases.map { ($0.service, $0) }, uniquingKeysWith: { first, _ in first })
        return changes.compactMap { change in
            guard let base = byService[change.version.service] else { return nil }
            let same = base.holds(change.version)
            return (change.version.service.rawValue, base.latestVersion, same ? base.latestVersion : base.latestVersion + 1, change.version.checksum)
        }
    }

    /// Every change inside the caller's transaction, the rows already locked, in one statement
    /// however many services (the services' rows, the versions, their outbox rows and
    /// notifications, and `audit`), plus one for the layers of unchanged services. Changes are
    /// matched to their bases by service.
    /// `unlessMoved` set: the optimistic write of `optimisticCommit` (one new version, no
    /// transaction around it), which throws `RowMoved` when the row is no longer the base's.
    /// What is written is remembered in `seen`, after the statement (inside a transaction the
    /// caller's commit may still fail; a stale memory only costs the guarded write its round trip).
    static func write(_ changes: [PlannedChange], bases: [CommitBase], audit: AuditRecord?, atRest: AtRest, on connection: PostgresConnection,
                      logger: Logger, unlessMoved seenRow: SeenRow? = nil, seen: SeenBases) async throws -> [CommitOutcome] {
        let byService = Dictionary(bases.map { ($0.service, $0) }, uniquingKeysWith: { first, _ in first })
        var layerUpdates: [JSONValue] = []
        var unchanged: [(index: Int, name: String, version: Int)] = []
        var inserts: [JSONValue] = []
        var configs: [String] = []
        var layerTexts: [String] = []
        var inserted: [Int] = []
        for (index, change) in changes.enumerated() {
            let new = change.version
            guard let base = byService[new.service] else { continue }
            // The statement's layer: nil keeps the stored one, null clears it, else the sealed text.
            var layer: JSONValue?
            if change.overrideLayer != nil {
                layer = try change.layer(after: nil).map { .string(try atRest.encode($0, secrets: new.secrets, service: new.service)) } ?? .null
            }
            if base.holds(new) {
                if let layer { layerUpdates.append(["name": .string(new.service.rawValue), "layer": layer]) }
                unchanged.append((index, new.service.rawValue, base.latestVersion))
                continue
            }
            configs.append(try atRest.encode(new.config, secrets: new.secrets, service: new.service))
            layerTexts.append(new.layers.isNull ? "" : new.layers.serialized(.canonical))
            inserts.append([
                "i": .integer(configs.count), "service": .string(new.service.rawValue), "version": .integer(base.latestVersion + 1),
                "checksum": .string(new.checksum),
                "source": .string(new.source.rawValue), "author": .string(new.author), "reason": new.reason.map(JSONValue.string) ?? .null,
                "environment": .string(new.environment),
                "batch_id": new.batchID.map { .string($0.uuidString.lowercased()) } ?? .null,
                "keep_layer": .bool(layer == nil), "layer": layer ?? .null,
                // A rollout's candidate is held back: not released, nothing queued.
                "release": .bool(new.source != .rollout),
            ])
            inserted.append(index)
        }
        var outcomes = [CommitOutcome?](repeating: nil, count: changes.count)
        if !layerUpdates.isEmpty {
            let records = JSONValue.array(layerUpdates).serialized(.canonical)
            try await connection.query("""
                UPDATE services s SET override_layer = x.layer
                FROM jsonb_to_recordset(\(records)::jsonb) AS x(name text, layer text) WHERE s.name = x.name
                """, logger: logger)
        }
        if !unchanged.isEmpty {
            let names = unchanged.map(\.name)
            let numbers = unchanged.map(\.version)
            var stored: [String: StoredVersion] = [:]
            for row in try await connection.query("""
                SELECT \(unescaped: qualifiedColumns) FROM config_versions v
                JOIN unnest(\(names)::text[], \(numbers)::integer[]) AS u(service, version) ON v.service = u.service AND v.version = u.version
                """, logger: logger).collect() {
                let version = try decodeVersion(row, atRest)
                stored[version.service.rawValue] = version
            }
            for entry in unchanged { outcomes[entry.index] = stored[entry.name].map(CommitOutcome.unchanged) }
        }
        if !inserts.isEmpty {
            let records = JSONValue.array(inserts).serialized(.canonical)
            // The service row first (latest version, and the new layer when one is given), then the
            // version with the layer now in force.
            var stored: [String: (version: Int, createdAt: Date, layer: String?)] = [:]
            let write = Prepared.WriteVersions(records: records, configs: configs, layers: layerTexts, audit: audit)
            let rows = if let seenRow {
                try await connection.execute(Prepared.WriteVersionIfUnchanged(write: write, expectedLayer: seenRow.layer), logger: logger)
            } else {
                try await connection.execute(write, logger: logger)
            }
            for try await (service, number, createdAt, layer, _) in rows {
                // The config is the one just sent: no need to read it back and parse it again.
                stored[service] = (number, createdAt, layer)
            }
            if seenRow != nil && stored.isEmpty { throw RowMoved() }
            for index in inserted {
                let new = changes[index].version
                guard let row = stored[new.service.rawValue], let base = byService[new.service] else { continue }
                outcomes[index] = .committed(StoredVersion(service: new.service, version: row.version, config: new.config, checksum: new.checksum,
                                                           source: new.source, author: new.author, reason: new.reason, createdAt: row.createdAt,
                                                           environment: new.environment, batchID: new.batchID?.uuidString.lowercased()))
                seen.remember(CommitBase(service: new.service, latestVersion: row.version, latestChecksum: new.checksum,
                                         overrideLayer: changes[index].layer(after: base.overrideLayer),
                                         releasedVersion: new.source == .rollout ? base.releasedVersion : row.version), layer: row.layer)
            }
        }
        if inserts.isEmpty, let audit { try await insertAudit(audit, on: connection, logger: logger) }
        return try outcomes.map { outcome in
            guard let outcome else { throw PostgresCommitError(message: "a planned change had no row") }
            return outcome
        }
    }

    static func insertAudit(_ record: AuditRecord, on connection: PostgresConnection, logger: Logger) async throws {
        let changes = record.changes.serialized(.canonical)
        try await connection.query("""
            INSERT INTO audit (actor, request_id, action, outcome, services, changes, reason, detail)
            VALUES (\(record.actor), \(record.requestID), \(record.action), \(record.outcome), \(record.services), \(changes),
                    \(record.reason), \(record.detail))
            """, logger: logger)
    }

    public func idempotentAnswer(_ key: String) async throws -> (requestHash: String, answer: String)? {
        for try await (hash, answer) in try await client.query(
            "SELECT request_hash, answer FROM idempotency_keys WHERE key = \(key)", logger: logger).decode((String, String).self)
        {
            return (hash, try atRest.decodeAnswer(answer, key: key))
        }
        return nil
    }

    public func recordRefusal(_ audit: AuditRecord) async throws {
        try await client.withConnection { connection in try await Self.insertAudit(audit, on: connection, logger: logger) }
    }

    public func auditLog(service: ServiceName?, limit: Int) async throws -> [AuditRecord] {
        let query: PostgresQuery = if let service {
            "SELECT actor, request_id, action, outcome, services, changes, reason, detail, at FROM audit WHERE \(service.rawValue) = ANY(services) ORDER BY id DESC LIMIT \(limit)"
        } else {
            "SELECT actor, request_id, action, outcome, services, changes, reason, detail, at FROM audit ORDER BY id DESC LIMIT \(limit)"
        }
        var records: [AuditRecord] = []
        for try await (actor, request, action, outcome, services, changes, reason, detail, at) in try await client.query(query, logger: logger)
            .decode((String, String, String, String, [String], String, String?, String?, Date).self)
        {
            records.append(AuditRecord(actor: actor, requestID: request, action: action, outcome: outcome, services: services,
                                       changes: (try? JSONParser().parse(changes)) ?? .null, reason: reason, detail: detail, at: at))
        }
        return records
    }

    public func overrideLayers() async throws -> [ServiceName: JSONValue] {
        var layers: [ServiceName: JSONValue] = [:]
        for try await (name, text) in try await client.query(
            "SELECT name, override_layer FROM services WHERE override_layer IS NOT NULL", logger: logger).decode((String, String).self)
        {
            if let service = try? ServiceName(validating: name) { layers[service] = try atRest.decode(text, service: name) }
        }
        return layers
    }

    public func overrideLayer(of service: ServiceName, version: Int) async throws -> JSONValue? {
        var layer: JSONValue?
        for try await text in try await client.query(
            "SELECT override_layer FROM config_versions WHERE service = \(service.rawValue) AND version = \(version)", logger: logger
        ).decode(String?.self) {
            layer = try text.map { try atRest.decode($0, service: service.rawValue) }
        }
        return layer
    }

    public func layers(of service: ServiceName, version: Int) async throws -> JSONValue? {
        var layers: JSONValue?
        for try await text in try await client.query(
            "SELECT NULLIF(layers, '') FROM config_versions WHERE service = \(service.rawValue) AND version = \(version)", logger: logger
        ).decode(String?.self) {
            // Pointers and file names only, never values: stored as plain JSON, not sealed.
            layers = try text.map { try JSONParser().parse($0) }
        }
        return layers
    }

    public func latestVersions() async throws -> [StoredVersion] {
        try await versions("""
            SELECT \(unescaped: Self.qualifiedColumns) FROM config_versions v
            JOIN services s ON s.name = v.service AND s.released_version = v.version
            ORDER BY v.service
            """)
    }

    public func latest(_ service: ServiceName) async throws -> StoredVersion? {
        try await versions("""
            SELECT \(unescaped: Self.qualifiedColumns) FROM config_versions v
            JOIN services s ON s.name = v.service AND s.released_version = v.version
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
        try await client.query(query, logger: logger).collect().map { try Self.decodeVersion($0, atRest) }
    }

    public func recordRegistration(_ service: ServiceName, instance: String, version: Int?, features: [String]) async throws {
        try await client.query("""
            INSERT INTO instances (service, instance, applied_version, features) VALUES (\(service.rawValue), \(instance), \(version), \(features))
            ON CONFLICT (service, instance) DO UPDATE SET last_seen = clock_timestamp(), features = excluded.features,
                applied_version = GREATEST(instances.applied_version, excluded.applied_version)
            """, logger: logger)
    }

    public func recordAck(_ service: ServiceName, instance: String, version: Int, status: String, detail: String?) async throws {
        try await client.query("""
            INSERT INTO instances (service, instance, applied_version, ack_status, ack_version, detail)
            VALUES (\(service.rawValue), \(instance), \(status == "applied" ? version : nil), \(status), \(version), \(detail))
            ON CONFLICT (service, instance) DO UPDATE SET last_seen = clock_timestamp(), ack_status = excluded.ack_status,
                ack_version = excluded.ack_version, detail = excluded.detail,
                applied_version = COALESCE(excluded.applied_version, instances.applied_version)
            """, logger: logger)
    }

    public func recordHealth(_ service: ServiceName, instance: String, status: String, version: Int?) async throws {
        try await client.query("""
            INSERT INTO instances (service, instance, health, health_at, applied_version)
            VALUES (\(service.rawValue), \(instance), \(status), clock_timestamp(), \(version))
            ON CONFLICT (service, instance) DO UPDATE SET last_seen = clock_timestamp(), health = excluded.health, health_at = excluded.health_at,
                applied_version = GREATEST(instances.applied_version, excluded.applied_version)
            """, logger: logger)
    }

    public func instances(_ service: ServiceName) async throws -> [InstanceRecord] {
        var records: [InstanceRecord] = []
        // Lagging since the first version it lacks was made (or since it was first seen, if later);
        // GREATEST skips a NULL, so an instance that lags nothing is kept NULL by the CASE.
        let rows = try await client.query("""
            SELECT i.instance, i.first_seen, i.last_seen, i.health, i.health_at, i.applied_version, i.ack_status, i.detail, i.features, i.ack_version,
                   CASE WHEN v.created_at IS NOT NULL THEN GREATEST(v.created_at, i.first_seen) END
            FROM instances i JOIN services s ON s.name = i.service
            LEFT JOIN config_versions v ON v.service = i.service AND v.version = COALESCE(i.applied_version, 0) + 1
                                       AND COALESCE(i.applied_version, 0) < s.released_version
            WHERE i.service = \(service.rawValue) ORDER BY i.instance
            """, logger: logger)
        for try await (instance, first, last, health, healthAt, applied, ack, detail, features, ackVersion, lagging) in rows.decode(
            (String, Date, Date, String?, Date?, Int?, String?, String?, [String], Int?, Date?).self)
        {
            records.append(InstanceRecord(instance: instance, firstSeen: first, lastSeen: last, health: health, healthAt: healthAt,
                                          appliedVersion: applied, ackStatus: ack, ackVersion: ackVersion, detail: detail, features: features,
                                          laggingSince: lagging))
        }
        return records
    }

    public func instanceCounts() async throws -> [ServiceName: (total: Int, lagging: Int)] {
        var counts: [ServiceName: (total: Int, lagging: Int)] = [:]
        let rows = try await client.query("""
            SELECT i.service, count(*)::integer,
                   count(*) FILTER (WHERE i.applied_version IS NULL OR i.applied_version < s.released_version)::integer
            FROM instances i JOIN services s ON s.name = i.service GROUP BY i.service
            """, logger: logger)
        for try await (service, total, lagging) in rows.decode((String, Int, Int).self) {
            if let name = try? ServiceName(validating: service) { counts[name] = (total, lagging) }
        }
        return counts
    }

    public func exportAll(history: Bool) async throws -> [ServiceExport] {
        var layers: [String: JSONValue?] = [:]
        for try await (name, layer) in try await client.query("SELECT name, override_layer FROM services WHERE latest_version > 0 ORDER BY name",
                                                              logger: logger).decode((String, String?).self) {
            // updateValue, not subscript assignment: a nil layer must keep its key.
            layers.updateValue(try layer.map { try atRest.decode($0, service: name) }, forKey: name)
        }
        let query: PostgresQuery = history
            ? "SELECT \(unescaped: Self.qualifiedColumns), v.override_layer FROM config_versions v ORDER BY v.service, v.version"
            : """
              SELECT \(unescaped: Self.qualifiedColumns), v.override_layer FROM config_versions v
              JOIN services s ON s.name = v.service AND s.latest_version = v.version ORDER BY v.service
              """
        var byService: [String: [ServiceExport.Version]] = [:]
        for row in try await client.query(query, logger: logger).collect() {
            let version = try Self.decodeVersion(row, atRest)
            let columns = row.makeRandomAccess()
            let layer = try columns[Self.columnCount].decode(String?.self).map { try atRest.decode($0, service: version.service.rawValue) }
            byService[version.service.rawValue, default: []].append(.init(stored: version, overrideLayer: layer))
        }
        return try layers.keys.sorted().map { name in
            ServiceExport(service: try ServiceName(validating: name), overrideLayer: layers[name] ?? nil, versions: byService[name] ?? [])
        }
    }

    public func importAll(_ services: [ServiceExport], audit: AuditRecord) async throws {
        let atRest = self.atRest
        try await Self.unwrapping { try await client.withTransaction(logger: logger) { connection in
            for export in services {
                let name = export.service.rawValue
                var exists = false
                for try await _ in try await connection.query("SELECT 1 FROM services WHERE name = \(name) AND latest_version > 0",
                                                              logger: logger).decode(Int.self) { exists = true }
                if exists {
                    throw ConfbusError(code: .alreadyExists, service: name, message: "\(name) already has versions; import only into a database without it")
                }
                let latest = export.versions.last?.stored.version ?? 0
                let layer = try export.overrideLayer.map { try atRest.encode($0, secrets: export.secrets, service: export.service) }
                try await connection.query("""
                    INSERT INTO services (name, latest_version, released_version, latest_checksum, override_layer)
                    VALUES (\(name), \(latest), \(latest), \(export.versions.last?.stored.checksum), \(layer))
                    ON CONFLICT (name) DO UPDATE SET latest_version = excluded.latest_version, released_version = excluded.released_version,
                        latest_checksum = excluded.latest_checksum, override_layer = excluded.override_layer
                    """, logger: logger)
                for entry in export.versions {
                    let v = entry.stored
                    let versionLayer = try entry.overrideLayer.map { try atRest.encode($0, secrets: export.secrets, service: export.service) }
                    let config = try atRest.encode(v.config, secrets: export.secrets, service: export.service)
                    let batch = v.batchID.flatMap(UUID.init(uuidString:))
                    try await connection.query("""
                        INSERT INTO config_versions (service, version, config, checksum, source, author, reason, environment, override_layer, batch_id, created_at)
                        VALUES (\(name), \(v.version), \(config), \(v.checksum), \(v.source.rawValue), \(v.author),
                                \(v.reason), \(v.environment), \(versionLayer), \(batch), \(v.createdAt))
                        """, logger: logger)
                }
                if latest > 0 {
                    try await connection.query("INSERT INTO outbox (service, version) VALUES (\(name), \(latest))", logger: logger)
                    let payload = "\(name):\(latest)"
                    try await connection.query("SELECT pg_notify(\(Self.notificationChannel), \(payload))", logger: logger)
                }
            }
            try await Self.insertAudit(audit, on: connection, logger: logger)
        } }
    }
}

/// The optimistic write found the service's row changed since it was last seen.
struct RowMoved: Error {}

/// What the optimistic write expects of the service's row beside its version: the stored text of
/// the override layer (nil: none).
struct SeenRow {
    var layer: String?
}

/// Each service's row (latest version, checksum, override layer and that layer's stored text) as
/// this node last wrote or read it. Only a hint: every write that relies on it is guarded.
final class SeenBases: Sendable {
    private let bases = Mutex<[ServiceName: (base: CommitBase, layer: String?)]>([:])

    func base(_ service: ServiceName) -> (CommitBase, String?)? {
        bases.withLock { $0[service] }.map { ($0.base, $0.layer) }
    }

    func remember(_ base: CommitBase, layer: String?) {
        bases.withLock { held in
            // Never step back: a slower writer of an older version must not hide a newer one.
            if let known = held[base.service], known.base.latestVersion > base.latestVersion { return }
            held[base.service] = (base, layer)
        }
    }

}

struct PostgresCommitError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}
