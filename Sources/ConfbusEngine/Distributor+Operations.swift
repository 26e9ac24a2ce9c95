import ConfbusCore
import Foundation

/// Who asks for a change, and why: recorded with the versions and in the audit log.
public struct OperatorContext: Sendable {
    public var actor: String
    public var requestID: String
    public var reason: String?

    public init(actor: String, requestID: String, reason: String?) {
        self.actor = actor
        self.requestID = requestID
        self.reason = reason
    }
}

/// An edit of a service's ops override layer (CONTRACT.md §5, §6a).
public enum OverrideEdit: Sendable {
    /// PUT: the whole layer.
    case replace(JSONValue)
    /// PATCH: RFC 7396 applied to the stored layer (not to the resolved config).
    case patch(JSONValue)
    /// DELETE: no layer.
    case clear

    var action: String {
        switch self {
        case .replace: "override.put"
        case .patch: "override.patch"
        case .clear: "override.delete"
        }
    }
}

extension Distributor {
    /// Changes the override layer, re-validates the whole result, and commits it with an audit row
    /// in one transaction. An invalid result is refused with every issue (and the refusal audited);
    /// a layer that changes nothing is stored but makes no version.
    public func editOverride(_ service: ServiceName, _ edit: OverrideEdit, expectedVersion: Int?,
                             by context: OperatorContext) async throws -> CommitOutcome {
        guard hasFiles(service) || cache.latest(service) != nil else {
            throw ConfbusError(code: .notFound, service: service.rawValue, message: "no service \"\(service)\" is configured")
        }
        return try await reloadLock.withLock {
            let current = try await self.store.overrideLayers()[service] ?? .object([:])
            let layer: JSONValue
            switch edit {
            case .replace(let value): layer = value
            case .patch(let patch): layer = MergePatch.apply(patch, to: current)
            case .clear: layer = .object([:])
            }
            guard case .object = layer else {
                throw ConfbusError(code: .badRequest, service: service.rawValue, message: "the override layer must be a JSON object")
            }
            let resolution = await self.resolveOne(service, override: layer)
            let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: edit.action,
                                    outcome: "accepted", services: [service.rawValue], reason: context.reason)
            guard let resolved = resolution.resolved else {
                try await self.refuse(audit, resolution.errors)
                throw Self.refusal(service, resolution.errors)
            }
            let change = PlannedChange(version: NewVersion(service: service, config: resolved.config, source: .override,
                                                           author: context.actor, reason: context.reason,
                                                           environment: self.options.environment),
                                       overrideLayer: layer, expectedVersion: expectedVersion)
            return try await self.applyAndPublish([change], audit: audit)[0]
        }
    }

    /// A new version whose config is version `target`'s, restoring that version's override layer.
    public func rollback(_ service: ServiceName, to target: Int, expectedVersion: Int?,
                         by context: OperatorContext) async throws -> CommitOutcome {
        try await reloadLock.withLock {
            guard let old = try await self.store.version(service, target) else {
                throw ConfbusError(code: .notFound, service: service.rawValue, message: "\(service) has no version \(target)")
            }
            let layer = try await self.store.overrideLayer(of: service, version: target) ?? .object([:])
            let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: "rollback",
                                    outcome: "accepted", services: [service.rawValue], reason: context.reason ?? "rollback to version \(target)")
            // The old config must still satisfy today's schema.
            let issues = self.resolver.validate(old.config, files: self.source.load(service, environment: self.options.environment))
            guard issues.isEmpty else {
                try await self.refuse(audit, issues)
                throw Self.refusal(service, issues)
            }
            let change = PlannedChange(version: NewVersion(service: service, config: old.config, source: .rollback,
                                                           author: context.actor, reason: context.reason ?? "rollback to version \(target)",
                                                           environment: self.options.environment),
                                       overrideLayer: layer, expectedVersion: expectedVersion)
            return try await self.applyAndPublish([change], audit: audit)[0]
        }
    }

    func applyAndPublish(_ changes: [PlannedChange], audit: AuditRecord,
                         idempotency: IdempotencyRecord? = nil) async throws -> [CommitOutcome] {
        let outcomes = try await store.apply(changes, audit: audit, idempotency: idempotency)
        committed(outcomes)
        return outcomes
    }

    func refuse(_ audit: AuditRecord, _ errors: [ConfbusError]) async throws {
        var refused = audit
        refused.outcome = "refused"
        refused.detail = errors.map { e in e.issues.first.map { "\($0.instancePath): \($0.message)" } ?? e.message }.joined(separator: "; ")
        try await store.recordRefusal(refused)
    }

    static func refusal(_ service: ServiceName, _ errors: [ConfbusError]) -> ConfbusError {
        let issues = errors.flatMap(\.issues)
        return ConfbusError(code: issues.isEmpty ? (errors.first?.code ?? .schemaViolation) : .schemaViolation,
                            service: service.rawValue,
                            message: "the resulting config of \(service) is invalid; nothing was stored",
                            issues: issues.isEmpty ? errors.map { ValidationIssue(instancePath: .root, keywordPath: .root, message: $0.message) } : issues)
    }
}
