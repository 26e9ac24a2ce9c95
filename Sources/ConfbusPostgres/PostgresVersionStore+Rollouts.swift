import ConfbusCore
import ConfbusEngine
import Foundation
import PostgresNIO

/// Rollouts in PostgreSQL: the machine's fields as columns, its phase as a name, a time and (rolled
/// back) the reason. A unique index over the running ones keeps one per service, whichever node asks.
extension PostgresVersionStore: RolloutStore {
    static let rolloutColumns = """
        id, service, steps, bake_ms, ack_timeout_ms, max_rejected, stable_version, candidate_version, step, cohort,
        phase, phase_since, outcome, actor, reason, started_at, updated_at
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
        let m = record.machine
        let phase = Self.phaseColumns(m.phase)
        do {
            try await client.query("""
                INSERT INTO rollouts (id, service, state, steps, bake_ms, ack_timeout_ms, max_rejected, stable_version, candidate_version,
                                      step, cohort, phase, phase_since, outcome, actor, reason, started_at, updated_at)
                VALUES (\(m.id), \(m.service.rawValue), \(m.phase.state), \(m.policy.steps), \(Self.milliseconds(m.policy.bake)),
                        \(Self.milliseconds(m.policy.ackTimeout)), \(m.policy.maxRejected), \(m.stableVersion), \(m.candidateVersion),
                        \(m.step), \(m.cohort), \(phase.name), \(phase.since), \(phase.outcome), \(record.actor), \(record.reason),
                        \(record.startedAt), \(record.updatedAt))
                """, logger: logger)
        } catch let error as PSQLError where error.serverInfo?[.sqlState] == "23505" {
            // unique_violation: the index of running rollouts (or an id used twice).
            throw ConfbusError(code: .rolloutInProgress, service: m.service.rawValue, message: "\(m.service) has a rollout running")
        }
    }

    public func saveRollout(_ machine: RolloutMachine, now: Date) async throws {
        let phase = Self.phaseColumns(machine.phase)
        try await client.query("""
            UPDATE rollouts SET state = \(machine.phase.state), step = \(machine.step), cohort = \(machine.cohort), phase = \(phase.name),
                phase_since = \(phase.since), outcome = \(phase.outcome), updated_at = \(now)
            WHERE id = \(machine.id)
            """, logger: logger)
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
                                         startedAt: try columns[15].decode(Date.self), updatedAt: try columns[16].decode(Date.self)))
        }
        return records
    }
}
