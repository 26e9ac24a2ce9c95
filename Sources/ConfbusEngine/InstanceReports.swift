import ConfbusCore

/// What instances send on the bus (CONTRACT.md §4): registrations, acks, health. Each method
/// throws the refusal to send back on `config/error/<service>`.
public struct InstanceReports: Sendable {
    let store: any InstanceStore & VersionStore
    let cache: LiveCache
    let definitions: ServiceDefinitions
    let reload: TreeReload
    public let maxPayloadBytes: Int
    /// The running rollouts: a cohort member acks (and reports) the candidate, above the released version.
    let board: RolloutBoard

    public init(store: any InstanceStore & VersionStore, cache: LiveCache, definitions: ServiceDefinitions, reload: TreeReload,
                maxPayloadBytes: Int, board: RolloutBoard) {
        self.board = board
        self.store = store
        self.cache = cache
        self.definitions = definitions
        self.reload = reload
        self.maxPayloadBytes = maxPayloadBytes
    }

    /// `config/register/<service>`: records the instance; a service with files but no version yet
    /// gets its version 1.
    public func register(_ service: ServiceName, payload: [UInt8]) async throws(ConfbusError) {
        let registration = try InstanceMessages.registration(payload, maxBytes: maxPayloadBytes)
        try await register(service, registration)
    }

    public func register(_ service: ServiceName, _ registration: InstanceMessages.Registration) async throws(ConfbusError) {
        if cache.latest(service) == nil {
            try await requireFiles(service)
            try await reload.createFirstVersion(service)
        }
        let running = knownVersion(registration.version, of: service)
        try await storing(service, "the registration") {
            try await self.store.recordRegistration(service, instance: registration.instance, version: running, features: registration.features)
        }
    }

    /// `config/ack/<service>/<instance>`: an ack for a version that does not exist is refused.
    public func acknowledge(_ service: ServiceName, instance: String, payload: [UInt8]) async throws(ConfbusError) {
        try Self.checkInstance(service, instance)
        let ack = try InstanceMessages.ack(payload, maxBytes: maxPayloadBytes)
        guard var latest = newestKnown(service) else {
            throw ConfbusError(code: .unknownService, service: service.rawValue, message: "no service \"\(service)\" is distributed")
        }
        if ack.version > latest {
            // Committed a moment ago on another node (a version, or a rollout's candidate this node's
            // board has not heard of yet): it exists if the store has it.
            if let stored = try? await store.latest(service) { cache.offer(stored) }
            if (try? await store.version(service, ack.version)) != nil { latest = ack.version }
        }
        guard ack.version <= latest else {
            throw ConfbusError(code: .invalidPayload, service: service.rawValue,
                               message: "version \(ack.version) does not exist; the latest is \(latest)")
        }
        try await storing(service, "the ack") {
            try await self.store.recordAck(service, instance: instance, version: ack.version, status: ack.status, detail: ack.detail)
        }
    }

    /// `config/health/<service>/<instance>`.
    public func health(_ service: ServiceName, instance: String, payload: [UInt8]) async throws(ConfbusError) {
        try Self.checkInstance(service, instance)
        let health = try InstanceMessages.health(payload, maxBytes: maxPayloadBytes)
        if cache.latest(service) == nil { try await requireFiles(service) }
        let running = knownVersion(health.version, of: service)
        try await storing(service, "the health message") {
            try await self.store.recordHealth(service, instance: instance, status: health.status, version: running)
        }
    }

    /// The version an instance says it runs (registration, health), when this node knows it; one it
    /// does not know (yet) is not recorded: the next message or ack will be.
    private func knownVersion(_ version: Int?, of service: ServiceName) -> Int? {
        guard let version, version >= 1, version <= (newestKnown(service) ?? 0) else { return nil }
        return version
    }

    /// The newest version an instance may run: the released one, or a running rollout's candidate.
    private func newestKnown(_ service: ServiceName) -> Int? {
        let released = cache.latest(service)?.version
        guard let candidate = board.candidateVersion(service) else { return released }
        return max(released ?? 0, candidate)
    }

    private static func checkInstance(_ service: ServiceName, _ instance: String) throws(ConfbusError) {
        guard InstanceMessages.isValidInstanceID(instance) else {
            throw ConfbusError(code: .invalidName, service: service.rawValue, message: "invalid instance id in the topic")
        }
    }

    private func requireFiles(_ service: ServiceName) async throws(ConfbusError) {
        guard await definitions.tree.hasService(service) else {
            throw ConfbusError(code: .unknownService, service: service.rawValue, message: "no service \"\(service)\" is configured")
        }
    }

    /// Runs a store write for an instance message; a failure is the refusal `store_unavailable`.
    /// A stored one is told to the node's live readers.
    private func storing(_ service: ServiceName, _ what: String, _ write: () async throws -> Void) async throws(ConfbusError) {
        do {
            try await write()
        } catch {
            throw ConfbusError(code: .storeUnavailable, service: service.rawValue, message: "\(what) could not be stored; retry")
        }
        cache.changes.publish(.init(.instance, service))
    }
}
