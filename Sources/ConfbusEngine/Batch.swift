import ConfbusCore
import Foundation
import Synchronization

/// `POST /v1/batch` and `POST /v1/validate` (CONTRACT.md §5): changes to many services that land
/// together or not at all.
public struct BatchRequest: Sendable {
    public enum Change: Sendable {
        case override(JSONValue)
        case patch(JSONValue)
        case rollback(Int)
    }

    public struct Entry: Sendable {
        public var service: ServiceName
        public var change: Change
    }

    public static let maximumEntries = 1000

    public var reason: String?
    public var entries: [Entry]
    public var dryRun: Bool

    /// Reads the body's JSON value; every problem is a 400 with the entry's index.
    public init(_ body: JSONValue) throws(ConfbusError) {
        guard case .object(let object) = body else { throw Self.bad("the body must be a JSON object") }
        switch object["reason"] {
        case nil, .null: reason = nil
        case .string(let r): reason = r
        default: throw Self.bad("\"reason\" must be a string")
        }
        switch object["dry_run"] {
        case nil, .null: dryRun = false
        case .bool(let b): dryRun = b
        default: throw Self.bad("\"dry_run\" must be a boolean")
        }
        guard case .array(let updates) = object["updates"], !updates.isEmpty else { throw Self.bad("\"updates\" must be a non-empty array") }
        guard updates.count <= Self.maximumEntries else {
            throw ConfbusError(code: .documentTooLarge, message: "a batch holds at most \(Self.maximumEntries) updates, not \(updates.count)")
        }
        var entries: [Entry] = []
        var seen = Set<ServiceName>()
        for (index, update) in updates.enumerated() {
            guard case .object(let u) = update, case .string(let raw) = u["service"] else {
                throw Self.bad("updates[\(index)] needs a \"service\"")
            }
            guard let service = try? ServiceName(validating: raw) else {
                throw ConfbusError(code: .invalidName, message: "updates[\(index)]: invalid service name")
            }
            guard seen.insert(service).inserted else {
                throw ConfbusError(code: .invalidValue, message: "updates[\(index)]: \(service) appears more than once (duplicate_service)")
            }
            let kinds = ["override", "patch", "rollback"].filter { u[$0] != nil }
            guard kinds.count == 1 else { throw Self.bad("updates[\(index)] needs exactly one of override, patch or rollback") }
            switch (kinds[0], u[kinds[0]]!) {
            case ("override", .object(let o)): entries.append(Entry(service: service, change: .override(.object(o))))
            case ("patch", .object(let o)): entries.append(Entry(service: service, change: .patch(.object(o))))
            case ("rollback", let n) where (n.integralValue ?? 0) >= 1: entries.append(Entry(service: service, change: .rollback(n.integralValue!)))
            default: throw Self.bad("updates[\(index)].\(kinds[0]) has the wrong type")
            }
        }
        self.entries = entries
    }

    static func bad(_ message: String) -> ConfbusError { ConfbusError(code: .badRequest, message: message) }
}

/// What a batch did, or would do on a dry run.
public struct BatchResult: Sendable {
    public struct Item: Sendable {
        public var service: ServiceName
        public var document: JSONValue
        public var changed: Bool
        public var changes: [ConfigChange]
    }

    public var batchID: UUID?
    public var dryRun: Bool
    public var items: [Item]

    public var json: JSONValue {
        var object: [String: JSONValue] = [
            "dry_run": .bool(dryRun),
            "results": .array(items.map { item in
                .object(["service": .string(item.service.rawValue), "changed": .bool(item.changed),
                         "document": item.document, "changes": .array(item.changes.map(\.json))])
            }),
        ]
        if let batchID { object["batch_id"] = .string(batchID.uuidString.lowercased()) }
        return .object(object)
    }
}

/// Changes to many services that land together or not at all, each computed from the override
/// layer stored under its row lock.
public struct BatchUpdates: Sendable {
    let pipeline: CommitPipeline
    let definitions: ServiceDefinitions
    let store: any VersionStore

    public init(pipeline: CommitPipeline, definitions: ServiceDefinitions, store: any VersionStore) {
        self.pipeline = pipeline
        self.definitions = definitions
        self.store = store
    }

    var cache: LiveCache { pipeline.cache }
    var environment: String { pipeline.options.environment }

    /// Resolves and validates every entry; on a dry run returns the documents and diffs, otherwise
    /// commits them all in one transaction with one batch id and one audit row.
    public func apply(_ batch: BatchRequest, by context: OperatorContext,
                           idempotencyKey: String? = nil, requestHash: String = "") async throws -> BatchResult {
        let services = batch.entries.map(\.service)
        // One listing of the tree for the whole batch (not one per entry).
        let withFiles = Set(await definitions.tree.listServices().services)
        for (index, entry) in batch.entries.enumerated() where !withFiles.contains(entry.service) && cache.latest(entry.service) == nil {
            throw ConfbusError(code: .notFound, service: entry.service.rawValue, message: "updates[\(index)]: no service \"\(entry.service)\" is configured")
        }
        let files = Dictionary(uniqueKeysWithValues: await definitions.tree.loadAll(services.filter(withFiles.contains)).map { ($0.name, $0) })
        var targets: [Int: (StoredVersion, JSONValue)] = [:]
        for (index, entry) in batch.entries.enumerated() {
            guard case .rollback(let target) = entry.change else { continue }
            guard let old = try await store.version(entry.service, target) else {
                throw ConfbusError(code: .notFound, service: entry.service.rawValue, message: "updates[\(index)]: \(entry.service) has no version \(target)")
            }
            targets[index] = (old, try await store.overrideLayer(of: entry.service, version: target) ?? .object([:]))
        }
        let rollbackTargets = targets
        let batchID = UUID()
        let reason = batch.reason ?? context.reason
        let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: batch.dryRun ? "batch.dry_run" : "batch",
                                outcome: "accepted", services: services.map(\.rawValue), reason: reason)
        let planned = Mutex<[BatchResult.Item]>([])
        let plan: @Sendable ([CommitBase]) throws -> [PlannedChange] = { bases in
            let (changes, items) = try self.planBatch(batch, bases: bases, files: files, targets: rollbackTargets, batchID: batchID, author: context.actor,
                                                      reason: reason)
            planned.withLock { $0 = items }
            return changes
        }
        if batch.dryRun {
            let layers = try await store.overrideLayers()
            let bases = services.map { s in
                CommitBase(service: s, latestVersion: cache.latest(s)?.version ?? 0, latestChecksum: cache.latest(s)?.checksum, overrideLayer: layers[s])
            }
            _ = try plan(bases)
            return BatchResult(batchID: nil, dryRun: true, items: planned.withLock { $0 })
        }
        let idempotency = idempotencyKey.map { key in
            IdempotencyRecord(key: key, requestHash: requestHash) { outcomes in
                BatchResult(batchID: batchID, dryRun: false, items: Self.settle(planned.withLock { $0 }, outcomes)).json.serialized(.canonical)
            }
        }
        return try await pipeline.refusingAudited(audit) {
            let outcomes = try await self.pipeline.commit(CommitRequest(services: services, audit: audit, idempotency: idempotency, plan: plan))
            return BatchResult(batchID: batchID, dryRun: false, items: Self.settle(planned.withLock { $0 }, outcomes))
        }
    }

    /// Every entry's change on top of its base, or one refusal naming every failing service, index and path.
    func planBatch(_ batch: BatchRequest, bases: [CommitBase], files: [ServiceName: ServiceFiles], targets: [Int: (StoredVersion, JSONValue)],
                   batchID: UUID, author: String, reason: String?) throws -> ([PlannedChange], [BatchResult.Item]) {
        var changes: [PlannedChange] = []
        var items: [BatchResult.Item] = []
        var issues: [ValidationIssue] = []
        var failed: [String] = []
        var tooLarge: ConfbusError?
        let layers: [JSONValue?] = batch.entries.enumerated().map { index, entry in
            switch entry.change {
            case .override(let value): value
            case .patch(let patch): MergePatch.apply(patch, to: bases[index].overrideLayer ?? .object([:]))
            case .rollback: nil
            }
        }
        // Resolve the override and patch entries on every core; the loop below reads them in order.
        let resolutions: [ServiceResolution?] = Array(zip(batch.entries, layers)).concurrentMap { entry, layer in
            guard let layer, let serviceFiles = files[entry.service] else { return nil }
            return definitions.resolve(serviceFiles, layer: layer)
        }
        for (index, entry) in batch.entries.enumerated() {
            let service = entry.service
            let base = bases[index]
            var config = JSONValue.object([:])
            var resolvedChecksum: String?
            var secrets = definitions.knownSecrets(service)
            var layer = layers[index]
            var source = VersionSource.batch
            var errors: [ConfbusError] = []
            switch entry.change {
            case .override, .patch:
                let resolution = resolutions[index]
                config = resolution?.resolved?.config ?? resolution?.merged?.config ?? .object([:])
                resolvedChecksum = resolution?.resolved?.checksum
                if let resolved = resolution?.resolved { secrets = resolved.secrets }
                errors = resolution?.errors ?? [ConfbusError(code: .notFound, service: service.rawValue, message: "\(service) has no files to resolve")]
            case .rollback:
                guard let (old, oldLayer) = targets[index] else { continue }
                config = old.config
                resolvedChecksum = old.checksum
                layer = oldLayer
                source = .rollback
                errors = files[service].map { definitions.validate(old.config, files: $0) } ?? []
            }
            if errors.isEmpty {
                do {
                    try pipeline.checkPublishable(config, checksum: resolvedChecksum, on: base)
                } catch {
                    if error.code == .tooLargeToPublish { tooLarge = tooLarge ?? error }
                    errors = [error]
                }
            }
            if !errors.isEmpty {
                failed.append(service.rawValue)
                issues += errors.flatMap(\.locatedIssues).map { issue in
                    var i = issue
                    i.message = "\(service) (updates[\(index)]): \(issue.message)"
                    i.service = service.rawValue
                    i.index = index
                    return i
                }
                continue
            }
            // The resolution's checksum: computing it again serializes and hashes the config each time.
            let checksum = resolvedChecksum ?? config.checksum
            let old = base.latestChecksum == nil ? nil : cache.latest(service)
            let document: JSONValue = .object([
                "service": .string(service.rawValue), "environment": .string(environment),
                "checksum": .string(checksum), "config": config,
            ])
            items.append(.init(service: service, document: document, changed: base.latestChecksum != checksum,
                               changes: ConfigDiff.changes(from: old?.config ?? .object([:]), to: config)))
            changes.append(PlannedChange(version: NewVersion(service: service, config: config, checksum: checksum, source: source, author: author, reason: reason,
                                                             environment: environment, batchID: batchID, secrets: secrets),
                                         overrideLayer: layer))
        }
        guard issues.isEmpty else {
            if let tooLarge, failed.count == 1 {
                var error = tooLarge
                error.issues = issues
                throw error
            }
            throw ConfbusError(code: .schemaViolation, message: "the batch is refused: \(failed.joined(separator: ", ")) would be invalid; nothing was stored",
                               issues: issues)
        }
        return (changes, items)
    }

    /// The planned items with the stored documents the commit produced.
    static func settle(_ items: [BatchResult.Item], _ outcomes: [CommitOutcome]) -> [BatchResult.Item] {
        var items = items
        for (n, outcome) in outcomes.enumerated() where n < items.count {
            switch outcome {
            case .committed(let v): items[n].document = v.document; items[n].changed = true
            case .unchanged(let v): items[n].document = v.document; items[n].changed = false
            }
        }
        return items
    }
}
