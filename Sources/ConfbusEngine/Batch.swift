import ConfbusCore
import Foundation

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
                throw ConfbusError(code: .badRequest, message: "updates[\(index)]: \(service) appears more than once (duplicate_service)")
            }
            let kinds = ["override", "patch", "rollback"].filter { u[$0] != nil }
            guard kinds.count == 1 else { throw Self.bad("updates[\(index)] needs exactly one of override, patch or rollback") }
            switch (kinds[0], u[kinds[0]]!) {
            case ("override", .object(let o)): entries.append(Entry(service: service, change: .override(.object(o))))
            case ("patch", .object(let o)): entries.append(Entry(service: service, change: .patch(.object(o))))
            case ("rollback", .integer(let n)) where n >= 1: entries.append(Entry(service: service, change: .rollback(n)))
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

extension Distributor {
    /// Resolves and validates every entry; on a dry run returns the documents and diffs, otherwise
    /// commits them all in one transaction with one batch id and one audit row.
    public func applyBatch(_ batch: BatchRequest, by context: OperatorContext,
                           idempotencyKey: String? = nil, requestHash: String = "") async throws -> BatchResult {
        try await reloadLock.withLock {
            let layers = try await self.store.overrideLayers()
            var changes: [PlannedChange] = []
            var items: [BatchResult.Item] = []
            var issues: [ValidationIssue] = []
            var failed: [String] = []
            let batchID = UUID()
            // One listing of the tree for the whole batch (not one per entry).
            let withFiles = Set(self.source.listServices().services)
            // Resolve the override and patch entries on every core first; the loop below reads the results in order.
            let proposed: [Int: JSONValue] = Dictionary(uniqueKeysWithValues: batch.entries.enumerated().compactMap { index, entry in
                switch entry.change {
                case .override(let value): (index, value)
                case .patch(let patch): (index, MergePatch.apply(patch, to: layers[entry.service] ?? .object([:])))
                case .rollback: nil
                }
            })
            let resolutions = await withTaskGroup(of: (Int, ServiceResolution).self) { group in
                for (index, layer) in proposed where withFiles.contains(batch.entries[index].service) {
                    group.addTask { (index, await self.resolveOne(batch.entries[index].service, override: layer)) }
                }
                var out: [Int: ServiceResolution] = [:]
                for await (index, resolution) in group { out[index] = resolution }
                return out
            }
            for (index, entry) in batch.entries.enumerated() {
                let service = entry.service
                guard withFiles.contains(service) || self.cache.latest(service) != nil else {
                    throw ConfbusError(code: .notFound, service: service.rawValue, message: "updates[\(index)]: no service \"\(service)\" is configured")
                }
                let current = layers[service] ?? .object([:])
                var layer: JSONValue
                var config: JSONValue
                var source = VersionSource.batch
                var errors: [ConfbusError] = []
                switch entry.change {
                case .override, .patch:
                    layer = proposed[index] ?? current
                    let resolution = resolutions[index]
                    config = resolution?.merged?.config ?? .object([:])
                    errors = resolution?.errors
                        ?? [ConfbusError(code: .notFound, service: service.rawValue, message: "\(service) has no files to resolve")]
                case .rollback(let target):
                    guard let old = try await self.store.version(service, target) else {
                        throw ConfbusError(code: .notFound, service: service.rawValue, message: "updates[\(index)]: \(service) has no version \(target)")
                    }
                    layer = try await self.store.overrideLayer(of: service, version: target) ?? .object([:])
                    config = old.config
                    source = .rollback
                    errors = self.resolver.validate(old.config, files: self.source.load(service, environment: self.options.environment))
                }
                if !errors.isEmpty {
                    failed.append(service.rawValue)
                    for error in errors {
                        let located = error.issues.isEmpty ? [ValidationIssue(instancePath: .root, keywordPath: .root, message: error.message)] : error.issues
                        issues += located.map { issue in
                            var i = issue
                            i.message = "\(service) (updates[\(index)]): \(issue.message)"
                            i.service = service.rawValue
                            i.index = index
                            return i
                        }
                    }
                    continue
                }
                let old = self.cache.latest(service)
                let document: JSONValue = .object([
                    "service": .string(service.rawValue), "environment": .string(self.options.environment),
                    "checksum": .string(config.checksum), "config": config,
                ])
                items.append(.init(service: service, document: document, changed: old?.checksum != config.checksum,
                                   changes: ConfigDiff.changes(from: old?.config ?? .object([:]), to: config)))
                changes.append(PlannedChange(version: NewVersion(service: service, config: config, source: source,
                                                                 author: context.actor, reason: batch.reason ?? context.reason,
                                                                 environment: self.options.environment, batchID: batchID),
                                             overrideLayer: layer))
            }
            let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: batch.dryRun ? "batch.dry_run" : "batch",
                                    outcome: "accepted", services: batch.entries.map(\.service.rawValue), reason: batch.reason ?? context.reason)
            guard issues.isEmpty else {
                if !batch.dryRun {
                    var refused = audit
                    refused.outcome = "refused"
                    refused.detail = issues.map { "\($0.service ?? ""): \($0.instancePath): \($0.message)" }.joined(separator: "; ")
                    try await self.store.recordRefusal(refused)
                }
                throw ConfbusError(code: .schemaViolation, message: "the batch is refused: \(failed.joined(separator: ", ")) would be invalid; nothing was stored",
                                   issues: issues)
            }
            if batch.dryRun { return BatchResult(batchID: nil, dryRun: true, items: items) }
            let planned = items
            let idempotency = idempotencyKey.map { key in
                IdempotencyRecord(key: key, requestHash: requestHash) { outcomes in
                    BatchResult(batchID: batchID, dryRun: false, items: Self.settle(planned, outcomes)).json.serialized(.canonical)
                }
            }
            let outcomes = try await self.applyAndPublish(changes, audit: audit, idempotency: idempotency)
            return BatchResult(batchID: batchID, dryRun: false, items: Self.settle(items, outcomes))
        }
    }
}

extension Distributor {
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
