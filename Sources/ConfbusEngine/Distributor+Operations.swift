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
    /// in one transaction. The edit is applied to the layer stored under the service's row lock,
    /// so concurrent edits on any node never lose each other. An invalid result is refused with
    /// every issue (and the refusal audited); a layer that changes nothing is stored but makes no version.
    public func editOverride(_ service: ServiceName, _ edit: OverrideEdit, expectedVersion: Int?,
                             by context: OperatorContext) async throws -> CommitOutcome {
        guard await hasFiles(service) || cache.latest(service) != nil else {
            throw ConfbusError(code: .notFound, service: service.rawValue, message: "no service \"\(service)\" is configured")
        }
        let files = await tree.load(service)
        let (resolver, source) = (self.resolver, self.source)
        let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: edit.action,
                                outcome: "accepted", services: [service.rawValue], reason: context.reason)
        return try await refusingAudited(audit) {
            try await self.commit(CommitRequest(services: [service], audit: audit) { bases in
                let base = bases[0]
                try Self.check(expectedVersion, base)
                let current = base.overrideLayer ?? .object([:])
                let layer: JSONValue = switch edit {
                case .replace(let value): value
                case .patch(let patch): MergePatch.apply(patch, to: current)
                case .clear: .object([:])
                }
                guard case .object = layer else {
                    throw ConfbusError(code: .badRequest, service: service.rawValue, message: "the override layer must be a JSON object")
                }
                let resolution = resolver.resolve(files, source: source, opsOverride: layer)
                guard let resolved = resolution.resolved else { throw Self.refusal(service, resolution.errors) }
                return [try self.change(resolved, base: base, source: .override, author: context.actor, reason: context.reason,
                                        overrideLayer: layer)]
            })[0]
        }
    }

    /// A new version whose config is version `target`'s, restoring that version's override layer.
    public func rollback(_ service: ServiceName, to target: Int, expectedVersion: Int?,
                         by context: OperatorContext) async throws -> CommitOutcome {
        guard let old = try await store.version(service, target) else {
            throw ConfbusError(code: .notFound, service: service.rawValue, message: "\(service) has no version \(target)")
        }
        let layer = try await store.overrideLayer(of: service, version: target) ?? .object([:])
        let files = await tree.load(service)
        let reason = context.reason ?? "rollback to version \(target)"
        let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: "rollback",
                                outcome: "accepted", services: [service.rawValue], reason: reason)
        // The old config must still satisfy today's schema.
        let issues = resolver.validate(old.config, files: files)
        guard issues.isEmpty else {
            try await refuse(audit, issues)
            throw Self.refusal(service, issues)
        }
        return try await refusingAudited(audit) {
            try await self.commit(CommitRequest(services: [service], audit: audit) { bases in
                let base = bases[0]
                try Self.check(expectedVersion, base)
                try self.checkPublishable(old.config, on: base)
                return [PlannedChange(version: NewVersion(service: service, config: old.config, source: .rollback, author: context.actor,
                                                          reason: reason, environment: self.options.environment),
                                      overrideLayer: layer)]
            })[0]
        }
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
}
