import ConfbusCore
import ConfbusEngine
import Foundation
import Hummingbird

/// The rollout routes of CONTRACT.md §8: started, promoted and aborted with an admin token; read
/// like the service they belong to (a token scoped to other services gets 404).
struct RolloutController: Sendable {
    let rollouts: Rollouts
    let reads: ConfigReads
    let body: BodyReader

    func addReadRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.get("/v1/rollouts/:id", use: show)
        group.get("/v1/config/:service/rollouts", use: list)
    }

    func addAdminRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.post("/v1/config/:service/rollouts", use: start)
        group.post("/v1/rollouts/:id/promote") { request, context in try await operate(request, context, promote: true) }
        group.post("/v1/rollouts/:id/abort") { request, context in try await operate(request, context, promote: false) }
    }

    @Sendable func start(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let service = try context.requireService()
        var who = try AdminController.operatorContext(request, context)
        let parsed = try RolloutRequest(try await body.json(request))
        // The body's reason, else the header's.
        who.reason = parsed.reason ?? who.reason
        let view = try await rollouts.start(service, parsed, by: who)
        return Response.json(Self.json(view), status: .created,
                             headers: [.location: "/v1/rollouts/\(view.record.machine.id)"])
    }

    @Sendable func show(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let id = try Self.id(context)
        guard let view = try await rollouts.rollout(id: id), context.caller?.mayRead(view.record.machine.service) ?? true else {
            throw Problem(.notFound, code: "not_found", detail: "no rollout \"\(id)\"")
        }
        return Response.json(Self.json(view))
    }

    @Sendable func list(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let service = try context.requireService()
        // Out of the token's scope reads exactly as a service that does not exist (CONTRACT.md §6c).
        guard VisibleReads(reads, for: context.caller).latest(service) != nil else {
            throw Problem(.notFound, code: "not_found", detail: "\(service) has no version")
        }
        let limit = min(try ReadController.integer(request, "limit") ?? 20, 200)
        let views = try await rollouts.rollouts(of: service, limit: limit)
        return Response.json(["service": .string(service.rawValue), "rollouts": .array(views.map(Self.json))])
    }

    func operate(_ request: Request, _ context: ConfbusRequestContext, promote: Bool) async throws -> Response {
        let id = try Self.id(context)
        let who = try AdminController.operatorContext(request, context)
        let view = promote ? try await rollouts.promote(id: id, by: who) : try await rollouts.abort(id: id, by: who)
        return Response.json(Self.json(view))
    }

    /// Rollout ids are what confbus makes (lower-case UUIDs); anything else cannot name one.
    static func id(_ context: ConfbusRequestContext) throws -> String {
        guard let id = context.parameters.get("id"), id.utf8.count <= 64,
              id.utf8.allSatisfy({ (48...57).contains($0) || (97...122).contains($0) || $0 == 45 }) else {
            throw Problem(.notFound, code: "not_found", detail: "no such rollout")
        }
        return id
    }

    /// A rollout as §8 shows it, with each cohort member's answer and the times a live view needs.
    static func json(_ view: RolloutView) -> JSONValue {
        let record = view.record
        let m = record.machine
        var object: [String: JSONValue] = [
            "id": .string(m.id), "service": .string(m.service.rawValue), "state": .string(m.phase.state),
            "step": .integer(m.step + 1), "steps": .array(m.policy.steps.map(JSONValue.integer)),
            "stable_version": .integer(m.stableVersion), "candidate_version": .integer(m.candidateVersion),
            "cohort": .array(m.cohort.map(JSONValue.string)),
            "acks": ["applied": .integer(view.count(.applied)), "rejected": .integer(view.count(.rejected)), "pending": .integer(view.count(.pending))],
            "instances": .array(view.members.map { member in
                var entry: [String: JSONValue] = ["instance": .string(member.instance), "answer": .string(member.answer.rawValue)]
                if let detail = member.detail { entry["detail"] = .string(detail) }
                return .object(entry)
            }),
            "bake": .string(RolloutMachine.text(m.policy.bake)), "ack_timeout": .string(RolloutMachine.text(m.policy.ackTimeout)),
            "max_rejected": .integer(m.policy.maxRejected),
            "actor": .string(record.actor), "reason": record.reason.map(JSONValue.string) ?? .null,
            "started_at": .string(Timestamp.format(record.startedAt)), "updated_at": .string(Timestamp.format(record.updatedAt)),
        ]
        switch m.phase {
        case .awaitingAcks(let since): object["phase"] = "awaiting_acks"; object["phase_since"] = .string(Timestamp.format(since))
        case .baking(let since): object["phase"] = "baking"; object["phase_since"] = .string(Timestamp.format(since))
        case .completed(let at): object["phase"] = "completed"; object["finished_at"] = .string(Timestamp.format(at))
        case .rolledBack(let at, let reason):
            object["phase"] = "rolled_back"
            object["finished_at"] = .string(Timestamp.format(at))
            object["rollback_reason"] = .string(reason)
        }
        if let deadline = m.deadline { object["deadline"] = .string(Timestamp.format(deadline)) }
        return .object(object)
    }
}
