import ConfbusCore
import ConfbusEngine
import Foundation

/// `ConfbusStore` in memory, for component tests of the Engine. It keeps the promises the
/// PostgreSQL store keeps (and `ConfbusStoreContract` checks both): versions numbered 1, 2, 3…
/// per service, a commit's plan called with the bases it holds and nothing stored when it throws,
/// the outbox written with the version, guarded marks under the lease. An actor serialises
/// every call, which is the row lock's guarantee without its concurrency.
public actor InMemoryConfbusStore: ConfbusStore {
    private struct ServiceRow {
        var latest = 0
        var released = 0
        var overrideLayer: JSONValue?
        var publishedVersion = 0
    }

    private struct VersionRow {
        var stored: StoredVersion
        var overrideLayer: JSONValue?
        var layers: JSONValue?
    }

    private struct Lease {
        var holder: String
        var epoch: Int64
        var expires: ContinuousClock.Instant
    }

    private struct State {
        var services: [ServiceName: ServiceRow] = [:]
        var versions: [ServiceName: [VersionRow]] = [:]
        /// (service, version) → when it was queued.
        var outbox: [ServiceName: [Int: Date]] = [:]
        var idempotency: [String: (requestHash: String, answer: String)] = [:]
        var audit: [AuditRecord] = []
        var instances: [ServiceName: [String: InstanceRecord]] = [:]
        var rollouts: [String: RolloutRecord] = [:]
        var diverged: [ServiceName: Divergence] = [:]
    }

    private var state = State()
    private var lease: Lease?
    /// Refuses every call while set, as a database that is down does.
    private var unavailable = false

    public init() {}

    public struct Unavailable: Error {}

    /// Makes every call fail (true) or work again (false).
    public func setUnavailable(_ down: Bool) { unavailable = down }

    /// Commits whose services this says no to fail as a database error would (nothing stored).
    private var refuseCommit: @Sendable ([ServiceName]) -> Bool = { _ in false }

    public func refuseCommits(where refuse: @escaping @Sendable ([ServiceName]) -> Bool) { refuseCommit = refuse }

    private func available() throws {
        if unavailable { throw Unavailable() }
    }

    // MARK: VersionStore

    public func commit(_ request: CommitRequest) async throws -> [CommitOutcome] {
        try available()
        if refuseCommit(request.services) { throw Unavailable() }
        if let idempotency = request.idempotency, let earlier = state.idempotency[idempotency.key] {
            throw IdempotentReplay(requestHash: earlier.requestHash, answer: earlier.answer)
        }
        var next = state
        let bases = request.services.map { service in
            let row = next.services[service] ?? ServiceRow()
            return CommitBase(service: service, latestVersion: row.latest,
                              latestChecksum: row.latest > 0 ? next.versions[service]?.last?.stored.checksum : nil,
                              overrideLayer: row.overrideLayer, releasedVersion: row.released)
        }
        for service in request.services where next.services[service] == nil { next.services[service] = ServiceRow() }
        let changes = try request.plan(bases)
        try request.admit(changes, bases: bases)
        var outcomes: [CommitOutcome] = []
        let now = Date()
        let byService = Dictionary(bases.map { ($0.service, $0) }, uniquingKeysWith: { first, _ in first })
        for change in changes {
            guard let base = byService[change.version.service] else { continue }
            let service = base.service
            var row = next.services[service]!
            row.overrideLayer = change.layer(after: row.overrideLayer)
            if base.holds(change.version) {
                next.services[service] = row
                outcomes.append(.unchanged(next.versions[service]!.last!.stored))
                continue
            }
            row.latest += 1
            let new = change.version
            let stored = StoredVersion(service: service, version: row.latest, config: new.config, checksum: new.checksum,
                                       source: new.source, author: new.author, reason: new.reason, createdAt: now,
                                       environment: new.environment, batchID: new.batchID?.uuidString.lowercased())
            // A rollout's candidate is held back: not released, nothing queued.
            if new.source != .rollout {
                row.released = row.latest
                next.outbox[service, default: [:]][row.latest] = now
            }
            next.services[service] = row
            // An operator's write ends a divergence's notice; the files' and a repair's do not.
            if new.source != .files { next.diverged[service] = nil }
            next.versions[service, default: []].append(VersionRow(stored: stored, overrideLayer: row.overrideLayer,
                                                                  layers: new.layers.isNull ? JSONValue?.none : new.layers))
            outcomes.append(.committed(stored))
        }
        var record = request.audit
        record.at = now
        if !outcomes.isEmpty { record.services = outcomes.map(\.version.service.rawValue) }
        record.changes = .array(outcomes.map { outcome in
            let v = outcome.version
            return ["service": .string(v.service.rawValue), "old_version": .integer(outcome.isCommitted ? v.version - 1 : v.version),
                    "new_version": .integer(v.version), "checksum": .string(v.checksum)]
        })
        if record.action != "files" || outcomes.contains(where: \.isCommitted) { next.audit.append(record) }
        if let idempotency = request.idempotency {
            next.idempotency[idempotency.key] = (idempotency.requestHash, idempotency.answer(outcomes))
        }
        switch request.rollout {
        case nil: break
        case .start(let make):
            for case .committed(let candidate) in outcomes where candidate.source == .rollout {
                try Self.insert(make(candidate), into: &next)
            }
        case .end(let record, let audit):
            try Self.update(record, now: record.updatedAt, audit: audit, in: &next)
        }
        state = next
        return outcomes
    }

    public func latestVersions() async throws -> [StoredVersion] {
        try available()
        return state.versions.keys.sorted().compactMap { released($0) }
    }

    public func latest(_ service: ServiceName) async throws -> StoredVersion? {
        try available()
        return released(service)
    }

    private func released(_ service: ServiceName) -> StoredVersion? {
        row(service, state.services[service]?.released ?? 0)?.stored
    }

    public func version(_ service: ServiceName, _ number: Int) async throws -> StoredVersion? {
        try available()
        return row(service, number)?.stored
    }

    private func row(_ service: ServiceName, _ number: Int) -> VersionRow? {
        // Numbers skip only after a repair (CONTRACT.md §11), so the row is usually at its number.
        guard let rows = state.versions[service], number >= 1 else { return nil }
        if number <= rows.count, rows[number - 1].stored.version == number { return rows[number - 1] }
        return rows.last { $0.stored.version == number }
    }

    public func history(_ service: ServiceName, limit: Int, before: Int?) async throws -> [StoredVersion] {
        try available()
        let rows = state.versions[service] ?? []
        return Array(rows.reversed().map(\.stored).filter { $0.version < (before ?? Int.max) }.prefix(limit))
    }

    public func overrideLayers() async throws -> [ServiceName: JSONValue] {
        try available()
        return state.services.compactMapValues(\.overrideLayer)
    }

    public func overrideLayer(of service: ServiceName, version: Int) async throws -> JSONValue? {
        try available()
        return row(service, version)?.overrideLayer
    }

    public func layers(of service: ServiceName, version: Int) async throws -> JSONValue? {
        try available()
        return row(service, version)?.layers
    }

    public func idempotentAnswer(_ key: String) async throws -> (requestHash: String, answer: String)? {
        try available()
        return state.idempotency[key]
    }

    // MARK: OutboxStore

    public func acquireLease(holder: String, ttl: Duration) async throws -> RelayLease? {
        try available()
        let now = ContinuousClock.now
        if let current = lease, current.holder != holder, current.expires > now { return nil }
        let epoch: Int64 = if let current = lease { current.holder == holder && current.expires > now ? current.epoch : current.epoch + 1 } else { 1 }
        lease = Lease(holder: holder, epoch: epoch, expires: now + ttl)
        return RelayLease(holder: holder, epoch: epoch)
    }

    public func releaseLease(_ released: RelayLease) async throws {
        try available()
        if let current = lease, current.holder == released.holder, current.epoch == released.epoch {
            lease?.expires = ContinuousClock.now
        }
    }

    private func isCurrent(_ held: RelayLease) -> Bool {
        guard let current = lease else { return false }
        return current.holder == held.holder && current.epoch == held.epoch && current.expires > ContinuousClock.now
    }

    public func pendingOutbox(limit: Int, excluding: [ServiceName]) async throws -> [StoredVersion] {
        try available()
        let skipped = Set(excluding)
        let waiting = state.outbox.filter { !$0.value.isEmpty && !skipped.contains($0.key) }
            .map { (service: $0.key, newest: $0.value.keys.max()!, oldest: $0.value.values.min()!) }
            .sorted { ($0.oldest, $0.service) < ($1.oldest, $1.service) }
        return waiting.prefix(limit).compactMap { row($0.service, $0.newest)?.stored }
    }

    public func markPublished(_ marks: [ServiceName: Int], lease held: RelayLease) async throws -> Bool {
        try available()
        guard isCurrent(held) else { return false }
        for (service, version) in marks {
            state.outbox[service] = state.outbox[service]?.filter { $0.key > version }
            if let published = state.services[service]?.publishedVersion, published < version {
                state.services[service]?.publishedVersion = version
            }
        }
        return true
    }

    public func outboxStatus() async throws -> OutboxStatus {
        try available()
        let times = state.outbox.values.flatMap(\.values)
        return OutboxStatus(backlog: times.count, oldestAge: times.min().map { Date().timeIntervalSince($0) })
    }

    public func queuedServices() async throws -> Set<ServiceName> {
        try available()
        return Set(state.outbox.filter { !$0.value.isEmpty }.keys)
    }

    public func repairDivergence(_ service: ServiceName, retained: (version: Int, checksum: String)) async throws -> StoredVersion? {
        try available()
        guard var row = state.services[service], row.released > 0, row.latest <= retained.version,
              let released = self.row(service, row.released) else { return nil }
        if row.latest == retained.version {
            guard row.released == row.latest, released.stored.checksum != retained.checksum else { return nil }
        }
        let repaired = max(row.latest, retained.version) + 1
        let divergence = Divergence(retainedVersion: retained.version, retainedChecksum: retained.checksum,
                                    databaseVersion: row.released, repairedVersion: repaired, detectedAt: Date())
        var stored = released.stored
        stored.version = repaired
        stored.source = .repair
        stored.author = "confbus"
        stored.reason = divergence.reason
        stored.createdAt = Date()
        stored.batchID = nil
        row.latest = repaired
        row.released = repaired
        state.services[service] = row
        state.versions[service, default: []].append(VersionRow(stored: stored, overrideLayer: released.overrideLayer, layers: released.layers))
        state.outbox[service, default: [:]][repaired] = Date()
        state.diverged[service] = divergence
        state.audit.append(AuditRecord(actor: "confbus", requestID: "repair-\(service)-\(repaired)", action: "repair", outcome: "accepted",
                                       services: [service.rawValue], reason: divergence.reason, at: Date()))
        return stored
    }

    public func divergedServices() async throws -> [ServiceName: Divergence] {
        try available()
        return state.diverged
    }

    public func requeue(_ versions: [StoredVersion]) async throws {
        try available()
        for service in Set(versions.map(\.service)) {
            guard let latest = state.services[service]?.released, latest > 0 else { continue }
            if state.outbox[service]?[latest] == nil { state.outbox[service, default: [:]][latest] = Date() }
        }
    }

    /// The version each service was last marked published at (for tests of the relay).
    public func publishedVersions() -> [ServiceName: Int] {
        state.services.compactMapValues { $0.publishedVersion > 0 ? $0.publishedVersion : nil }
    }

    // MARK: InstanceStore

    private func touch(_ service: ServiceName, _ instance: String, _ update: (inout InstanceRecord) -> Void) {
        let now = Date()
        var record = state.instances[service]?[instance] ?? InstanceRecord(instance: instance, firstSeen: now, lastSeen: now)
        record.lastSeen = now
        update(&record)
        state.instances[service, default: [:]][instance] = record
    }

    public func recordRegistration(_ service: ServiceName, instance: String, version: Int?, features: [String]) async throws {
        try available()
        touch(service, instance) { record in
            record.features = features
            if let version, version > (record.appliedVersion ?? 0) { record.appliedVersion = version }
        }
    }

    public func recordAck(_ service: ServiceName, instance: String, version: Int, status: String, detail: String?) async throws {
        try available()
        touch(service, instance) { record in
            record.ackStatus = status
            record.ackVersion = version
            record.detail = detail
            if status == "applied" { record.appliedVersion = version }
        }
    }

    public func recordHealth(_ service: ServiceName, instance: String, status: String, version: Int?) async throws {
        try available()
        touch(service, instance) { record in
            record.health = status
            record.healthAt = record.lastSeen
            if let version, version > (record.appliedVersion ?? 0) { record.appliedVersion = version }
        }
    }

    public func instances(_ service: ServiceName) async throws -> [InstanceRecord] {
        try available()
        let latest = state.services[service]?.released ?? 0
        return (state.instances[service] ?? [:]).values.sorted { $0.instance < $1.instance }.map { record in
            var record = record
            let applied = record.appliedVersion ?? 0
            record.laggingSince = applied < latest ? row(service, applied + 1).map { max($0.stored.createdAt, record.firstSeen) } : nil
            return record
        }
    }

    public func instanceCounts() async throws -> [ServiceName: (total: Int, lagging: Int)] {
        try available()
        var counts: [ServiceName: (total: Int, lagging: Int)] = [:]
        for (service, records) in state.instances where !records.isEmpty {
            guard let latest = state.services[service]?.released else { continue }
            counts[service] = (records.count, records.values.filter { ($0.appliedVersion ?? 0) < latest }.count)
        }
        return counts
    }

    public func expireInstances(olderThan ttl: Duration) async throws -> Int {
        try available()
        let cutoff = Date().addingTimeInterval(-ttl.seconds)
        var removed = 0
        for (service, records) in state.instances {
            let kept = records.filter { $0.value.lastSeen >= cutoff }
            removed += records.count - kept.count
            state.instances[service] = kept
        }
        return removed
    }

    // MARK: AuditStore

    public func recordRefusal(_ audit: AuditRecord) async throws {
        try available()
        var record = audit
        record.at = Date()
        state.audit.append(record)
    }

    public func auditLog(service: ServiceName?, limit: Int) async throws -> [AuditRecord] {
        try available()
        return Array(state.audit.reversed().filter { record in service.map { record.services.contains($0.rawValue) } ?? true }.prefix(limit))
    }

    // MARK: ArchiveStore

    public func exportAll(history: Bool) async throws -> [ServiceExport] {
        try available()
        return state.versions.keys.sorted().compactMap { service in
            guard let rows = state.versions[service], !rows.isEmpty else { return nil }
            let kept = history ? rows : [rows.last!]
            return ServiceExport(service: service, overrideLayer: state.services[service]?.overrideLayer,
                                 versions: kept.map { .init(stored: $0.stored, overrideLayer: $0.overrideLayer) })
        }
    }

    public func importAll(_ services: [ServiceExport], audit: AuditRecord) async throws {
        try available()
        var next = state
        for export in services {
            let name = export.service
            if (next.services[name]?.latest ?? 0) > 0 {
                throw ConfbusError(code: .alreadyExists, service: name.rawValue, message: "\(name) already has versions; import only into a database without it")
            }
            let latest = export.versions.last?.stored.version ?? 0
            next.services[name] = ServiceRow(latest: latest, released: latest, overrideLayer: export.overrideLayer)
            next.versions[name] = export.versions.map { VersionRow(stored: $0.stored, overrideLayer: $0.overrideLayer) }
            if latest > 0 { next.outbox[name, default: [:]][latest] = Date() }
        }
        var record = audit
        record.at = Date()
        next.audit.append(record)
        state = next
    }

    // MARK: RolloutStore

    public func createRollout(_ record: RolloutRecord) async throws {
        try available()
        try Self.insert(record, into: &state)
    }

    private static func insert(_ record: RolloutRecord, into state: inout State) throws {
        let service = record.machine.service
        if state.rollouts[record.machine.id] != nil
            || state.rollouts.values.contains(where: { $0.machine.service == service && !$0.machine.phase.isFinished }) {
            throw ConfbusError(code: .rolloutInProgress, service: service.rawValue, message: "\(service) has a rollout running")
        }
        state.rollouts[record.machine.id] = record
    }

    private static func update(_ record: RolloutRecord, now: Date, audit: AuditRecord?, in state: inout State) throws {
        guard var stored = state.rollouts[record.machine.id], stored.revision == record.revision, !stored.machine.phase.isFinished else {
            throw RolloutMoved(id: record.machine.id)
        }
        stored.machine = record.machine
        stored.updatedAt = now
        if let members = record.members { stored.members = members }
        stored.revision += 1
        state.rollouts[record.machine.id] = stored
        if var audit {
            audit.at = now
            state.audit.append(audit)
        }
    }

    public func saveRollout(_ record: RolloutRecord, now: Date, audit: AuditRecord?) async throws {
        try available()
        try Self.update(record, now: now, audit: audit, in: &state)
    }

    public func releaseRollout(_ record: RolloutRecord, now: Date, audit: AuditRecord?) async throws {
        try available()
        var next = state
        try Self.update(record, now: now, audit: audit, in: &next)
        let machine = record.machine
        if var row = next.services[machine.service], row.released < machine.candidateVersion {
            row.released = machine.candidateVersion
            next.services[machine.service] = row
            next.outbox[machine.service, default: [:]][machine.candidateVersion] = now
        }
        state = next
    }

    public func rollout(id: String) async throws -> RolloutRecord? {
        try available()
        return state.rollouts[id]
    }

    public func rollouts(of service: ServiceName, limit: Int) async throws -> [RolloutRecord] {
        try available()
        return Array(state.rollouts.values.filter { $0.machine.service == service }
            .sorted { ($0.startedAt, $0.machine.id) > ($1.startedAt, $1.machine.id) }.prefix(limit))
    }

    public func runningRollouts() async throws -> [RolloutRecord] {
        try available()
        return state.rollouts.values.filter { !$0.machine.phase.isFinished }.sorted { $0.machine.service < $1.machine.service }
    }

    public func rolloutsUpdated(since: Date) async throws -> [RolloutRecord] {
        try available()
        return state.rollouts.values.filter { $0.updatedAt >= since }.sorted { $0.updatedAt < $1.updatedAt }
    }
}
