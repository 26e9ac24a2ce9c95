import ConfbusCore
import Foundation

/// What the adapters read: the live cache first (pull never waits on the database), the store
/// for history, instances and the audit log, the files for schemas and secret paths. Nothing
/// here writes a version.
public struct ConfigReads: Sendable {
    let store: any VersionStore & InstanceStore & AuditStore & OutboxStore
    let cache: LiveCache
    let definitions: ServiceDefinitions
    let invalid: InvalidServices
    let inFlight: CommitsInFlight

    init(store: any VersionStore & InstanceStore & AuditStore & OutboxStore, cache: LiveCache, definitions: ServiceDefinitions,
         invalid: InvalidServices, inFlight: CommitsInFlight) {
        self.store = store
        self.cache = cache
        self.definitions = definitions
        self.invalid = invalid
        self.inFlight = inFlight
    }

    public var environment: String { definitions.environment }

    /// The latest version this node holds.
    public func latest(_ service: ServiceName) -> StoredVersion? { cache.latest(service) }

    /// Every service's latest version this node holds, by name.
    public var all: [StoredVersion] { cache.all }

    public var waiterCount: Int { cache.waiterCount }

    /// What changes on this node, as it happens (versions, instance reports, rollouts).
    public var changes: ChangeFeed { cache.changes }

    /// A version by number: from memory when it is the latest, else from the store.
    public func version(_ service: ServiceName, _ number: Int) async throws -> StoredVersion? {
        if let latest = cache.latest(service), latest.version == number { return latest }
        return try await store.version(service, number)
    }

    /// Waits up to `timeout` for a version above `after` (long-poll); nil on timeout.
    public func wait(for service: ServiceName, after: Int, timeout: Duration) async -> StoredVersion? {
        await cache.wait(for: service, after: after, timeout: timeout)
    }

    public func history(_ service: ServiceName, limit: Int, before: Int?) async throws -> [StoredVersion] {
        try await store.history(service, limit: limit, before: before)
    }

    public func instances(_ service: ServiceName) async throws -> [InstanceRecord] {
        try await store.instances(service)
    }

    public func instanceCounts() async throws -> [ServiceName: (total: Int, lagging: Int)] {
        try await store.instanceCounts()
    }

    public func auditLog(service: ServiceName?, limit: Int) async throws -> [AuditRecord] {
        try await store.auditLog(service: service, limit: limit)
    }

    public func idempotentAnswer(_ key: String) async throws -> (requestHash: String, answer: String)? {
        try await store.idempotentAnswer(key)
    }

    /// Services whose files are invalid right now, with their errors.
    public var invalidServices: [ServiceName: [ConfbusError]] { invalid.all }

    public func schema(_ service: ServiceName) async -> JSONValue? { await definitions.schema(service) }

    public func redaction(_ service: ServiceName) async -> Redaction { await definitions.redaction(service) }

    /// Where the service's schema puts feature flags.
    public func flagPaths(_ service: ServiceName) async -> [[String]] { await definitions.flagPaths(service) }

    /// The feature flags of a version (pointer → flag's JSON), by pointer: a flag the schema marks
    /// secret, or that holds a secret, is left out for every reader (CONTRACT.md §12).
    public func flags(of version: StoredVersion) async -> [(pointer: JSONPointer, flag: JSONValue)] {
        let secrets = await redaction(version.service)
        return FeatureFlag.pointers(in: version.config, paths: await flagPaths(version.service)).compactMap { pointer in
            guard !secrets.touches(pointer), let flag = version.config.value(at: pointer) else { return nil }
            return (pointer, flag)
        }
    }

    /// Which layer and source set each value of a version (`VersionStore.layers(of:version:)`).
    public func layers(_ service: ServiceName, version: Int) async throws -> JSONValue? {
        try await store.layers(of: service, version: version)
    }

    /// The override layer in force for the service's latest version (nil: none).
    public func overrideLayer(_ service: ServiceName) async throws -> JSONValue? {
        guard let latest = cache.latest(service) else { return nil }
        return try await store.overrideLayer(of: service, version: latest.version)
    }

    /// Services whose broker held a version the database lost, repaired (CONTRACT.md §11).
    public func divergedServices() async throws -> [ServiceName: Divergence] { try await store.divergedServices() }

    public func storedLatest() async throws -> [StoredVersion] { try await store.latestVersions() }

    /// Fills the live cache from the store (at start-up, and as a safety net under LISTEN).
    public func refreshAll() async throws {
        for version in try await store.latestVersions() { cache.offer(version) }
    }

    /// Loads one service's latest version (another node committed it).
    public func refresh(_ service: ServiceName) async throws {
        if let latest = try await store.latest(service) { cache.offer(latest) }
    }

    /// A notification that `version` of `service` was committed: read it unless it is held once
    /// this node's own commits of the service have settled (the notification of a commit of ours
    /// can arrive before the commit's answer, and the version is then ours, not to be read back).
    public func refresh(_ service: ServiceName, notified version: Int) async throws {
        if (cache.latest(service)?.version ?? 0) >= version { return }
        await inFlight.settled(service)
        if (cache.latest(service)?.version ?? 0) >= version { return }
        try await refresh(service)
    }
}
