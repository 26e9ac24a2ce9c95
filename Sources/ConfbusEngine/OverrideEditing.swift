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

/// An operator's change to one service: its override layer, or a rollback.
public struct OverrideEditing: Sendable {
    let pipeline: CommitPipeline
    let definitions: ServiceDefinitions
    let store: any VersionStore

    public init(pipeline: CommitPipeline, definitions: ServiceDefinitions, store: any VersionStore) {
        self.pipeline = pipeline
        self.definitions = definitions
        self.store = store
    }

    /// Changes the override layer, re-validates the whole result, and commits it with an audit row
    /// in one transaction. The edit is applied to the layer stored under the service's row lock,
    /// so concurrent edits on any node never lose each other. An invalid result is refused with
    /// every issue (and the refusal audited); a layer that changes nothing is stored but makes no version.
    public func edit(_ service: ServiceName, _ edit: OverrideEdit, expectedVersion: Int?,
                     by context: OperatorContext) async throws -> CommitOutcome {
        try await self.edit(service, edit, expectedVersion: expectedVersion, by: context, action: edit.action, source: .override, rollout: nil)
    }

    /// An edit as a rollout's candidate (`source` `.rollout`, `rollout` its start) or as any other write.
    func edit(_ service: ServiceName, _ edit: OverrideEdit, expectedVersion: Int?, by context: OperatorContext,
              action: String, source: VersionSource, rollout: RolloutCommit?) async throws -> CommitOutcome {
        guard await pipeline.exists(service, in: definitions) else {
            throw ConfbusError(code: .notFound, service: service.rawValue, message: "no service \"\(service)\" is configured")
        }
        let files = await definitions.tree.load(service)
        let (pipeline, definitions) = (self.pipeline, self.definitions)
        let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: action,
                                outcome: "accepted", services: [service.rawValue], reason: context.reason)
        return try await pipeline.refusingAudited(audit) {
            try await pipeline.commit(CommitRequest(services: [service], audit: audit, rollout: rollout) { bases in
                let base = bases[0]
                try CommitPipeline.check(expectedVersion, base)
                let current = base.overrideLayer ?? .object([:])
                let layer: JSONValue = switch edit {
                case .replace(let value): value
                case .patch(let patch): MergePatch.apply(patch, to: current)
                case .clear: .object([:])
                }
                guard case .object = layer else {
                    throw ConfbusError(code: .badRequest, service: service.rawValue, message: "the override layer must be a JSON object")
                }
                let resolution = definitions.resolve(files, layer: layer)
                guard let resolved = resolution.resolved else { throw CommitPipeline.refusal(service, resolution.errors) }
                let change = try pipeline.change(resolved, base: base, source: source, author: context.actor, reason: context.reason,
                                                 overrideLayer: layer)
                try Self.checkCandidate(change, base: base, source: source)
                return [change]
            })[0]
        }
    }

    /// A new version whose config is version `target`'s, restoring that version's override layer.
    public func rollback(_ service: ServiceName, to target: Int, expectedVersion: Int?,
                         by context: OperatorContext) async throws -> CommitOutcome {
        try await rollback(service, to: target, expectedVersion: expectedVersion, by: context, action: "rollback", source: .rollback, rollout: nil)
    }

    func rollback(_ service: ServiceName, to target: Int, expectedVersion: Int?, by context: OperatorContext,
                  action: String, source: VersionSource, rollout: RolloutCommit?) async throws -> CommitOutcome {
        guard let old = try await store.version(service, target) else {
            throw ConfbusError(code: .notFound, service: service.rawValue, message: "\(service) has no version \(target)")
        }
        let layer = try await store.overrideLayer(of: service, version: target) ?? .object([:])
        let files = await definitions.tree.load(service)
        let reason = context.reason ?? "rollback to version \(target)"
        let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: action,
                                outcome: "accepted", services: [service.rawValue], reason: reason)
        // The old config must still satisfy today's schema.
        let issues = definitions.validate(old.config, files: files)
        guard issues.isEmpty else {
            try await pipeline.refuse(audit, issues)
            throw CommitPipeline.refusal(service, issues)
        }
        let pipeline = self.pipeline
        let secrets = await definitions.redaction(service)
        return try await pipeline.refusingAudited(audit) {
            try await pipeline.commit(CommitRequest(services: [service], audit: audit, rollout: rollout) { bases in
                let base = bases[0]
                try CommitPipeline.check(expectedVersion, base)
                try pipeline.checkPublishable(old.config, on: base)
                let change = PlannedChange(version: NewVersion(service: service, config: old.config, source: source, author: context.actor,
                                                               reason: reason, environment: pipeline.options.environment, secrets: secrets),
                                           overrideLayer: layer)
                try Self.checkCandidate(change, base: base, source: source)
                return [change]
            })[0]
        }
    }

    /// A rollout's candidate must change the config: one that leaves it as it is has nothing to roll out.
    static func checkCandidate(_ change: PlannedChange, base: CommitBase, source: VersionSource) throws(ConfbusError) {
        guard source == .rollout, base.holds(change.version), !base.inRollout else { return }
        throw ConfbusError(code: .nothingToRollOut, service: base.service.rawValue,
                           message: "the change leaves \(base.service)'s config as it is; there is nothing to roll out")
    }
}
