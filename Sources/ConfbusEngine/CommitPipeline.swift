import ConfbusCore
import Foundation
import Logging
import Metrics
import Synchronization

/// The one way a version is made. Every use case that writes (reload, override edits, rollback,
/// batch, import, a first registration) builds a `CommitRequest` and hands it here: the store
/// locks the rows and calls its plan with what it holds; this counts the versions, serves them
/// from memory at once and wakes the relay. The checks every new version passes (§6b, If-Match)
/// and the audit of a refusal live here too, so no use case can skip them.
public final class CommitPipeline: Sendable {
    public struct Options: Sendable {
        public var environment: String
        public var maxPayloadBytes: Int
        /// The author of versions made from the files.
        public var author: String
        /// The key secrets are sealed under at rest (`secret_key_file`): an export with its secrets
        /// holds them sealed too.
        public var sealer: SecretSealer?

        public init(environment: String, maxPayloadBytes: Int = 1 << 20, author: String = "confbus", sealer: SecretSealer? = nil) {
            self.environment = environment
            self.maxPayloadBytes = maxPayloadBytes
            self.author = author
            self.sealer = sealer
        }
    }

    public let options: Options
    let store: any VersionStore & AuditStore
    let cache: LiveCache
    public let limits: PublishLimits
    public let signal: WakeSignal
    /// The versions this node just committed, for the relay to publish without reading the
    /// outbox first (the outbox rows are written all the same, and read when this misses).
    public let handoff = OutboxHandoff()
    /// The services this node is committing now (see `CommitsInFlight`).
    let inFlight = CommitsInFlight()
    let logger: Logger
    /// Reloads and imports run one at a time on a node (commits are serialised by the row locks).
    let treeLock = AsyncLock()

    public init(options: Options, store: any VersionStore & AuditStore, cache: LiveCache, limits: PublishLimits,
                signal: WakeSignal, logger: Logger) {
        self.options = options
        self.store = store
        self.cache = cache
        self.limits = limits
        self.signal = signal
        self.logger = logger
    }

    func commit(_ request: CommitRequest) async throws -> [CommitOutcome] {
        try await committing(request.services) {
            let outcomes = try await store.commit(request)
            committed(outcomes)
            return outcomes
        }
    }

    /// Runs a write of `services` that ends with its versions in the live cache (a commit, a
    /// rollout's release): meanwhile the listener takes their notifications for this node's own.
    func committing<T>(_ services: [ServiceName], _ write: () async throws -> T) async rethrows -> T {
        inFlight.begin(services)
        defer { inFlight.end(services) }
        return try await write()
    }

    /// What follows every commit: count it, serve it from memory at once, wake the outbox relay.
    func committed(_ outcomes: [CommitOutcome]) {
        var handed: [StoredVersion] = []
        for case .committed(let version) in outcomes {
            // By source, a handful of series: one per service was 10,000 series on a large tree,
            // and registering each new one copied the whole family (a tenth of the start-up).
            Counter(label: "confbus_versions_committed_total", dimensions: [("source", version.source.rawValue)]).increment()
            // A rollout's candidate is not released: neither served to everyone nor published on config/update.
            guard version.source != .rollout else { continue }
            handed.append(version)
            cache.offer(version)
            logger.info("committed a new version", metadata: ["confbus.service": "\(version.service)", "confbus.version": "\(version.version)"])
        }
        if !handed.isEmpty {
            handoff.offer(handed)
            signal.signal()
        }
    }

    /// A rollout's candidate, released: served to everyone and handed to the relay.
    func released(_ version: StoredVersion) {
        cache.offer(version)
        handoff.offer([version])
        signal.signal()
    }

    /// Refuses a config that would make a new version on top of `base` and could not be
    /// published (§6b); one that equals the latest makes no version and needs no check.
    func checkPublishable(_ config: JSONValue, checksum: String? = nil, on base: CommitBase) throws(ConfbusError) {
        let checksum = checksum ?? config.checksum
        guard checksum != base.latestChecksum else { return }
        try limits.check(config, checksum: checksum, service: base.service, version: base.latestVersion + 1, environment: options.environment)
    }

    /// The change one resolution makes on top of `base`, checked for publishability (§6b).
    func change(_ resolved: ResolvedService, base: CommitBase, source: VersionSource, author: String, reason: String?,
                overrideLayer: JSONValue?) throws(ConfbusError) -> PlannedChange {
        try checkPublishable(resolved.config, checksum: resolved.checksum, on: base)
        return PlannedChange(version: NewVersion(service: base.service, config: resolved.config, checksum: resolved.checksum,
                                                 source: source, author: author,
                                                 reason: reason, environment: options.environment,
                                                 layers: Self.provenanceJSON(resolved), secrets: resolved.secrets),
                             overrideLayer: overrideLayer)
    }

    static func provenanceJSON(_ resolved: ResolvedService) -> JSONValue {
        var layers: [String: JSONValue] = [:]
        for (pointer, provenance) in resolved.provenance {
            var entry: [String: JSONValue] = ["layer": .string(provenance.layer.description), "source": .string(provenance.source)]
            if let l = provenance.location { entry["line"] = .integer(l.line); entry["column"] = .integer(l.column) }
            layers[pointer.description] = .object(entry)
        }
        return .object(layers)
    }

    /// `If-Match`, checked against the version the row lock shows.
    static func check(_ expectedVersion: Int?, _ base: CommitBase) throws(ConfbusError) {
        if let expected = expectedVersion, expected != base.latestVersion {
            throw ConfbusError(code: .versionConflict, service: base.service.rawValue,
                               message: "\(base.service) is at version \(base.latestVersion), not \(expected) as If-Match expects")
        }
    }

    /// Runs a commit; a refusal of the content it raises (validation, §6b) is audited, then rethrown.
    func refusingAudited<T: Sendable>(_ audit: AuditRecord, _ body: @Sendable () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch let error as ConfbusError where [.schemaViolation, .invalidOverride, .tooLargeToPublish, .invalidValue, .invalidSchema,
                                                  .missingSchema].contains(error.code) {
            try? await refuse(audit, [error])
            throw error
        }
    }

    func refuse(_ audit: AuditRecord, _ errors: [ConfbusError]) async throws {
        var refused = audit
        refused.outcome = "refused"
        // Services, paths and rules only: a message never carries a config value.
        refused.detail = errors.flatMap(\.locatedIssues).map { issue in
            [issue.service, issue.instancePath.description, issue.message].compactMap { $0 }.joined(separator: ": ")
        }.joined(separator: "; ")
        try await store.recordRefusal(refused)
    }

    static func refusal(_ service: ServiceName, _ errors: [ConfbusError]) -> ConfbusError {
        if errors.count == 1, [.tooLargeToPublish, .invalidValue].contains(errors[0].code) { return errors[0] }
        let hasIssues = errors.contains { !$0.issues.isEmpty }
        return ConfbusError(code: hasIssues ? .schemaViolation : (errors.first?.code ?? .schemaViolation),
                            service: service.rawValue,
                            message: "the resulting config of \(service) is invalid; nothing was stored",
                            issues: hasIssues ? errors.flatMap(\.issues) : errors.flatMap(\.locatedIssues))
    }

    /// Whether the service exists: it has files, or a version (kept after its files were removed).
    func exists(_ service: ServiceName, in definitions: ServiceDefinitions) async -> Bool {
        if cache.latest(service) != nil { return true }
        return await definitions.tree.hasService(service)
    }
}

/// The services this node has a commit in flight for. PostgreSQL delivers a commit's notification
/// when the transaction commits, which can be before the committing node has the statement's
/// answer: the listener waits for this node's own commits of a service to settle before it decides
/// that a notified version is another node's and reads it.
final class CommitsInFlight: Sendable {
    private struct State {
        var counts: [ServiceName: Int] = [:]
        var waiters: [ServiceName: [UInt64: CheckedContinuation<Void, Never>]] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    func begin(_ services: [ServiceName]) {
        state.withLock { state in for service in services { state.counts[service, default: 0] += 1 } }
    }

    func end(_ services: [ServiceName]) {
        let settled = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            var settled: [CheckedContinuation<Void, Never>] = []
            for service in services {
                let left = (state.counts[service] ?? 1) - 1
                state.counts[service] = left > 0 ? left : nil
                if left <= 0 { settled += (state.waiters.removeValue(forKey: service) ?? [:]).values }
            }
            return settled
        }
        for waiter in settled { waiter.resume() }
    }

    /// Returns once no commit of `service` is in flight on this node (at once when none is), or
    /// when the waiting task is cancelled (a shutdown never waits for a commit to end here).
    func settled(_ service: ServiceName) async {
        let id = state.withLock { state in defer { state.nextID += 1 }; return state.nextID }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    guard state.counts[service] != nil, !Task.isCancelled else { return true }
                    state.waiters[service, default: [:]][id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                let waiter = state.waiters[service]?.removeValue(forKey: id)
                if state.waiters[service]?.isEmpty == true { state.waiters[service] = nil }
                return waiter
            }
            waiter?.resume()
        }
    }
}

/// Committed versions on their way from the commit pipeline to this node's relay.
public final class OutboxHandoff: Sendable {
    /// The newest per service: never more entries than services.
    private let versions = Mutex<[ServiceName: StoredVersion]>([:])

    public init() {}

    func offer(_ committed: [StoredVersion]) {
        versions.withLock { held in
            for version in committed where (held[version.service]?.version ?? 0) < version.version { held[version.service] = version }
        }
    }

    /// Everything handed over since the last call, the newest version of each service.
    public func take() -> [StoredVersion] {
        versions.withLock { held in defer { held = [:] }; return Array(held.values) }
    }
}
