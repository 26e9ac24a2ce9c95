import ConfbusCore
import Foundation

/// Where a version came from (CONTRACT.md §3).
public enum VersionSource: String, Sendable, CaseIterable {
    case files, override, batch, rollback, `import`
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
    public var config: JSONValue
    public var source: VersionSource
    public var author: String
    public var reason: String?
    public var environment: String
    /// Which layer each value came from, kept with the version for history.
    public var layers: JSONValue
    /// The batch this version belongs to, if any.
    public var batchID: UUID?

    public init(service: ServiceName, config: JSONValue, source: VersionSource, author: String, reason: String?,
                environment: String, layers: JSONValue = .null, batchID: UUID? = nil) {
        self.batchID = batchID
        self.service = service
        self.config = config
        self.source = source
        self.author = author
        self.reason = reason
        self.environment = environment
        self.layers = layers
    }

    public var checksum: String { config.checksum }
}

public enum CommitOutcome: Sendable, Equatable {
    /// A new version was committed (and queued for publishing in the same transaction).
    case committed(StoredVersion)
    /// The config equals the latest version: nothing was stored.
    case unchanged(StoredVersion)
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
    public var detail: String?

    public init(instance: String, firstSeen: Date, lastSeen: Date, health: String? = nil, healthAt: Date? = nil,
                appliedVersion: Int? = nil, ackStatus: String? = nil, detail: String? = nil) {
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

/// One service's change in an operator's request: the new override layer (nil leaves it as it
/// is) and the config it resolves to.
public struct PlannedChange: Sendable {
    public var version: NewVersion
    public var overrideLayer: JSONValue?
    /// The version the operator expects to replace (`If-Match`); a different latest is a conflict.
    public var expectedVersion: Int?

    public init(version: NewVersion, overrideLayer: JSONValue?, expectedVersion: Int? = nil) {
        self.version = version
        self.overrideLayer = overrideLayer
        self.expectedVersion = expectedVersion
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

    public init(service: ServiceName, overrideLayer: JSONValue?, versions: [Version]) {
        self.service = service
        self.overrideLayer = overrideLayer
        self.versions = versions
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

/// The port to durable storage (PostgreSQL in production). Versions are numbered by the store,
/// 1, 2, 3… per service with no gaps, and every committed version is queued for publishing in
/// the same transaction (the outbox), so a crash between commit and publish loses nothing.
public protocol VersionStore: Sendable {
    /// Commits `version` unless its config equals the service's latest.
    func commit(_ version: NewVersion) async throws -> CommitOutcome
    func latestVersions() async throws -> [StoredVersion]
    func latest(_ service: ServiceName) async throws -> StoredVersion?
    func version(_ service: ServiceName, _ number: Int) async throws -> StoredVersion?
    /// Newest first; `before` excludes versions at or above it.
    func history(_ service: ServiceName, limit: Int, before: Int?) async throws -> [StoredVersion]

    /// Publishes queued versions in commit order, removing each from the queue once `publish`
    /// returns. Returns how many were published. Only one node drains at a time.
    func drainOutbox(limit: Int, publish: @Sendable (StoredVersion) async throws -> Void) async throws -> Int
    func outboxDepth() async throws -> Int

    func recordRegistration(_ service: ServiceName, instance: String) async throws
    func recordAck(_ service: ServiceName, instance: String, version: Int, status: String, detail: String?) async throws
    func recordHealth(_ service: ServiceName, instance: String, status: String) async throws
    func instances(_ service: ServiceName) async throws -> [InstanceRecord]
    /// Per service: how many instances are known and how many have not applied the latest version.
    func instanceCounts() async throws -> [ServiceName: (total: Int, lagging: Int)]

    /// The ops override layer of every service that has one.
    func overrideLayers() async throws -> [ServiceName: JSONValue]
    /// The override layer that was in force for a version.
    func overrideLayer(of service: ServiceName, version: Int) async throws -> JSONValue?
    /// Applies every change in one transaction (all or nothing) with the audit row; a change whose
    /// config equals the latest stores its override layer but makes no version.
    func apply(_ changes: [PlannedChange], audit: AuditRecord, idempotency: IdempotencyRecord?) async throws -> [CommitOutcome]
    /// The stored answer to an earlier request with this idempotency key.
    func idempotentAnswer(_ key: String) async throws -> (requestHash: String, answer: String)?
    /// Records a refused change (nothing else is written).
    func recordRefusal(_ audit: AuditRecord) async throws
    func auditLog(service: ServiceName?, limit: Int) async throws -> [AuditRecord]

    /// Every service with its override layer and its latest version, or all versions.
    func exportAll(history: Bool) async throws -> [ServiceExport]
    /// Stores exported services verbatim (numbers, times, checksums) in one transaction and queues
    /// each one's latest version for publishing. Refuses services that already exist.
    func importAll(_ services: [ServiceExport], audit: AuditRecord) async throws
}

/// The port to the message bus: publishes a service's resolved document, retained, and returns
/// once the broker has acknowledged it.
public protocol UpdatePublisher: Sendable {
    func publishUpdate(_ version: StoredVersion) async throws
}
