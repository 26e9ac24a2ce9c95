import ConfbusCore
import Foundation
import Logging
import Metrics
import Synchronization

/// The distributor's use cases over one commit pipeline: reload the tree (`Distributor+Reload`),
/// edit override layers and roll back (`+Operations`), batches (`Batch`), archive
/// (`ExportDocument`) and what instances send (`+Instances`). It talks to storage, the files and
/// the bus only through its ports.
public final class Distributor: Sendable {
    public struct Options: Sendable {
        public var environment: String
        public var maxPayloadBytes: Int
        public var author: String

        public init(environment: String, maxPayloadBytes: Int = 1 << 20, author: String = "confbus") {
            self.environment = environment
            self.maxPayloadBytes = maxPayloadBytes
            self.author = author
        }
    }

    /// What one reload did to each service.
    public struct ReloadReport: Sendable {
        public var committed: [StoredVersion] = []
        public var unchanged: [ServiceName] = []
        public var failed: [ServiceName: [ConfbusError]] = [:]
        public var treeErrors: [ConfbusError] = []
    }

    public let options: Options
    public let source: any ConfigSource
    public let tree: ConfigTree
    public let resolver: ServiceResolver
    public let store: any ConfbusStore
    public let cache: LiveCache
    public let limits: PublishLimits
    /// Wakes the outbox relay after a commit.
    public let outboxSignal: WakeSignal
    let logger: Logger
    private let broken = Mutex<[ServiceName: [ConfbusError]]>([:])
    /// Reloads run one at a time on a node (commits themselves are serialised by the store's row locks).
    let reloadLock = AsyncLock()

    public init(options: Options, source: any ConfigSource, resolver: ServiceResolver, store: any ConfbusStore,
                cache: LiveCache = LiveCache(), limits: PublishLimits? = nil, outboxSignal: WakeSignal = WakeSignal(), logger: Logger) {
        self.options = options
        self.source = source
        self.tree = ConfigTree(source: source, environment: options.environment)
        self.resolver = resolver
        self.store = store
        self.cache = cache
        self.limits = limits ?? PublishLimits(maxDocumentBytes: options.maxPayloadBytes)
        self.outboxSignal = outboxSignal
        self.logger = logger
    }

    /// Services whose files are invalid right now (their last valid version stays live).
    public var brokenServices: [ServiceName: [ConfbusError]] { broken.withLock { $0 } }

    func setBroken(_ service: ServiceName, _ errors: [ConfbusError]?) {
        broken.withLock { $0[service] = errors }
    }

    func replaceBroken(_ all: [ServiceName: [ConfbusError]]) {
        broken.withLock { $0 = all }
    }

    /// Fills the live cache from the store.
    public func loadCache() async throws {
        for version in try await store.latestVersions() { cache.offer(version) }
    }

    // MARK: - The commit pipeline

    /// Every write goes through here: the store locks the rows and calls `plan` with what it holds,
    /// then this counts the versions, serves them from memory at once and wakes the relay.
    func commit(_ request: CommitRequest) async throws -> [CommitOutcome] {
        let outcomes = try await store.commit(request)
        committed(outcomes)
        return outcomes
    }

    /// What follows every commit: count it, serve it from memory at once, wake the outbox relay.
    func committed(_ outcomes: [CommitOutcome]) {
        var any = false
        for case .committed(let version) in outcomes {
            any = true
            Counter(label: "confbus_versions_committed_total", dimensions: [("service", version.service.rawValue)]).increment()
            cache.offer(version)
            logger.info("committed a new version", metadata: ["confbus.service": "\(version.service)", "confbus.version": "\(version.version)"])
        }
        if any { outboxSignal.signal() }
    }

    /// Refuses a config that would make a new version on top of `base` and could not be
    /// published (§6b); one that equals the latest makes no version and needs no check.
    func checkPublishable(_ config: JSONValue, on base: CommitBase) throws(ConfbusError) {
        guard config.checksum != base.latestChecksum else { return }
        try limits.check(config, service: base.service, version: base.latestVersion + 1, environment: options.environment)
    }

    /// The change one resolution makes on top of `base`, checked for publishability (§6b).
    func change(_ resolved: ResolvedService, base: CommitBase, source: VersionSource, author: String, reason: String?,
                overrideLayer: JSONValue?) throws(ConfbusError) -> PlannedChange {
        try checkPublishable(resolved.config, on: base)
        return PlannedChange(version: NewVersion(service: base.service, config: resolved.config, source: source, author: author,
                                                 reason: reason, environment: options.environment,
                                                 layers: Self.provenanceJSON(resolved)),
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

    func hasFiles(_ service: ServiceName) async -> Bool {
        await tree.hasService(service)
    }
}
