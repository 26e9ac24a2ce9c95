import ConfbusCore
import Foundation
import Logging
import Metrics
import Synchronization

/// `POST /v1/config/{service}/rollouts`: the change (as a batch entry says it) and the policy.
public struct RolloutRequest: Sendable {
    public var change: BatchRequest.Change
    public var reason: String?
    public var policy: RolloutMachine.Policy

    /// Reads the body; a malformed one is 400, a policy that cannot run 422, each naming the field.
    public init(_ body: JSONValue) throws(ConfbusError) {
        guard case .object(let object) = body else { throw Self.bad("the body must be a JSON object") }
        let kinds = ["override", "patch", "rollback"].filter { object[$0] != nil }
        guard kinds.count == 1 else { throw Self.bad("the body needs exactly one of override, patch or rollback") }
        switch (kinds[0], object[kinds[0]]!) {
        case ("override", .object(let o)): change = .override(.object(o))
        case ("patch", .object(let o)): change = .patch(.object(o))
        case ("rollback", let n) where (1...Int(Int32.max)).contains(n.integralValue ?? 0): change = .rollback(n.integralValue!)
        default: throw Self.bad("\"\(kinds[0])\" has the wrong type")
        }
        switch object["reason"] {
        case nil, .null: reason = nil
        case .string(let r): reason = r
        default: throw Self.bad("\"reason\" must be a string")
        }
        var policy = RolloutMachine.Policy.standard
        if let steps = object["steps"] {
            guard case .array(let items) = steps, items.count <= 100 else { throw Self.bad("\"steps\" must be an array of percentages") }
            policy.steps = try items.map { item throws(ConfbusError) in
                guard let n = item.integralValue, abs(n) <= 1000 else { throw Self.bad("\"steps\" must be an array of percentages") }
                return n
            }
        }
        policy.bake = try Self.duration(object, "bake") ?? policy.bake
        policy.ackTimeout = try Self.duration(object, "ack_timeout") ?? policy.ackTimeout
        if let max = object["max_rejected"] {
            guard let n = max.integralValue, abs(n) <= 1_000_000 else { throw Self.bad("\"max_rejected\" must be an integer") }
            policy.maxRejected = n
        }
        let problems = policy.problems
        guard problems.isEmpty else {
            throw ConfbusError(code: .invalidValue, message: "the rollout's policy cannot run: \(problems.joined(separator: "; "))")
        }
        self.policy = policy
    }

    public init(change: BatchRequest.Change, reason: String?, policy: RolloutMachine.Policy) {
        self.change = change
        self.reason = reason
        self.policy = policy
    }

    /// `"30s"`, `"500ms"`, `"2m"` or a number of seconds.
    static func duration(_ object: [String: JSONValue], _ key: String) throws(ConfbusError) -> Duration? {
        switch object[key] {
        case nil, .null: return nil
        case .string(let text):
            guard let d = Duration(settingsText: text) else { throw bad("\"\(key)\" must be a duration such as \"30s\"") }
            return d
        case .some(let value):
            guard let n = value.doubleValue, n.isFinite, abs(n) < 1e12 else { throw bad("\"\(key)\" must be a duration such as \"30s\"") }
            return .milliseconds(Int64(n * 1000))
        }
    }

    static func bad(_ message: String) -> ConfbusError { ConfbusError(code: .badRequest, message: message) }
}

/// A rollout as the API shows it: the record, and each cohort member's answer.
public struct RolloutView: Sendable {
    public var record: RolloutRecord
    public var members: [RolloutMember]

    public func count(_ answer: RolloutMachine.Answer) -> Int { members.filter { $0.answer == answer }.count }
}

/// What this node knows of the running rollouts: read by the pull handler (`?instance=`), the ack
/// check and the drift view; refreshed from the store by `RolloutDriver` on every node, and at
/// once by the node that changes one.
public final class RolloutBoard: Sendable {
    public struct Entry: Sendable {
        public var record: RolloutRecord
        public var candidate: StoredVersion
    }

    private let entries = Mutex<[ServiceName: Entry]>([:])
    /// Services whose rollout this node saw end since the driver last asked (their deferred file changes are due).
    private let ended = Mutex<Set<ServiceName>>([])
    /// Told when a rollout starts, moves (a new revision) or ends.
    let changes: ChangeFeed

    public init(changes: ChangeFeed = ChangeFeed()) { self.changes = changes }

    public func running(_ service: ServiceName) -> Entry? { entries.withLock { $0[service] } }

    public var all: [ServiceName: Entry] { entries.withLock { $0 } }

    /// The candidate, when `instance` is in the cohort of the service's running rollout.
    public func candidate(for service: ServiceName, instance: String) -> StoredVersion? {
        entries.withLock { held in
            guard let entry = held[service], entry.record.machine.cohort.contains(instance) else { return nil }
            return entry.candidate
        }
    }

    /// The newest version an instance of the service may run: the candidate while a rollout runs.
    public func candidateVersion(_ service: ServiceName) -> Int? { running(service)?.candidate.version }

    func set(_ entry: Entry) {
        let service = entry.record.machine.service
        let previous = entries.withLock { $0.updateValue(entry, forKey: service) }
        if previous?.record.revision != entry.record.revision { changes.publish(.init(.rollout, service)) }
    }

    func remove(_ service: ServiceName) {
        if entries.withLock({ $0.removeValue(forKey: service) }) != nil {
            _ = ended.withLock { $0.insert(service) }
            changes.publish(.init(.rollout, service))
        }
    }

    func replace(_ all: [ServiceName: Entry]) {
        let held = entries.withLock { held in defer { held = all }; return held }
        let gone = Set(held.keys).subtracting(all.keys)
        if !gone.isEmpty { ended.withLock { $0.formUnion(gone) } }
        for service in gone { changes.publish(.init(.rollout, service)) }
        for (service, entry) in all where held[service]?.record.revision != entry.record.revision { changes.publish(.init(.rollout, service)) }
    }

    func takeEnded() -> Set<ServiceName> { ended.withLock { s in defer { s = [] }; return s } }
}

/// Rollouts (CONTRACT.md §8): started, promoted and aborted by operators on any node, advanced by
/// the node that holds the relay lease. The decisions are `RolloutMachine`'s; this reads what the
/// instances reported, stores each step and commits the release or the rollback.
public struct Rollouts: Sendable {
    let pipeline: CommitPipeline
    let overrides: OverrideEditing
    let store: any VersionStore & InstanceStore & RolloutStore
    public let board: RolloutBoard
    /// An instance silent for longer is not counted (it is expired soon after).
    public let instanceTTL: Duration
    /// Wakes the driver (to publish a new cohort, or to clear a finished rollout's topic).
    public let signal: WakeSignal
    let logger: Logger

    public init(pipeline: CommitPipeline, overrides: OverrideEditing, store: any VersionStore & InstanceStore & RolloutStore,
                board: RolloutBoard, instanceTTL: Duration, signal: WakeSignal, logger: Logger) {
        self.pipeline = pipeline
        self.overrides = overrides
        self.store = store
        self.board = board
        self.instanceTTL = instanceTTL
        self.signal = signal
        self.logger = logger
    }

    /// Commits the change as the candidate (source `rollout`, not released) and the rollout with
    /// it, in one transaction; its first cohort is published by the relaying node.
    public func start(_ service: ServiceName, _ request: RolloutRequest, by context: OperatorContext) async throws -> RolloutView {
        let id = UUID().uuidString.lowercased()
        let now = Date()
        let records = try await store.instances(service)
        let instances = Self.machineInstances(records, ttl: instanceTTL, now: now)
        let policy = request.policy
        // The record the commit stores with the candidate (the plan refuses a change with no candidate).
        let made = Mutex<RolloutRecord?>(nil)
        let start = RolloutCommit.start { candidate in
            // The first cohort only; the driver makes every later move (even one due at once).
            let machine = RolloutMachine.begin(id: id, service: service, stableVersion: candidate.version - 1, candidateVersion: candidate.version,
                                               policy: policy, instances: instances, now: now)
            let record = RolloutRecord(machine: machine, actor: context.actor, reason: context.reason, startedAt: now, updatedAt: now)
            made.withLock { $0 = record }
            return record
        }
        let outcome: CommitOutcome = switch request.change {
        case .override(let layer):
            try await overrides.edit(service, .replace(layer), expectedVersion: nil, by: context, action: "rollout.start", source: .rollout, rollout: start)
        case .patch(let patch):
            try await overrides.edit(service, .patch(patch), expectedVersion: nil, by: context, action: "rollout.start", source: .rollout, rollout: start)
        case .rollback(let target):
            try await overrides.rollback(service, to: target, expectedVersion: nil, by: context, action: "rollout.start", source: .rollout, rollout: start)
        }
        guard let record = made.withLock({ $0 }), outcome.isCommitted else {
            throw ConfbusError(code: .nothingToRollOut, service: service.rawValue,
                               message: "the change leaves \(service)'s config as it is; there is nothing to roll out")
        }
        board.set(.init(record: record, candidate: outcome.version))
        Counter(label: "confbus_rollouts_total", dimensions: [("state", "started")]).increment()
        logger.info("rollout started", metadata: ["confbus.service": "\(service)", "confbus.rollout": "\(id)",
                                                 "confbus.version": "\(outcome.version.version)"])
        signal.signal()
        return view(record, instances: records)
    }

    public func rollout(id: String) async throws -> RolloutView? {
        guard let record = try await store.rollout(id: id) else { return nil }
        return try await view(record)
    }

    public func rollouts(of service: ServiceName, limit: Int) async throws -> [RolloutView] {
        let records = try await store.rollouts(of: service, limit: limit)
        let instances = try await store.instances(service)
        return records.map { view($0, instances: instances) }
    }

    func view(_ record: RolloutRecord) async throws -> RolloutView {
        view(record, instances: try await store.instances(record.machine.service))
    }

    func view(_ record: RolloutRecord, instances: [InstanceRecord]) -> RolloutView {
        // An ended rollout shows the answers it ended with (later versions change the instances).
        if let members = record.members { return RolloutView(record: record, members: members) }
        let answers = record.machine.answers(Self.machineInstances(instances, ttl: instanceTTL, now: Date()))
        let details = Dictionary(instances.map { ($0.instance, $0) }, uniquingKeysWith: { first, _ in first })
        return RolloutView(record: record, members: record.machine.cohort.map { member in
            let answer = answers[member] ?? .pending
            return RolloutMember(instance: member, answer: answer, detail: answer == .rejected ? details[member]?.detail : nil)
        })
    }

    /// `POST /v1/rollouts/{id}/promote`: the candidate is released now.
    public func promote(id: String, by context: OperatorContext) async throws -> RolloutView {
        try await operate(id, by: context) { machine in machine.promote(now: Date()) }
    }

    /// `POST /v1/rollouts/{id}/abort`: rolled back now.
    public func abort(id: String, by context: OperatorContext) async throws -> RolloutView {
        let reason = "aborted by \(context.actor)" + (context.reason.map { ": \($0)" } ?? "")
        return try await operate(id, by: context) { machine in machine.abort(now: Date(), reason: reason) }
    }

    private func operate(_ id: String, by context: OperatorContext,
                         _ change: (inout RolloutMachine) -> [RolloutMachine.Action]) async throws -> RolloutView {
        // A move of the driver's between the read and the write makes the write fail: read again.
        for _ in 0..<5 {
            guard let record = try await store.rollout(id: id) else {
                throw ConfbusError(code: .notFound, message: "no rollout \"\(id)\"")
            }
            guard !record.machine.phase.isFinished else {
                throw ConfbusError(code: .rolloutFinished, service: record.machine.service.rawValue,
                                   message: "rollout \(id) has \(record.machine.phase.state == "completed" ? "completed" : "rolled back") already")
            }
            var machine = record.machine
            let actions = change(&machine)
            do {
                let done = try await apply(actions, to: record, now: machine, by: context)
                return try await view(done)
            } catch is RolloutMoved {
                continue
            }
        }
        throw ConfbusError(code: .unavailable, message: "rollout \(id) kept changing; retry")
    }

    /// One look at a running rollout, by the relaying node: what the instances reported and the
    /// time may move it. Throws `RolloutMoved` when another node or an operator moved it first.
    @discardableResult
    public func advance(_ record: RolloutRecord, now: Date = Date()) async throws -> RolloutRecord {
        let instances = Self.machineInstances(try await store.instances(record.machine.service), ttl: instanceTTL, now: now)
        var machine = record.machine
        let actions = machine.advance(now: now, instances: instances)
        guard machine != record.machine else { return record }
        return try await apply(actions, to: record, now: machine, by: OperatorContext(actor: "confbus", requestID: "rollout", reason: nil))
    }

    /// Stores the machine's move (guarded by the record's revision) and does what it asks: a
    /// release or a rollback in the same transaction as the move; a new cohort is published by the driver.
    private func apply(_ actions: [RolloutMachine.Action], to record: RolloutRecord, now machine: RolloutMachine,
                       by context: OperatorContext) async throws -> RolloutRecord {
        let now = Date()
        var moved = record
        moved.machine = machine
        moved.updatedAt = now
        let service = machine.service
        if machine.phase.isFinished {
            moved.members = view(moved, instances: try await store.instances(service)).members
        }
        func audit(_ action: String, reason: String?, detail: String? = nil) -> AuditRecord {
            AuditRecord(actor: context.actor, requestID: context.requestID, action: action, outcome: "accepted", services: [service.rawValue],
                        changes: ["rollout": .string(machine.id), "step": .integer(machine.step + 1), "cohort": .integer(machine.cohort.count)],
                        reason: reason, detail: detail)
        }
        if actions.contains(.release) {
            let action = context.actor == "confbus" ? "rollout.complete" : "rollout.promote"
            try await pipeline.committing([service]) {
                try await store.releaseRollout(moved, now: now, audit: audit(action, reason: context.reason))
                let held = board.running(service)?.candidate
                if let candidate = held?.version == machine.candidateVersion ? held : try await store.version(service, machine.candidateVersion) {
                    pipeline.released(candidate)
                }
            }
            Counter(label: "confbus_rollouts_total", dimensions: [("state", "completed")]).increment()
            logger.info("rollout released its candidate", metadata: ["confbus.service": "\(service)", "confbus.rollout": "\(machine.id)"])
        } else if case .rollBack(let reason)? = actions.first(where: { if case .rollBack = $0 { true } else { false } }) {
            try await rollBack(moved, reason: reason, by: context)
            Counter(label: "confbus_rollouts_total", dimensions: [("state", "rolled_back")]).increment()
            logger.warning("rollout rolled back", metadata: ["confbus.service": "\(service)", "confbus.rollout": "\(machine.id)",
                                                            "confbus.reason": "\(reason)"])
        } else {
            let stepped = machine.step != record.machine.step
            try await store.saveRollout(moved, now: now, audit: stepped ? audit("rollout.step", reason: nil) : nil)
        }
        // What the store now holds, without reading it back: every save raises the revision by one.
        var stored = moved
        stored.revision += 1
        if stored.machine.phase.isFinished {
            board.remove(service)
        } else if let entry = board.running(service) {
            board.set(.init(record: stored, candidate: entry.candidate))
        }
        signal.signal()
        return stored
    }

    /// Commits the stable config and override layer as a new version (source `rollback`) with the
    /// rolled-back rollout, in one transaction.
    private func rollBack(_ record: RolloutRecord, reason: String, by context: OperatorContext) async throws {
        let machine = record.machine
        let service = machine.service
        guard let stable = try await store.version(service, machine.stableVersion) else {
            throw ConfbusError(code: .notFound, service: service.rawValue, message: "\(service) has no version \(machine.stableVersion)")
        }
        let layer = try await store.overrideLayer(of: service, version: machine.stableVersion) ?? .object([:])
        let secrets = await overrides.definitions.redaction(service)
        let why = "rollout \(machine.id) rolled back: \(reason)"
        let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: "rollout.rollback", outcome: "accepted",
                                services: [service.rawValue], reason: why)
        let environment = pipeline.options.environment
        _ = try await pipeline.commit(CommitRequest(services: [service], audit: audit, rollout: .end(record, audit: nil)) { _ in
            // The stable config was published before: it is neither checked again nor refused.
            [PlannedChange(version: NewVersion(service: service, config: stable.config, checksum: stable.checksum, source: .rollback,
                                               author: context.actor, reason: why, environment: environment, secrets: secrets),
                           overrideLayer: layer)]
        })
    }

    /// The instances as the machine sees them: taking part when registered with the rollout
    /// feature and seen within the TTL; an ack with the version it was for.
    public static func machineInstances(_ records: [InstanceRecord], ttl: Duration, now: Date) -> [RolloutMachine.Instance] {
        records.map { record in
            RolloutMachine.Instance(
                id: record.instance,
                takesPart: record.features.contains("rollout") && now.timeIntervalSince(record.lastSeen) <= ttl.seconds,
                health: record.health, appliedVersion: record.appliedVersion,
                ack: record.ackVersion.map { .init(version: $0, status: record.ackStatus ?? "applied", detail: record.detail) })
        }
    }
}
