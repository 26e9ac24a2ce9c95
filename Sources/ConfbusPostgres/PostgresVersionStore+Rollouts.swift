import ConfbusCore
import ConfbusEngine
import Foundation
import Logging
import PostgresNIO

/// Rollouts in PostgreSQL: the machine's fields as columns, its phase as a name, a time and (rolled
/// back) the reason. A unique index over the running ones keeps one per service, whichever node asks.
extension PostgresVersionStore: RolloutStore {
    static let rolloutColumns = """
        id, service, steps, bake_ms, ack_timeout_ms, max_rejected, stable_version, candidate_version, step, cohort,
        phase, phase_since, outcome, actor, reason, started_at, updated_at, revision, members
        """

    static func phaseColumns(_ phase: RolloutMachine.Phase) -> (name: String, since: Date, outcome: String?) {
        switch phase {
        case .awaitingAcks(let since): ("awaiting_acks", since, nil)
        case .baking(let since): ("baking", since, nil)
        case .completed(let at): ("completed", at, nil)
        case .rolledBack(let at, let reason): ("rolled_back", at, reason)
        }
    }

    static func milliseconds(_ duration: Duration) -> Int64 { Int64((duration.seconds * 1000).rounded()) }

    public func createRollout(_ record: RolloutRecord) async throws {
        try await client.withConnection { connection in try await Self.insertRollout(record, on: connection, logger: logger) }
    }

    static func insertRollout(_ record: RolloutRecord, on connection: PostgresConnection, logger: Logger) async throws {
        let m = record.machine
        let phase = Self.phaseColumns(m.phase)
        do {
            try await connection.query("""
                INSERT INTO rollouts (id, service, state, steps, bake_ms, ack_timeout_ms, max_rejected, stable_version, candidate_version,
                                      step, cohort, phase, phase_since, outcome, actor, reason, started_at, updated_at, revision)
                VALUES (\(m.id), \(m.service.rawValue), \(m.phase.state), \(m.policy.steps), \(Self.milliseconds(m.policy.bake)),
                        \(Self.milliseconds(m.policy.ackTimeout)), \(m.policy.maxRejected), \(m.stableVersion), \(m.candidateVersion),
                        \(m.step), \(m.cohort), \(phase.name), \(phase.since), \(phase.outcome), \(record.actor), \(record.reason),
                        \(record.startedAt), \(record.updatedAt), \(record.revision))
                """, logger: logger)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            // unique_violation: the index of running rollouts (or an id used twice).
            throw ConfbusError(code: .rolloutInProgress, service: m.service.rawValue, message: "\(m.service) has a rollout running")
        }
    }

    /// The guarded save: nothing changes unless the row is still at the revision the record was read at.
    static func updateRollout(_ record: RolloutRecord, now: Date, audit: AuditRecord?, on connection: PostgresConnection, logger: Logger) async throws {
        let machine = record.machine
        let phase = Self.phaseColumns(machine.phase)
        let rows = try await connection.query("""
            UPDATE rollouts SET state = \(machine.phase.state), step = \(machine.step), cohort = \(machine.cohort), phase = \(phase.name),
                phase_since = \(phase.since), outcome = \(phase.outcome), updated_at = \(now), revision = revision + 1,
                members = COALESCE(\(Self.membersText(record.members)), members)
            WHERE id = \(machine.id) AND revision = \(record.revision) AND state = 'running'
            RETURNING 1
            """, logger: logger).collect()
        guard !rows.isEmpty else { throw RolloutMoved(id: machine.id) }
        if let audit { try await insertAudit(audit, on: connection, logger: logger) }
    }

    public func saveRollout(_ record: RolloutRecord, now: Date, audit: AuditRecord?) async throws {
        try await Self.unwrapping { try await client.withTransaction(logger: logger) { connection in
            try await Self.updateRollout(record, now: now, audit: audit, on: connection, logger: logger)
        } }
    }

    public func releaseRollout(_ record: RolloutRecord, now: Date, audit: AuditRecord?) async throws {
        let machine = record.machine
        let service = machine.service.rawValue
        try await Self.unwrapping { try await client.withTransaction(logger: logger) { connection in
            try await Self.updateRollout(record, now: now, audit: audit, on: connection, logger: logger)
            try await connection.query("""
                UPDATE services SET released_version = \(machine.candidateVersion)
                WHERE name = \(service) AND released_version < \(machine.candidateVersion)
                """, logger: logger)
            try await connection.query("""
                INSERT INTO outbox (service, version) VALUES (\(service), \(machine.candidateVersion)) ON CONFLICT (service, version) DO NOTHING
                """, logger: logger)
            let payload = "\(service):\(machine.candidateVersion)"
            try await connection.query("SELECT pg_notify(\(Self.notificationChannel), \(payload))", logger: logger)
        } }
    }

    /// A commit's part in a rollout, in its transaction: the rollout made from the candidate just
    /// committed, or the rollout its rollback ends.
    static func storeRollout(_ rollout: RolloutCommit?, outcomes: [CommitOutcome], on connection: PostgresConnection, logger: Logger) async throws {
        switch rollout {
        case nil:
            return
        case .start(let make):
            guard let candidate = outcomes.lazy.compactMap({ outcome -> StoredVersion? in
                if case .committed(let v) = outcome, v.source == .rollout { return v }
                return nil
            }).first else { return }
            try await insertRollout(make(candidate), on: connection, logger: logger)
        case .end(let record, let audit):
            try await updateRollout(record, now: record.updatedAt, audit: audit, on: connection, logger: logger)
        }
    }

    public func rollout(id: String) async throws -> RolloutRecord? {
        try await rollouts("SELECT \(unescaped: Self.rolloutColumns) FROM rollouts WHERE id = \(id)").first
    }

    public func rollouts(of service: ServiceName, limit: Int) async throws -> [RolloutRecord] {
        try await rollouts("""
            SELECT \(unescaped: Self.rolloutColumns) FROM rollouts WHERE service = \(service.rawValue)
            ORDER BY started_at DESC, id DESC LIMIT \(limit)
            """)
    }

    public func runningRollouts() async throws -> [RolloutRecord] {
        try await rollouts("SELECT \(unescaped: Self.rolloutColumns) FROM rollouts WHERE state = 'running' ORDER BY service")
    }

    public func rolloutsUpdated(since: Date) async throws -> [RolloutRecord] {
        try await rollouts("SELECT \(unescaped: Self.rolloutColumns) FROM rollouts WHERE updated_at >= \(since) ORDER BY updated_at")
    }

    static func membersText(_ members: [RolloutMember]?) -> String? {
        members.map { list in
            JSONValue.array(list.map { m in
                var o: [String: JSONValue] = ["instance": .string(m.instance), "answer": .string(m.answer.rawValue)]
                if let detail = m.detail { o["detail"] = .string(detail) }
                return .object(o)
            }).serialized(.canonical)
        }
    }

    static func members(_ text: String) -> [RolloutMember]? {
        guard case .array(let items)? = try? JSONParser().parse(text) else { return nil }
        return items.compactMap { item in
            guard let instance = item["instance"]?.stringValue, let answer = item["answer"]?.stringValue.flatMap(RolloutMachine.Answer.init) else { return nil }
            return RolloutMember(instance: instance, answer: answer, detail: item["detail"]?.stringValue)
        }
    }

    private func rollouts(_ query: PostgresQuery) async throws -> [RolloutRecord] {
        var records: [RolloutRecord] = []
        for row in try await client.query(query, logger: logger).collect() {
            let columns = row.makeRandomAccess()
            let id = try columns[0].decode(String.self)
            let service = try ServiceName(validating: try columns[1].decode(String.self))
            let policy = RolloutMachine.Policy(steps: try columns[2].decode([Int].self), bake: .milliseconds(try columns[3].decode(Int64.self)),
                                               ackTimeout: .milliseconds(try columns[4].decode(Int64.self)),
                                               maxRejected: try columns[5].decode(Int.self))
            let since = try columns[11].decode(Date.self)
            let phase: RolloutMachine.Phase = switch try columns[10].decode(String.self) {
            case "awaiting_acks": .awaitingAcks(since: since)
            case "baking": .baking(since: since)
            case "completed": .completed(at: since)
            default: .rolledBack(at: since, reason: try columns[12].decode(String?.self) ?? "")
            }
            let machine = RolloutMachine(id: id, service: service, stableVersion: try columns[6].decode(Int.self),
                                         candidateVersion: try columns[7].decode(Int.self), policy: policy,
                                         step: try columns[8].decode(Int.self), cohort: try columns[9].decode([String].self), phase: phase)
            records.append(RolloutRecord(machine: machine, actor: try columns[13].decode(String.self), reason: try columns[14].decode(String?.self),
                                         startedAt: try columns[15].decode(Date.self), updatedAt: try columns[16].decode(Date.self),
                                         revision: try columns[17].decode(Int.self),
                                         members: try columns[18].decode(String?.self).flatMap(Self.members)))
        }
        return records
    }
}
