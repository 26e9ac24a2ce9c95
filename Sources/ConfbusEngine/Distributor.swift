import ConfbusCore
import Dispatch
import Foundation
import Logging
import Metrics
import Synchronization

/// The distributor's use cases: resolve the tree and commit what changed, keep the live cache,
/// and handle what instances send. It talks to storage and the bus only through its ports.
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
    public let resolver: ServiceResolver
    public let store: any VersionStore
    public let cache: LiveCache
    /// Wakes the outbox relay after a commit.
    public let outboxSignal: WakeSignal
    let logger: Logger
    private let broken = Mutex<[ServiceName: [ConfbusError]]>([:])
    /// Reloads run one at a time, so two never race to commit the same files.
    let reloadLock = AsyncLock()

    public init(options: Options, source: any ConfigSource, resolver: ServiceResolver, store: any VersionStore,
                cache: LiveCache = LiveCache(), outboxSignal: WakeSignal = WakeSignal(), logger: Logger) {
        self.options = options
        self.source = source
        self.resolver = resolver
        self.store = store
        self.cache = cache
        self.outboxSignal = outboxSignal
        self.logger = logger
    }

    /// Services whose files are broken right now (the last valid version stays live).
    public var brokenServices: [ServiceName: [ConfbusError]] { broken.withLock { $0 } }

    /// Fills the live cache from the store.
    public func loadCache() async throws {
        for version in try await store.latestVersions() { cache.offer(version) }
    }

    /// Reads the tree again and commits every service whose config changed.
    public func reload(author: String? = nil, reason: String? = nil) async throws -> ReloadReport {
        try await reloadLock.withLock {
            let tree = await resolveTree(overrides: try await store.overrideLayers())
            var report = ReloadReport(treeErrors: tree.treeErrors)
            var nowBroken: [ServiceName: [ConfbusError]] = [:]
            for resolution in tree.resolutions {
                guard let resolved = resolution.resolved else {
                    nowBroken[resolution.service] = resolution.errors
                    report.failed[resolution.service] = resolution.errors
                    for error in resolution.errors {
                        logger.warning("service config is invalid; the last valid version stays live",
                                       metadata: ["confbus.service": "\(resolution.service)", "error": "\(error)"])
                    }
                    continue
                }
                switch try await commit(resolved, author: author ?? options.author, reason: reason) {
                case .committed(let version): report.committed.append(version)
                case .unchanged: report.unchanged.append(resolution.service)
                }
            }
            broken.withLock { $0 = nowBroken }
            return report
        }
    }

    func commit(_ resolved: ResolvedService, author: String, reason: String?) async throws -> CommitOutcome {
        var layers: [String: JSONValue] = [:]
        for (pointer, provenance) in resolved.provenance {
            var entry: [String: JSONValue] = ["layer": .string(provenance.layer.description), "source": .string(provenance.source)]
            if let l = provenance.location { entry["line"] = .integer(l.line); entry["column"] = .integer(l.column) }
            layers[pointer.description] = .object(entry)
        }
        let outcome = try await store.commit(NewVersion(service: resolved.service, config: resolved.config, source: .files,
                                                        author: author, reason: reason, environment: options.environment,
                                                        layers: .object(layers)))
        committed([outcome])
        return outcome
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

    /// Tree resolution is CPU and file work: it runs off the cooperative pool.
    private func resolveTree(overrides: [ServiceName: JSONValue]) async -> TreeResolver.Report {
        let tree = TreeResolver(source: source, resolver: resolver)
        return await withCheckedContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(returning: tree.resolveAll(overrides: overrides)) }
        }
    }

    func resolveOne(_ service: ServiceName, override: JSONValue? = nil) async -> ServiceResolution {
        let (source, resolver, environment) = (self.source, self.resolver, options.environment)
        return await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(returning: resolver.resolve(source.load(service, environment: environment), source: source,
                                                                opsOverride: override))
            }
        }
    }

    func hasFiles(_ service: ServiceName) -> Bool {
        source.hasService(service)
    }

    // MARK: - Messages from instances

    /// `config/register/<service>`: records the instance; a service with files but no version yet
    /// gets its version 1. Throws the refusal to send back on `config/error/<service>`.
    public func register(_ service: ServiceName, payload: [UInt8]) async throws(ConfbusError) {
        let registration = try InstanceMessages.registration(payload, maxBytes: options.maxPayloadBytes)
        if cache.latest(service) == nil {
            guard hasFiles(service) else {
                throw ConfbusError(code: .unknownService, service: service.rawValue, message: "no service \"\(service)\" is configured")
            }
            try await createFirstVersion(service)
        }
        try await storing(service, "the registration") { try await self.store.recordRegistration(service, instance: registration.instance) }
    }

    private func createFirstVersion(_ service: ServiceName) async throws(ConfbusError) {
        do {
            try await reloadLock.withLock {
                if self.cache.latest(service) != nil { return }
                if let stored = try await self.store.latest(service) {
                    self.cache.offer(stored)
                    return
                }
                let resolution = await self.resolveOne(service)
                guard let resolved = resolution.resolved else {
                    throw resolution.errors.first ?? ConfbusError(code: .schemaViolation, service: service.rawValue, message: "the config is invalid")
                }
                _ = try await self.commit(resolved, author: self.options.author, reason: "first registration")
            }
        } catch let error as ConfbusError {
            throw ConfbusError(code: error.code, service: service.rawValue,
                               message: "the service's config is invalid, so no version exists yet: \(error.message)")
        } catch {
            throw ConfbusError(code: .storeUnavailable, service: service.rawValue, message: "version 1 could not be stored; retry")
        }
    }

    /// Runs a store write for an instance message; a failure is the refusal `store_unavailable`.
    private func storing(_ service: ServiceName, _ what: String, _ write: () async throws -> Void) async throws(ConfbusError) {
        do {
            try await write()
        } catch {
            throw ConfbusError(code: .storeUnavailable, service: service.rawValue, message: "\(what) could not be stored; retry")
        }
    }

    /// `config/ack/<service>/<instance>`.
    public func acknowledge(_ service: ServiceName, instance: String, payload: [UInt8]) async throws(ConfbusError) {
        guard InstanceMessages.isValidInstanceID(instance) else {
            throw ConfbusError(code: .invalidName, service: service.rawValue, message: "invalid instance id in the topic")
        }
        let ack = try InstanceMessages.ack(payload, maxBytes: options.maxPayloadBytes)
        guard cache.latest(service) != nil else {
            throw ConfbusError(code: .unknownService, service: service.rawValue, message: "no service \"\(service)\" is distributed")
        }
        try await storing(service, "the ack") {
            try await self.store.recordAck(service, instance: instance, version: ack.version, status: ack.status, detail: ack.detail)
        }
    }

    /// `config/health/<service>/<instance>`.
    public func health(_ service: ServiceName, instance: String, payload: [UInt8]) async throws(ConfbusError) {
        guard InstanceMessages.isValidInstanceID(instance) else {
            throw ConfbusError(code: .invalidName, service: service.rawValue, message: "invalid instance id in the topic")
        }
        let status = try InstanceMessages.health(payload, maxBytes: options.maxPayloadBytes)
        guard cache.latest(service) != nil || hasFiles(service) else {
            throw ConfbusError(code: .unknownService, service: service.rawValue, message: "no service \"\(service)\" is configured")
        }
        try await storing(service, "the health message") { try await self.store.recordHealth(service, instance: instance, status: status) }
    }
}

/// A lock for async code: one holder at a time, waiters in order, no thread blocked.
public final class AsyncLock: Sendable {
    private struct State {
        var locked = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state = Mutex(State())

    public init() {}

    public func withLock<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        defer { release() }
        return try await body()
    }

    private func acquire() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let granted = state.withLock { state -> Bool in
                if state.locked {
                    state.waiters.append(continuation)
                    return false
                }
                state.locked = true
                return true
            }
            if granted { continuation.resume() }
        }
    }

    private func release() {
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if state.waiters.isEmpty {
                state.locked = false
                return nil
            }
            return state.waiters.removeFirst()
        }
        next?.resume()
    }
}
