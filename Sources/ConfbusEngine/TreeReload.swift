import ConfbusCore
import Foundation
import Logging

/// Reading the tree again (`POST /v1/reload`, SIGHUP, start-up) and a service's first version
/// (its first registration). Each service commits on its own, so one failure never aborts the
/// rest, and each resolves again under its row lock with the override layer stored at that
/// moment, so a reload can never revert another node's concurrent edit.
public struct TreeReload: Sendable {
    /// What one reload did to each service.
    public struct Report: Sendable {
        public var committed: [StoredVersion] = []
        public var unchanged: [ServiceName] = []
        public var failed: [ServiceName: [ConfbusError]] = [:]
        public var treeErrors: [ConfbusError] = []
        /// Services whose files changed while a rollout of theirs runs: committed after it ends.
        public var deferred: [ServiceName] = []
    }

    let pipeline: CommitPipeline
    let definitions: ServiceDefinitions
    let store: any VersionStore
    let invalid: InvalidServices
    /// What each service last resolved to, by the identity of its files and override layer: a
    /// reload of an unchanged tree stats the files and resolves nothing.
    let memo = ResolutionMemo()

    public init(pipeline: CommitPipeline, definitions: ServiceDefinitions, store: any VersionStore, invalid: InvalidServices) {
        self.pipeline = pipeline
        self.definitions = definitions
        self.store = store
        self.invalid = invalid
    }

    public func reload(author: String? = nil, reason: String? = nil) async throws -> Report {
        try await pipeline.treeLock.withLock {
            let tree = definitions.tree
            let (services, treeErrors) = await tree.listServices()
            // A first resolution with the layers as they are now finds what may have changed; the
            // commit below resolves again only when the layer under the lock is another one.
            let hints = try await store.overrideLayers()
            var report = Report(treeErrors: treeErrors)
            var nowInvalid: [ServiceName: [ConfbusError]] = [:]
            let author = author ?? pipeline.options.author
            // The tree is read in chunks: each chunk's services are stat'ed and, unless their files
            // and layer are what they were when they last resolved to the version served now,
            // loaded and resolved at once on every core, then committed before the next chunk is
            // read. So a start-up of ten thousand services never holds more than a chunk of parsed
            // files and resolutions, and an unchanged service reads no file at all.
            for chunkStart in stride(from: 0, to: services.count, by: Self.chunkSize) {
                let chunk = Array(services[chunkStart..<min(chunkStart + Self.chunkSize, services.count)])
                let loaded = await resolveUnlessUnchanged(chunk, hints: hints)
                let keyByService = Dictionary(uniqueKeysWithValues: loaded.map { ($0.service, $0.key) })
                var changed: [(files: ServiceFiles, resolved: ResolvedService)] = []
                for entry in loaded {
                    let service = entry.service
                    guard let files = entry.files, let resolution = entry.resolution else {
                        report.unchanged.append(service)
                        continue
                    }
                    guard let resolved = resolution.resolved else {
                        nowInvalid[service] = resolution.errors
                        report.failed[service] = resolution.errors
                        logInvalid(service, resolution.errors)
                        continue
                    }
                    if let latest = pipeline.cache.latest(service), latest.checksum == resolved.checksum {
                        if let key = keyByService[service] ?? nil { memo.record(service, key: key, checksum: resolved.checksum) }
                        report.unchanged.append(service)
                        continue
                    }
                    changed.append((files, resolved))
                }
                // The changed services commit in groups, each group in one transaction of a few
                // statements; a service that turns out invalid under the lock is left out of its
                // group, and a group the database refuses is committed again one service at a time,
                // so one failure never aborts the rest.
                for start in stride(from: 0, to: changed.count, by: Self.groupSize) {
                    let group = Array(changed[start..<min(start + Self.groupSize, changed.count)])
                    let (outcomes, refused) = try await commitGroupOrEach(group, hints: hints, author: author, reason: reason)
                    let resolvedBy = Dictionary(uniqueKeysWithValues: group.map { ($0.files.name, $0.resolved.checksum) })
                    for outcome in outcomes {
                        let service = outcome.version.service
                        // The memo holds only what was resolved with the layer the commit saw.
                        if let key = keyByService[service] ?? nil, outcome.version.checksum == resolvedBy[service] {
                            memo.record(service, key: key, checksum: outcome.version.checksum)
                        }
                        switch outcome {
                        case .committed(let version): report.committed.append(version)
                        case .unchanged: report.unchanged.append(service)
                        }
                    }
                    for (service, error) in refused {
                        // Not invalid: the file change waits for the rollout's end (which reloads).
                        if error.code == .rolloutInProgress {
                            report.deferred.append(service)
                            continue
                        }
                        nowInvalid[service] = [error]
                        report.failed[service] = [error]
                        logInvalid(service, [error])
                    }
                }
            }
            invalid.replace(nowInvalid)
            return report
        }
    }

    /// Each service of `chunk`, on every core: unchanged (nil files) when its files' stat identity and
    /// layer are what it last resolved to the version served now, else loaded and resolved.
    private func resolveUnlessUnchanged(_ chunk: [ServiceName], hints: [ServiceName: JSONValue])
        async -> [(service: ServiceName, key: String?, files: ServiceFiles?, resolution: ServiceResolution?)] {
        let (memo, cache, definitions) = (memo, pipeline.cache, definitions)
        return await definitions.tree.compute {
            chunk.concurrentMap { service in
                let source = definitions.tree.source
                let statKey = ResolutionMemo.key(identity: source.identity(of: service, environment: definitions.environment), layer: hints[service])
                if let statKey, let checksum = memo.checksum(service, key: statKey), cache.latest(service)?.checksum == checksum {
                    return (service, statKey, nil, nil)
                }
                let files = source.load(service, environment: definitions.environment)
                return (service, ResolutionMemo.key(files, layer: hints[service]), files.releasingSchema,
                        definitions.resolve(files, layer: hints[service]))
            }
        }
    }

    /// Commits a group in one transaction; when the database refuses a group of several, each
    /// service on its own. Returns the outcomes and each service's refusal; an error that is not a
    /// refusal (the database is unreachable) ends the reload.
    private func commitGroupOrEach(_ group: [(files: ServiceFiles, resolved: ResolvedService)], hints: [ServiceName: JSONValue],
                                   author: String, reason: String?) async throws -> ([CommitOutcome], [ServiceName: ConfbusError]) {
        let entries = group.map { (files: $0.files, earlier: (layer: hints[$0.files.name], resolved: $0.resolved)) }
        do {
            return try await commitGroup(entries, author: author, reason: reason)
        } catch where group.count > 1 {
            var outcomes: [CommitOutcome] = []
            var refused: [ServiceName: ConfbusError] = [:]
            for entry in entries {
                do {
                    outcomes.append(try await commitFiles(entry.files, author: author, reason: reason, resolvedWith: entry.earlier))
                } catch let error as ConfbusError {
                    refused[entry.files.name] = error
                }
            }
            return (outcomes, refused)
        } catch let error as ConfbusError {
            return ([], [group[0].files.name: error])
        }
    }

    private func logInvalid(_ service: ServiceName, _ errors: [ConfbusError]) {
        for error in errors {
            pipeline.logger.warning("service config is invalid; the last valid version stays live",
                                    metadata: ["confbus.service": "\(service)", "error.code": "\(error.code)", "error": "\(error.message)"])
        }
    }

    /// A resolution made before the lock, with the override layer it was made with.
    typealias Earlier = (layer: JSONValue?, resolved: ResolvedService)

    /// What `files` resolve to on top of `base` (the row locked): `earlier` is reused when the
    /// stored layer is still the one it was made with, so a reload resolves each changed service
    /// once, not twice. Throws the resolution's first error, or a §6b refusal.
    private func change(_ files: ServiceFiles, base: CommitBase, earlier: Earlier?, author: String,
                        reason: String?) throws(ConfbusError) -> PlannedChange {
        let resolved: ResolvedService
        if let earlier, earlier.layer == base.overrideLayer {
            resolved = earlier.resolved
        } else {
            let resolution = definitions.resolve(files, layer: base.overrideLayer)
            guard let fresh = resolution.resolved else {
                throw resolution.errors.first ?? ConfbusError(code: .schemaViolation, service: files.name.rawValue, message: "the config is invalid")
            }
            resolved = fresh
        }
        return try pipeline.change(resolved, base: base, source: .files, author: author, reason: reason, overrideLayer: nil)
    }

    /// Commits what `files` resolve to with the override layer stored under the row lock; throws
    /// the refusal when the result is invalid.
    func commitFiles(_ files: ServiceFiles, author: String, reason: String?, resolvedWith earlier: Earlier? = nil) async throws -> CommitOutcome {
        let audit = AuditRecord(actor: author, requestID: "files", action: "files", outcome: "accepted",
                                services: [files.name.rawValue], reason: reason)
        return try await pipeline.commit(CommitRequest(services: [files.name], audit: audit) { bases in
            [try self.change(files, base: bases[0], earlier: earlier, author: author, reason: reason)]
        })[0]
    }

    static let groupSize = 256
    /// How many services a reload reads and resolves before committing them.
    static let chunkSize = 1024

    static func waitsForRollout(_ service: ServiceName) -> ConfbusError {
        ConfbusError(code: .rolloutInProgress, service: service.rawValue,
                     message: "\(service) has a rollout running; its file change is committed when the rollout ends")
    }

    /// Commits a group of services in one transaction, each planned as `commitFiles` plans one; the
    /// ones that turn out invalid under the lock are left out and returned with their refusal.
    func commitGroup(_ entries: [(files: ServiceFiles, earlier: Earlier)], author: String,
                     reason: String?) async throws -> ([CommitOutcome], [ServiceName: ConfbusError]) {
        let services = entries.map(\.files.name)
        let byService = Dictionary(uniqueKeysWithValues: entries.map { ($0.files.name, $0) })
        let refused = Mutex<[ServiceName: ConfbusError]>([:])
        let audit = AuditRecord(actor: author, requestID: "files", action: "files", outcome: "accepted",
                                services: services.map(\.rawValue), reason: reason)
        let outcomes = try await pipeline.commit(CommitRequest(services: services, audit: audit) { bases in
            bases.compactMap { base -> PlannedChange? in
                guard let entry = byService[base.service] else { return nil }
                if base.inRollout {
                    refused.withLock { $0[base.service] = Self.waitsForRollout(base.service) }
                    return nil
                }
                do throws(ConfbusError) {
                    return try self.change(entry.files, base: base, earlier: entry.earlier, author: author, reason: reason)
                } catch {
                    refused.withLock { $0[base.service] = error }
                    return nil
                }
            }
        })
        return (outcomes, refused.withLock { $0 })
    }

    /// The first registration of a service with files but no version stores its version 1.
    func createFirstVersion(_ service: ServiceName) async throws(ConfbusError) {
        do {
            if let stored = try await store.latest(service) {
                pipeline.cache.offer(stored)
                return
            }
            _ = try await commitFiles(await definitions.tree.load(service), author: pipeline.options.author, reason: "first registration")
        } catch let error as ConfbusError {
            invalid.set(service, [error])
            throw ConfbusError(code: error.code, service: service.rawValue,
                               message: "the service's config is invalid, so no version exists yet: \(error.message)")
        } catch {
            throw ConfbusError(code: .storeUnavailable, service: service.rawValue, message: "version 1 could not be stored; retry")
        }
    }
}

/// The checksum each service last resolved to, by the identity of its files and override layer.
final class ResolutionMemo: Sendable {
    private let entries = Mutex<[ServiceName: (key: String, checksum: String)]>([:])

    /// nil when the files' identity is unknown (a source that cannot tell, or a file just written).
    static func key(_ files: ServiceFiles, layer: JSONValue?) -> String? {
        key(identity: files.identity, layer: layer)
    }

    static func key(identity: String?, layer: JSONValue?) -> String? {
        identity.map { "\($0)#\(layer?.checksum ?? "-")" }
    }

    func checksum(_ service: ServiceName, key: String) -> String? {
        entries.withLock { $0[service] }.flatMap { $0.key == key ? $0.checksum : nil }
    }

    func record(_ service: ServiceName, key: String, checksum: String) {
        entries.withLock { $0[service] = (key, checksum) }
    }
}

import Synchronization
