import ConfbusCore
import ConfbusEngine
import Hummingbird

/// Feature flags (CONTRACT.md §12), read like the document they live in: `GET /v1/flags/{service}`
/// lists them with their pointers, `POST /v1/flags/{service}/evaluate` answers for one context by
/// `FeatureFlag`'s rule — the one `ConfbusProvider` applies in a service. `?version=N` reads an
/// earlier (or a rollout's candidate) version; the default is the released one. A flag the schema
/// marks secret, or that holds a secret, is neither listed nor evaluated.
struct FlagsController: Sendable {
    let reads: ConfigReads
    let body: BodyReader

    func addRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.get("/v1/flags/:service", use: list)
        group.post("/v1/flags/:service/evaluate", use: evaluate)
    }

    /// The version asked for and its flags (pointer → flag), secrets left out.
    private func flags(_ request: Request, _ context: ConfbusRequestContext) async throws -> (StoredVersion, [(JSONPointer, JSONValue)]) {
        let service = try context.requireService()
        let visible = VisibleReads(reads, for: context.caller)
        let version: StoredVersion
        if let number = try ReadController.integer(request, "version") {
            guard number >= 1, let stored = try await visible.version(service, number) else {
                throw Problem(.notFound, code: "not_found", detail: "\(service) has no version \(number)")
            }
            version = stored
        } else {
            guard let latest = visible.latest(service) else {
                throw Problem(.notFound, code: "unknown_service", detail: "no service \"\(service)\" is distributed")
            }
            version = latest
        }
        return (version, await reads.flags(of: version).map { ($0.pointer, $0.flag) })
    }

    @Sendable func list(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let (version, flags) = try await flags(request, context)
        return Response.json([
            "service": .string(version.service.rawValue), "version": .integer(version.version),
            "flags": .array(flags.map { pointer, flag in .object(["pointer": .string(pointer.description), "flag": flag]) }),
        ])
    }

    @Sendable func evaluate(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let (version, flags) = try await flags(request, context)
        guard case .object(let object) = try await body.json(request) else {
            throw Problem(.badRequest, code: "bad_request", detail: #"the body must be {"context": {...}, "flags"?: [...]}"#)
        }
        if let unknown = object.keys.sorted().first(where: { $0 != "context" && $0 != "flags" }) {
            throw Problem(.badRequest, code: "bad_request", detail: "unknown member \(unknown)")
        }
        let evaluationContext: FlagContext
        do {
            evaluationContext = try FlagContext(json: object["context"] ?? .null)
        } catch {
            throw Problem(.badRequest, code: "bad_request", detail: "the context is not valid: \(error.message)",
                          errors: [ValidationIssue(instancePath: JSONPointer("/context\(error.path)") ?? .root, keywordPath: .root, message: error.message)])
        }
        var wanted = flags
        if let asked = object["flags"] {
            guard case .array(let items) = asked else { throw Problem(.badRequest, code: "bad_request", detail: "flags must be an array of pointers") }
            let byPointer = Dictionary(flags.map { ($0.0.description, $0) }, uniquingKeysWith: { first, _ in first })
            wanted = try items.map { item in
                guard case .string(let pointer) = item else { throw Problem(.badRequest, code: "bad_request", detail: "flags must be an array of pointers") }
                guard let flag = byPointer[pointer] else {
                    throw Problem(.notFound, code: "not_found", detail: "\(version.service) has no flag at \(pointer) in version \(version.version)")
                }
                return flag
            }
        }
        var results: [String: JSONValue] = [:]
        for (pointer, json) in wanted {
            // A flag in a stored version passed its schema and FeatureFlag's checks when it was committed.
            guard let flag = try? FeatureFlag(json: json) else { continue }
            results[pointer.description] = flag.evaluate(evaluationContext, service: version.service.rawValue, pointer: pointer).json
        }
        return Response.json(["service": .string(version.service.rawValue), "version": .integer(version.version), "results": .object(results)])
    }
}
