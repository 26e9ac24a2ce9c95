import ConfbusCore
import Foundation

/// Where a version came from (CONTRACT.md §3).
public enum VersionSource: String, Sendable, CaseIterable {
    /// `rollout`: a rollout's candidate, committed but not released until the rollout completes.
    /// `repair`: the released config committed again above a version the broker held and the
    /// database lost (CONTRACT.md §11: a failover to an asynchronous standby, a restore).
    case files, override, batch, rollback, `import`, rollout, repair
}

/// A service whose broker held a version this database does not have: the retained one, the
/// database's released one when it was found, and the version committed above both to repair it.
/// Shown in `/v1/services` and health until an operator next writes the service.
public struct Divergence: Sendable, Equatable {
    public var retainedVersion: Int
    public var retainedChecksum: String
    public var databaseVersion: Int
    public var repairedVersion: Int
    public var detectedAt: Date

    public init(retainedVersion: Int, retainedChecksum: String, databaseVersion: Int, repairedVersion: Int, detectedAt: Date) {
        self.retainedVersion = retainedVersion
        self.retainedChecksum = retainedChecksum
        self.databaseVersion = databaseVersion
        self.repairedVersion = repairedVersion
        self.detectedAt = detectedAt
    }

    /// Why the numbers between the database's version and the repair were skipped, for history.
    public var reason: String {
        let skipped = databaseVersion + 1 == repairedVersion - 1 ? "version \(databaseVersion + 1)" : "versions \(databaseVersion + 1)–\(repairedVersion - 1)"
        return "\(skipped) skipped: the broker held version \(retainedVersion) (\(retainedChecksum)), which this database does not have "
            + "(lost in a failover to an asynchronous standby, or a restore); version \(databaseVersion)'s config is committed again above it"
    }
}

/// A committed version of one service's config.
public struct StoredVersion: Sendable, Equatable {
    public var service: ServiceName
    public var version: Int
    public var config: JSONValue
    public var checksum: String
    public var source: VersionSource
    public var author: String
    public var reason: String?
    public var createdAt: Date
    public var environment: String
    public var batchID: String?

    public init(service: ServiceName, version: Int, config: JSONValue, checksum: String, source: VersionSource,
                author: String, reason: String?, createdAt: Date, environment: String, batchID: String? = nil) {
        self.service = service
        self.version = version
        self.config = config
        self.checksum = checksum
        self.source = source
        self.author = author
        self.reason = reason
        self.createdAt = createdAt
        self.environment = environment
        self.batchID = batchID
    }

    /// The resolved document of CONTRACT.md §3, as MQTT carries it and HTTP returns it.
    public var document: JSONValue {
        .object([
            "service": .string(service.rawValue),
            "environment": .string(environment),
            "version": .integer(version),
            "checksum": .string(checksum),
            "updated_at": .string(Timestamp.format(createdAt)),
            "config": config,
        ])
    }
}

/// A version about to be committed.
public struct NewVersion: Sendable {
    public var service: ServiceName
    public let config: JSONValue
    /// The config's checksum, computed once.
    public let checksum: String
    public var source: VersionSource
    public var author: String
    public var reason: String?
    public var environment: String
    /// Which layer each value came from, kept with the version for history.
    public var layers: JSONValue
    /// The batch this version belongs to, if any.
    public var batchID: UUID?
    /// The members the service's schema marks secret: a store that encrypts at rest seals them, in
    /// the config and in the override layer stored with it.
    public var secrets: Redaction

    public init(service: ServiceName, config: JSONValue, checksum: String? = nil, source: VersionSource, author: String, reason: String?,
                environment: String, layers: JSONValue = .null, batchID: UUID? = nil, secrets: Redaction = Redaction(paths: [])) {
        self.batchID = batchID
        self.secrets = secrets
        self.service = service
        self.config = config
        self.checksum = checksum ?? config.checksum
        self.source = source
        self.author = author
        self.reason = reason
        self.environment = environment
        self.layers = layers
    }
}

public enum CommitOutcome: Sendable, Equatable {
    /// A new version was committed (and queued for publishing in the same transaction).
    case committed(StoredVersion)
    /// The config equals the latest version: nothing was stored.
    case unchanged(StoredVersion)

    public var isCommitted: Bool {
        if case .committed = self { return true }
        return false
    }

    public var version: StoredVersion {
        switch self {
        case .committed(let v), .unchanged(let v): v
        }
    }
}

/// What the distributor knows of one running instance of a service.
public struct InstanceRecord: Sendable, Equatable {
    public var instance: String
    public var firstSeen: Date
    public var lastSeen: Date
    public var health: String?
    public var healthAt: Date?
    public var appliedVersion: Int?
    public var ackStatus: String?
    /// The version its last ack was for (applied or rejected).
    public var ackVersion: Int?
    public var detail: String?
    /// What it registered with (`"features": ["rollout"]`).
    public var features: [String]
    /// Behind the latest version since then: when the first version it lacks was made (or when it was
    /// first seen, if later). nil when it runs the latest. Worked out by the store when read.
    public var laggingSince: Date?

    public init(instance: String, firstSeen: Date, lastSeen: Date, health: String? = nil, healthAt: Date? = nil,
                appliedVersion: Int? = nil, ackStatus: String? = nil, ackVersion: Int? = nil, detail: String? = nil, features: [String] = [],
                laggingSince: Date? = nil) {
        self.ackVersion = ackVersion
        self.features = features
        self.laggingSince = laggingSince
        self.instance = instance
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.health = health
        self.healthAt = healthAt
        self.appliedVersion = appliedVersion
        self.ackStatus = ackStatus
        self.detail = detail
    }
}

/// What the store holds for one service at the moment a commit holds the service's row lock:
/// what a planned change is computed from, so that two writers can never lose each other's edits.
public struct CommitBase: Sendable, Equatable {
    public var service: ServiceName
    /// 0 before the first version.
    public var latestVersion: Int
    public var latestChecksum: String?
    /// The stored ops override layer (nil when there is none).
    public var overrideLayer: JSONValue?
    /// What `config/update/<service>` and a plain GET carry: below `latestVersion` only while a
    /// rollout's candidate (the latest) is out to its cohort.
    public var releasedVersion: Int

    public init(service: ServiceName, latestVersion: Int, latestChecksum: String?, overrideLayer: JSONValue?, releasedVersion: Int? = nil) {
        self.service = service
        self.latestVersion = latestVersion
        self.latestChecksum = latestChecksum
        self.overrideLayer = overrideLayer
        self.releasedVersion = releasedVersion ?? latestVersion
    }

    /// A rollout of the service runs: its candidate is the latest version, not yet released.
    public var inRollout: Bool { releasedVersion < latestVersion }

    /// Whether `version` has the config the service is at already: a store then makes no version
    /// (it may still store the change's override layer).
    public func holds(_ version: NewVersion) -> Bool { latestVersion > 0 && latestChecksum == version.checksum }
}

/// One service's change, computed from its `CommitBase`: the config it resolves to and the
/// override layer to store (nil keeps the stored one; an empty object clears it).
public struct PlannedChange: Sendable {
    public var version: NewVersion
    public var overrideLayer: JSONValue?

    public init(version: NewVersion, overrideLayer: JSONValue?) {
        self.version = version
        self.overrideLayer = overrideLayer
    }

    /// The override layer in force once this change is stored over `stored`: every store keeps this rule.
    public func layer(after stored: JSONValue?) -> JSONValue? {
        guard let layer = overrideLayer else { return stored }
        // Not a ternary: JSONValue takes `nil` as its own null, which would be stored as a layer.
        if layer.isNull || layer == .object([:]) { return Optional.none }
        return layer
    }
}

/// A commit of one or more services in one transaction. The store creates and locks the
/// services' rows (in name order, so two commits never deadlock), reads their bases, and calls
/// `plan` while it holds the locks; a `plan` that throws commits nothing.
public struct CommitRequest: Sendable {
    public var services: [ServiceName]
    public var audit: AuditRecord
    public var idempotency: IdempotencyRecord?
    /// The bases in the order of `services`; returns one change per service, in that order.
    public var plan: @Sendable ([CommitBase]) throws -> [PlannedChange]
    /// A commit that starts or ends a rollout (CONTRACT.md §8); nil for every other write.
    public var rollout: RolloutCommit?

    public init(services: [ServiceName], audit: AuditRecord, idempotency: IdempotencyRecord? = nil, rollout: RolloutCommit? = nil,
                plan: @escaping @Sendable ([CommitBase]) throws -> [PlannedChange]) {
        self.services = services
        self.audit = audit
        self.idempotency = idempotency
        self.rollout = rollout
        self.plan = plan
    }

    /// The rule every store applies once the plan is made, under the row locks: no change reaches a
    /// service whose rollout runs (`rollout_in_progress`), except the rollback that ends it.
    public func admit(_ changes: [PlannedChange], bases: [CommitBase]) throws(ConfbusError) {
        let running = Set(bases.filter(\.inRollout).map(\.service))
        guard !running.isEmpty else { return }
        for change in changes where running.contains(change.version.service) {
            if case .end(let record, _) = rollout, record.machine.service == change.version.service { continue }
            throw ConfbusError(code: .rolloutInProgress, service: change.version.service.rawValue,
                               message: "\(change.version.service) has a rollout running; promote or abort it first")
        }
    }
}

/// How a commit takes part in a rollout.
public enum RolloutCommit: Sendable {
    /// The change is the candidate (source `rollout`): committed but not released, so nothing goes
    /// to the outbox; the rollout, made from the committed candidate, is stored in the same transaction.
    case start(@Sendable (StoredVersion) -> RolloutRecord)
    /// The rollback that ends this rollout (its machine rolled back): allowed while it runs, and the
    /// rollout is stored (as of its `updatedAt`) in the same transaction, only if its revision is still the stored one.
    case end(RolloutRecord, audit: AuditRecord?)
}

/// A rollout changed (another node advanced it, an operator promoted it) since it was read.
public struct RolloutMoved: Error, Sendable {
    public var id: String
    public init(id: String) { self.id = id }
}

/// An earlier request with the same `Idempotency-Key` has committed: its stored answer.
public struct IdempotentReplay: Error, Sendable {
    public var requestHash: String
    public var answer: String

    public init(requestHash: String, answer: String) {
        self.requestHash = requestHash
        self.answer = answer
    }
}

/// A service's layers and versions as `GET /v1/export` writes them and `POST /v1/import` reads them.
public struct ServiceExport: Sendable, Equatable {
    public struct Version: Sendable, Equatable {
        public var stored: StoredVersion
        public var overrideLayer: JSONValue?

        public init(stored: StoredVersion, overrideLayer: JSONValue?) {
            self.stored = stored
            self.overrideLayer = overrideLayer
        }
    }

    public var service: ServiceName
    public var overrideLayer: JSONValue?
    public var versions: [Version]
    /// On import, the members the service's schema marks secret (a store that encrypts at rest seals them).
    public var secrets: Redaction

    public init(service: ServiceName, overrideLayer: JSONValue?, versions: [Version], secrets: Redaction = Redaction(paths: [])) {
        self.service = service
        self.overrideLayer = overrideLayer
        self.versions = versions
        self.secrets = secrets
    }
}

/// An `Idempotency-Key` with the request it belongs to; its answer is stored in the same
/// transaction as the changes, so a retry after an in-doubt commit gets the first answer.
public struct IdempotencyRecord: Sendable {
    public var key: String
    public var requestHash: String
    public var answer: @Sendable ([CommitOutcome]) -> String

    public init(key: String, requestHash: String, answer: @escaping @Sendable ([CommitOutcome]) -> String) {
        self.key = key
        self.requestHash = requestHash
        self.answer = answer
    }
}

/// An audit row: who did what to which services, written in the change's own transaction.
public struct AuditRecord: Sendable, Equatable {
    public var actor: String
    public var requestID: String
    public var action: String
    public var outcome: String
    public var services: [String]
    public var changes: JSONValue
    public var reason: String?
    public var detail: String?
    public var at: Date?

    public init(actor: String, requestID: String, action: String, outcome: String, services: [String],
                changes: JSONValue = .array([]), reason: String? = nil, detail: String? = nil, at: Date? = nil) {
        self.actor = actor
        self.requestID = requestID
        self.action = action
        self.outcome = outcome
        self.services = services
        self.changes = changes
        self.reason = reason
        self.detail = detail
        self.at = at
    }
}

/// Durable versions (PostgreSQL in production). Versions are numbered by the store, 1, 2, 3…
/// per service with no gaps, and every committed version is queued for publishing in the same
/// transaction (the outbox), so a crash between commit and publish loses nothing.
public protocol VersionStore: Sendable {
    /// Commits every planned change that alters its service's config, with the audit row (and
    /// the idempotency answer) in the same transaction. A change whose config equals the latest
    /// stores its override layer but makes no version. Throws `IdempotentReplay` when the key
    /// was already used; a conflicting request with the same key waits for the first to end.
    func commit(_ request: CommitRequest) async throws -> [CommitOutcome]
    func latestVersions() async throws -> [StoredVersion]
    func latest(_ service: ServiceName) async throws -> StoredVersion?
    func version(_ service: ServiceName, _ number: Int) async throws -> StoredVersion?
    /// Newest first; `before` excludes versions at or above it.
    func history(_ service: ServiceName, limit: Int, before: Int?) async throws -> [StoredVersion]
    /// The ops override layer of every service that has one.
    func overrideLayers() async throws -> [ServiceName: JSONValue]
    /// The override layer that was in force for a version.
    func overrideLayer(of service: ServiceName, version: Int) async throws -> JSONValue?
    /// Which layer and source set each value of a version, as it was committed: an object of JSON
    /// pointers to `{"layer", "source", "line"?, "column"?}`; nil for a version stored without them.
    func layers(of service: ServiceName, version: Int) async throws -> JSONValue?
    /// The stored answer to an earlier request with this idempotency key.
    func idempotentAnswer(_ key: String) async throws -> (requestHash: String, answer: String)?
}

/// The relay's lease: who publishes, and since which takeover.
public struct RelayLease: Sendable, Equatable {
    public var holder: String
    /// Grows on every takeover; a mark made under an older epoch is refused.
    public var epoch: Int64

    public init(holder: String, epoch: Int64) {
        self.holder = holder
        self.epoch = epoch
    }
}

/// How much is waiting to be published.
public struct OutboxStatus: Sendable, Equatable {
    public var backlog: Int
    /// Seconds since the oldest unpublished version was committed (nil when nothing waits).
    public var oldestAge: Double?

    public init(backlog: Int = 0, oldestAge: Double? = nil) {
        self.backlog = backlog
        self.oldestAge = oldestAge
    }
}

/// The outbox: versions committed but not yet published, and the lease that lets exactly one
/// node relay them. Times are the database's, never a node's clock (RELIABILITY P20).
public protocol OutboxStore: Sendable {
    /// Takes or renews the lease for `holder` (the epoch grows when it changes hands or had
    /// expired); nil while another node holds it.
    func acquireLease(holder: String, ttl: Duration) async throws -> RelayLease?
    func releaseLease(_ lease: RelayLease) async throws
    /// Per service, the newest queued version, the longest-waiting services first; services in
    /// `excluding` are skipped.
    func pendingOutbox(limit: Int, excluding: [ServiceName]) async throws -> [StoredVersion]
    /// Removes each service's queued versions up to its version, in one statement, only while
    /// `lease` is current; returns false (and changes nothing) when it is not.
    func markPublished(_ marks: [ServiceName: Int], lease: RelayLease) async throws -> Bool
    func outboxStatus() async throws -> OutboxStatus
    /// Queues these services' latest versions again (reconcile found the broker without them or
    /// holding another); always the latest at that moment, never an older one.
    func requeue(_ versions: [StoredVersion]) async throws
    /// The services with a version still queued (the relay will send it, or is sending it).
    func queuedServices() async throws -> Set<ServiceName>
    /// The broker holds `retained` of `service`, a version this database does not have (above its
    /// latest, or its number with another checksum): commits the released config again as the
    /// version above both, queued, audited, and marks the service diverged. nil when the database
    /// has meanwhile moved above the retained version itself.
    func repairDivergence(_ service: ServiceName, retained: (version: Int, checksum: String)) async throws -> StoredVersion?
    /// The services marked diverged, until their next write by an operator.
    func divergedServices() async throws -> [ServiceName: Divergence]
}

extension OutboxStore {
    public func markPublished(_ service: ServiceName, through version: Int, lease: RelayLease) async throws -> Bool {
        try await markPublished([service: version], lease: lease)
    }
}

/// What instances report: registrations, acks, health.
public protocol InstanceStore: Sendable {
    /// `version`: what the instance says it already runs (it only ever raises the applied version);
    /// `features`: what it registered with, replacing the last registration's.
    func recordRegistration(_ service: ServiceName, instance: String, version: Int?, features: [String]) async throws
    func recordAck(_ service: ServiceName, instance: String, version: Int, status: String, detail: String?) async throws
    /// `version`: the version the instance says it runs (its retained health carries it, so one
    /// whose ack was missed is still known to run it); it only ever raises the applied version.
    func recordHealth(_ service: ServiceName, instance: String, status: String, version: Int?) async throws
    func instances(_ service: ServiceName) async throws -> [InstanceRecord]
    /// Per service: how many instances are known and how many have not applied the latest version.
    func instanceCounts() async throws -> [ServiceName: (total: Int, lagging: Int)]
    /// Forgets instances silent for longer than `ttl`; returns how many.
    func expireInstances(olderThan ttl: Duration) async throws -> Int
}

/// The audit log and refusals.
public protocol AuditStore: Sendable {
    /// Records a refused change (nothing else is written).
    func recordRefusal(_ audit: AuditRecord) async throws
    func auditLog(service: ServiceName?, limit: Int) async throws -> [AuditRecord]
}

/// Export and import of every service's layers and versions.
public protocol ArchiveStore: Sendable {
    /// Every service with its override layer and its latest version, or all versions.
    func exportAll(history: Bool) async throws -> [ServiceExport]
    /// Stores exported services verbatim (numbers, times, checksums) in one transaction and queues
    /// each one's latest version for publishing. Refuses services that already exist.
    func importAll(_ services: [ServiceExport], audit: AuditRecord) async throws
}

/// Everything the engine stores, split by concern so each use case names only what it needs.
/// A rollout as stored: its machine, who started it and why, and when.
public struct RolloutRecord: Sendable, Equatable {
    public var machine: RolloutMachine
    public var actor: String
    public var reason: String?
    public var startedAt: Date
    public var updatedAt: Date
    /// Grows with every save: a save made from an older read changes nothing (`RolloutMoved`).
    public var revision: Int
    /// Each cohort member's answer when the rollout ended (nil while it runs: read from the instances).
    public var members: [RolloutMember]?

    public init(machine: RolloutMachine, actor: String, reason: String?, startedAt: Date, updatedAt: Date, revision: Int = 1,
                members: [RolloutMember]? = nil) {
        self.revision = revision
        self.members = members
        self.machine = machine
        self.actor = actor
        self.reason = reason
        self.startedAt = startedAt
        self.updatedAt = updatedAt
    }
}

/// A cohort member's answer to a rollout's candidate.
public struct RolloutMember: Sendable, Equatable {
    public var instance: String
    public var answer: RolloutMachine.Answer
    /// A rejection's detail, as the instance sent it.
    public var detail: String?

    public init(instance: String, answer: RolloutMachine.Answer, detail: String? = nil) {
        self.instance = instance
        self.answer = answer
        self.detail = detail
    }
}

/// Where rollouts live (CONTRACT.md §8), so one survives a restart: at most one running per service.
public protocol RolloutStore: Sendable {
    /// Stores a new rollout; `rolloutInProgress` when the service has one running. (A rollout is
    /// usually created by the commit of its candidate, `RolloutCommit.start`.)
    func createRollout(_ record: RolloutRecord) async throws
    /// Stores what the machine is now (step, cohort, phase), at `now`, with the audit row, if the
    /// stored revision is still `record.revision`; throws `RolloutMoved` otherwise.
    func saveRollout(_ record: RolloutRecord, now: Date, audit: AuditRecord?) async throws
    /// Releases a completed rollout's candidate in one transaction: the rollout saved as
    /// `saveRollout` does, the candidate made the released version and queued for publishing.
    func releaseRollout(_ record: RolloutRecord, now: Date, audit: AuditRecord?) async throws
    func rollout(id: String) async throws -> RolloutRecord?
    /// The service's rollouts, newest first.
    func rollouts(of service: ServiceName, limit: Int) async throws -> [RolloutRecord]
    /// Every rollout still running, on every service (what the relaying node advances).
    func runningRollouts() async throws -> [RolloutRecord]
    /// Every rollout changed at or after `since` (a new relaying node clears the topics of those that ended).
    func rolloutsUpdated(since: Date) async throws -> [RolloutRecord]
}

public typealias ConfbusStore = VersionStore & OutboxStore & InstanceStore & AuditStore & ArchiveStore & RolloutStore

/// The port to the message bus: publishes a service's resolved document, retained, and returns
/// once the broker has acknowledged it.
public protocol UpdatePublisher: Sendable {
    func publishUpdate(_ version: StoredVersion) async throws
    /// A short label for a failure, for `confbus_publish_failures_total{reason}` and the log.
    func failureReason(_ error: any Error) -> String
    /// Whether the bus answered with a refusal of this message (as opposed to not answering): the
    /// service's own fault, which must not make the node look stuck.
    func isRefusal(_ error: any Error) -> Bool
}

extension UpdatePublisher {
    public func failureReason(_ error: any Error) -> String { "error" }
    public func isRefusal(_ error: any Error) -> Bool { false }
}
