import ConfbusCore
import ConfbusEngine
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The admin routes of CONTRACT.md §5: reload, override edits, rollback, batch and validate,
/// audit, export and import. Every one is behind `AdminAccessMiddleware`.
struct AdminController: Sendable {
    let distributor: Distributor
    let body: BodyReader

    func addRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.post("/v1/reload", use: reload)
        group.put("/v1/config/:service/override") { request, context in try await override(request, context, .put) }
        group.patch("/v1/config/:service/override") { request, context in try await override(request, context, .patch) }
        group.delete("/v1/config/:service/override") { request, context in try await override(request, context, .delete) }
        group.post("/v1/config/:service/rollback", use: rollback)
        group.get("/v1/audit", use: audit)
        group.post("/v1/batch") { request, context in try await batch(request, context, validateOnly: false) }
        group.post("/v1/validate") { request, context in try await batch(request, context, validateOnly: true) }
        group.get("/v1/export", use: export)
        group.post("/v1/import", use: importDocument)
    }

    static let reasonHeader = HTTPField.Name("X-Confbus-Reason")!
    static let requestIDHeader = HTTPField.Name("X-Request-Id")!
    static let idempotencyHeader = HTTPField.Name("Idempotency-Key")!
    static let replayedHeader = HTTPField.Name("Idempotent-Replayed")!

    func operatorContext(_ request: Request, _ context: ConfbusRequestContext) throws -> OperatorContext {
        try Self.operatorContext(request, context)
    }

    static func operatorContext(_ request: Request, _ context: ConfbusRequestContext) throws -> OperatorContext {
        let actor = try context.adminName()
        let requestID = request.headers[Self.requestIDHeader].map { String($0.prefix(128)) } ?? UUID().uuidString
        let reason = request.headers[Self.reasonHeader].map { String($0.prefix(1000)) }
        return OperatorContext(actor: actor, requestID: requestID, reason: reason)
    }

    @Sendable func reload(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let author = try context.adminName()
        let report = try await distributor.reloader.reload(author: author, reason: request.headers[Self.reasonHeader] ?? "reload")
        return Response.json([
            "committed": .array(report.committed.map { JSONValue.object(["service": .string($0.service.rawValue), "version": .integer($0.version)]) }),
            "unchanged": .array(report.unchanged.map { JSONValue.string($0.rawValue) }),
            // File changes of services with a running rollout: committed when it ends.
            "deferred": .array(report.deferred.map { JSONValue.string($0.rawValue) }),
            "failed": .object(Dictionary(uniqueKeysWithValues: report.failed.map { name, errors in (name.rawValue, ReadController.errorList(errors)) })),
        ])
    }

    enum OverrideMethod { case put, patch, delete }

    /// `If-Match`: `"<version>"`, the ETag (`"sha256:…"`) or `*`; returns the version it names.
    func expectedVersion(_ request: Request, _ service: ServiceName) throws -> Int? {
        guard let header = request.headers[.ifMatch]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if header == "*" { return nil }
        let value = header.hasPrefix("\"") && header.hasSuffix("\"") && header.count >= 2 ? String(header.dropFirst().dropLast()) : header
        // Digits only: Int("+97") is 97, but the documented form is "<version>".
        if (1...10).contains(value.utf8.count), value.utf8.allSatisfy({ (48...57).contains($0) }), let version = Int(value) { return version }
        guard Self.isChecksum(value) else {
            throw Problem(.badRequest, code: "bad_request", detail: "If-Match must be \"<version>\", the ETag or *")
        }
        guard let latest = distributor.reads.latest(service) else {
            throw Problem(.preconditionFailed, code: "version_conflict", detail: "\(service) has no version to match")
        }
        guard value == latest.checksum else {
            throw Problem(.preconditionFailed, code: "version_conflict", detail: "If-Match does not match the current version of \(service)")
        }
        return latest.version
    }

    /// `sha256:` and 64 lower-case hexadecimal digits.
    static func isChecksum(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        return bytes.count == 71 && text.hasPrefix("sha256:") && bytes[7...].allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    func documentResponse(_ outcome: CommitOutcome) -> Response {
        switch outcome {
        case .committed(let v), .unchanged(let v):
            return Response.json(v.document, headers: [.eTag: "\"\(v.checksum)\""])
        }
    }

    func override(_ request: Request, _ context: ConfbusRequestContext, _ method: OverrideMethod) async throws -> Response {
        let service = try context.requireService()
        let who = try operatorContext(request, context)
        // The body first: a malformed request is 400 whatever its If-Match says.
        let edit: OverrideEdit = switch method {
        case .put: .replace(try await layer(request))
        case .patch: .patch(try await layer(request))
        case .delete: .clear
        }
        let expected = try expectedVersion(request, service)
        return documentResponse(try await distributor.overrides.edit(service, edit, expectedVersion: expected, by: who))
    }

    /// A request body that is an override layer or a merge patch of one: a JSON object.
    func layer(_ request: Request) async throws -> JSONValue {
        let value = try await body.json(request)
        guard case .object = value else {
            throw Problem(.badRequest, code: "bad_request", detail: "an override layer, or a patch of one, is a JSON object")
        }
        return value
    }

    @Sendable func rollback(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let service = try context.requireService()
        let who = try operatorContext(request, context)
        guard let target = try await body.json(request)["version"]?.integralValue, (1...Int(Int32.max)).contains(target) else {
            throw Problem(.badRequest, code: "bad_request", detail: "the body must be {\"version\": N} with N from 1 to 2147483647")
        }
        let expected = try expectedVersion(request, service)
        return documentResponse(try await distributor.overrides.rollback(service, to: target, expectedVersion: expected, by: who))
    }

    func batch(_ request: Request, _ context: ConfbusRequestContext, validateOnly: Bool) async throws -> Response {
        let who = try operatorContext(request, context)
        let (value, hash) = try await body.read(request)
        var batch = try BatchRequest(value)
        if validateOnly { batch.dryRun = true }
        let key = batch.dryRun ? nil : request.headers[Self.idempotencyHeader].map { String($0.prefix(200)) }
        if let key, let earlier = try await distributor.reads.idempotentAnswer(key) {
            return try replay(earlier.requestHash, earlier.answer, hash)
        }
        do {
            return Response.json(try await distributor.batches.apply(batch, by: who, idempotencyKey: key, requestHash: hash).json)
        } catch let replay as IdempotentReplay {
            // A concurrent request with the same key committed first: its answer, never a second commit.
            return try self.replay(replay.requestHash, replay.answer, hash)
        }
    }

    func replay(_ storedHash: String, _ answer: String, _ hash: String) throws -> Response {
        guard storedHash == hash else {
            throw Problem(.unprocessableContent, code: "idempotency_key_reused", detail: "this Idempotency-Key was used for a different request")
        }
        return Response.json(try JSONParser().parse(answer), headers: [Self.replayedHeader: "true"])
    }

    @Sendable func audit(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let limit = min(try ReadController.integer(request, "limit") ?? 100, 1000)
        var service: ServiceName?
        if let raw = request.uri.queryParameters.get("service") {
            guard let name = try? ServiceName(validating: raw) else {
                throw Problem(.badRequest, code: "invalid_name", detail: "invalid service name")
            }
            service = name
        }
        let records = try await distributor.reads.auditLog(service: service, limit: limit)
        return Response.json(["entries": .array(records.map { r in
            var entry: [String: JSONValue] = [
                "actor": .string(r.actor), "request_id": .string(r.requestID), "action": .string(r.action),
                "outcome": .string(r.outcome), "services": .array(r.services.map(JSONValue.string)), "changes": r.changes,
                "reason": r.reason.map(JSONValue.string) ?? .null, "detail": r.detail.map(JSONValue.string) ?? .null,
            ]
            if let at = r.at { entry["at"] = .string(Timestamp.format(at)) }
            return .object(entry)
        })])
    }

    @Sendable func export(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let history = try ReadController.boolean(request, "history") ?? false
        // Secret values are masked unless asked for (CONTRACT §6c): a backup to restore needs them.
        let secrets = try ReadController.boolean(request, "secrets") ?? false
        return Response.json(try await distributor.archive.export(history: history, secrets: secrets))
    }

    @Sendable func importDocument(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let who = try operatorContext(request, context)
        let imported = try await distributor.archive.importDocument(try await body.json(request), by: who)
        return Response.json(["imported_versions": .integer(imported)])
    }
}

/// Reads a request body as JSON, or as YAML when its content type says so, up to
/// `max_document_bytes` (413 above it).
struct BodyReader: Sendable {
    let maxBytes: Int
    let parseYAML: @Sendable ([UInt8]) throws -> JSONValue

    /// The body's value (no hash: only an idempotent write needs one).
    func json(_ request: Request) async throws -> JSONValue {
        try await value(request)
    }

    /// The body's value with its canonical bytes' hash (for `Idempotency-Key`).
    func read(_ request: Request) async throws -> (value: JSONValue, hash: String) {
        let value = try await value(request)
        return (value, value.checksum)
    }

    private func value(_ request: Request) async throws -> JSONValue {
        var request = request
        let bytes: [UInt8]
        do {
            bytes = Array(try await request.collectBody(upTo: maxBytes).readableBytesView)
        } catch is NIOTooManyBytesError {
            throw tooLarge()
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw tooLarge()
        }
        let type = request.headers[.contentType]?.split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
        let value: JSONValue
        if ["application/yaml", "application/x-yaml", "text/yaml"].contains(type) {
            do {
                value = try parseYAML(bytes)
            } catch let error as ConfbusError {
                throw Problem(.badRequest, code: "invalid_yaml", detail: "the body is not valid YAML: \(error.location.map { "\($0.line):\($0.column): " } ?? "")\(error.message)")
            }
        } else {
            do {
                value = try JSONParser(maxDepth: 64).parse(bytes)
            } catch {
                throw Problem(.badRequest, code: "invalid_json", detail: "the body is not JSON: \(error.description)")
            }
        }
        return value
    }

    private func tooLarge() -> Problem {
        Problem(.contentTooLarge, code: "document_too_large", detail: "the body is larger than max_document_bytes (\(maxBytes) bytes)")
    }
}
