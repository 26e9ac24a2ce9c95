import ConfbusCore
import ConfbusEngine
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Prometheus

/// The HTTP API of CONTRACT.md §5 that exists so far: pull, history, diff, services, instances,
/// schemas, reload, and the operational endpoints. Reads are served from the live cache.
public struct ConfbusAPI: Sendable {
    public let distributor: Distributor
    public let readiness: Readiness
    public let adminTokens: [AccessToken]
    public let readTokens: [AccessToken]
    public let registry: PrometheusCollectorRegistry
    public let maxWait: Int = 60
    /// Largest request body (CONTRACT.md §6 `max_document_bytes`); larger ones get 413.
    public let maxBodyBytes: Int
    /// Reads a YAML request body (`application/yaml`, `application/x-yaml`, `text/yaml`).
    public let parseYAML: @Sendable ([UInt8]) throws -> JSONValue

    public init(distributor: Distributor, readiness: Readiness, adminTokens: [AccessToken], readTokens: [AccessToken],
                registry: PrometheusCollectorRegistry, maxBodyBytes: Int = 1 << 20,
                parseYAML: @escaping @Sendable ([UInt8]) throws -> JSONValue = { _ in
                    throw ConfbusError(code: .badRequest, message: "YAML bodies are not supported here")
                }) {
        self.parseYAML = parseYAML
        self.maxBodyBytes = maxBodyBytes
        self.distributor = distributor
        self.readiness = readiness
        self.adminTokens = adminTokens
        self.readTokens = readTokens
        self.registry = registry
    }

    var store: any ConfbusStore { distributor.store }
    var cache: LiveCache { distributor.cache }

    public func addRoutes<Context: RequestContext>(to router: Router<Context>) {
        router.addMiddleware {
            RequestMetricsMiddleware<Context>()
            ProblemMiddleware<Context>()
        }
        router.get("/healthz") { _, _ in Response.json(["status": "ok"]) }
        router.get("/readyz") { _, _ in try readyz() }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: .init(bytes: registry.emitToBuffer())))
        }
        router.get("/openapi.json") { _, _ in Response.json(OpenAPIDocument.document) }
        router.get("/v1/config/:service") { request, context in try await config(request, context) }
        router.get("/v1/config/:service/history") { request, context in try await history(request, context) }
        router.get("/v1/config/:service/diff") { request, context in try await diff(request, context) }
        router.get("/v1/services") { request, _ in try await services(request) }
        router.get("/v1/services/:service/instances") { request, context in try await instances(request, context) }
        router.get("/v1/schemas/:service") { request, context in try await schema(request, context) }
        router.post("/v1/reload") { request, context in try await reload(request, context) }
        router.put("/v1/config/:service/override") { request, context in try await override(request, context, .put) }
        router.patch("/v1/config/:service/override") { request, context in try await override(request, context, .patch) }
        router.delete("/v1/config/:service/override") { request, context in try await override(request, context, .delete) }
        router.post("/v1/config/:service/rollback") { request, context in try await rollback(request, context) }
        router.get("/v1/audit") { request, _ in try await audit(request) }
        router.post("/v1/batch") { request, _ in try await batch(request, validateOnly: false) }
        router.post("/v1/validate") { request, _ in try await batch(request, validateOnly: true) }
        router.get("/v1/export") { request, _ in
            _ = try authorizeAdmin(request)
            let history: Bool
            switch request.uri.queryParameters.get("history").map({ String($0) }) {
            case nil, "false", "0": history = false
            case "true", "1": history = true
            default: throw Problem(.badRequest, code: "bad_request", detail: "history must be true or false")
            }
            return Response.json(try await distributor.export(history: history))
        }
        router.post("/v1/import") { request, _ in
            let who = try operatorContext(request)
            try requireDatabase()
            let imported = try await distributor.importDocument(try await jsonBody(request), by: who)
            return Response.json(["imported_versions": .integer(imported)])
        }
    }

    // MARK: Access

    func service(_ context: some RequestContext) throws -> ServiceName {
        guard let raw = context.parameters.get("service") else { throw Problem(.badRequest, code: "invalid_name", detail: "missing service") }
        do {
            return try ServiceName(validating: raw.removingPercentEncoding ?? raw)
        } catch {
            throw Problem(.badRequest, code: "invalid_name", detail: "invalid service name in the URL")
        }
    }

    static func bearer(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else { return nil }
        return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    /// Reads are open unless read tokens are configured; an admin token reads everything.
    func authorizeRead(_ request: Request, service: ServiceName?) throws {
        guard !readTokens.isEmpty else { return }
        guard let presented = Self.bearer(request) else { throw Problem(.unauthorized, code: "unauthorized", detail: "a read token is required") }
        if adminTokens.contains(where: { $0.matches(presented) }) { return }
        guard let token = readTokens.first(where: { $0.matches(presented) }) else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "unknown token")
        }
        if let service, !token.allows(service) { throw Problem(.forbidden, code: "forbidden", detail: "this token may not read \(service)") }
    }

    func isAdmin(_ request: Request) -> Bool {
        guard let presented = Self.bearer(request) else { return false }
        return adminTokens.contains { $0.matches(presented) }
    }

    /// Admin calls need an admin token; with none configured every admin call is 401.
    func authorizeAdmin(_ request: Request) throws -> String {
        guard let presented = Self.bearer(request), let token = adminTokens.first(where: { $0.matches(presented) }) else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "an admin token is required")
        }
        return token.name
    }

    func staleHeaders() -> HTTPFields {
        readiness.database ? [:] : [HTTPField.Name("Confbus-Stale")!: "true"]
    }

    // MARK: Operations

    func readyz() throws -> Response {
        let database = readiness.database
        let mqtt = readiness.mqtt
        let loaded = readiness.loaded
        guard database && mqtt && loaded else {
            let down = [database ? nil : "database", mqtt ? nil : "mqtt", (database && !loaded) ? "start-up (loading versions)" : nil].compactMap { $0 }
            throw Problem(.serviceUnavailable, code: "not_ready", detail: "not ready: \(down.joined(separator: " and ")) down")
        }
        return Response.json(["database": "connected", "mqtt": "connected"])
    }

    // MARK: Pull

    static func integer(_ request: Request, _ name: String) throws -> Int? {
        guard let raw = request.uri.queryParameters.get(name) else { return nil }
        guard let value = Int(raw), value >= 0 else {
            throw Problem(.badRequest, code: "bad_request", detail: "query parameter \(name) must be a non-negative integer")
        }
        return value
    }

    func config(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let service = try service(context)
        try authorizeRead(request, service: service)
        let versionParameter = try Self.integer(request, "version")
        if request.uri.queryParameters.get("version") != nil, versionParameter == 0 {
            throw Problem(.badRequest, code: "bad_request", detail: "version starts at 1")
        }
        var pointer: JSONPointer?
        if let raw = request.uri.queryParameters.get("pointer") {
            guard let p = JSONPointer(raw), raw.hasPrefix("/") else {
                throw Problem(.badRequest, code: "bad_request", detail: "pointer must be a JSON pointer starting with /")
            }
            pointer = p
        }
        let wait = try Self.integer(request, "wait").map { min($0, maxWait) }
        let after = try Self.integer(request, "after")

        var version: StoredVersion
        if let number = versionParameter {
            if let latest = cache.latest(service), latest.version == number {
                version = latest
            } else {
                guard let stored = try await store.version(service, number) else {
                    throw Problem(.notFound, code: "not_found", detail: "\(service) has no version \(number)")
                }
                version = stored
            }
        } else if let wait {
            let threshold = after ?? cache.latest(service)?.version ?? 0
            if let newer = await cache.wait(for: service, after: threshold, timeout: .seconds(wait)) {
                version = newer
            } else {
                guard cache.latest(service) != nil else {
                    throw Problem(.notFound, code: "not_found", detail: "\(service) has no version")
                }
                return Response(status: .notModified, headers: staleHeaders())
            }
        } else {
            guard let latest = cache.latest(service) else {
                throw Problem(.notFound, code: "not_found", detail: "\(service) has no version")
            }
            version = latest
        }

        var headers = staleHeaders()
        let etag = "\"\(version.checksum)\""
        headers[.eTag] = etag
        if let pointer {
            guard let value = version.config.value(at: pointer) else {
                throw Problem(.notFound, code: "not_found", detail: "no value at \(pointer) in version \(version.version)")
            }
            return Response.json(["service": .string(service.rawValue), "version": .integer(version.version),
                                  "pointer": .string(pointer.description), "value": value], headers: headers)
        }
        if let match = request.headers[.ifNoneMatch], Self.etagMatches(match, etag) {
            return Response(status: .notModified, headers: headers)
        }
        return Response.json(version.document, headers: headers)
    }

    static func etagMatches(_ header: String, _ etag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            let c = candidate.trimmingCharacters(in: .whitespaces)
            return c == "*" || c == etag || c == "W/" + etag
        }
    }

    func history(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let service = try service(context)
        try authorizeRead(request, service: service)
        let limit = min(try Self.integer(request, "limit") ?? 50, 1000)
        let before = try Self.integer(request, "before")
        guard cache.latest(service) != nil else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no version") }
        let versions = try await store.history(service, limit: limit, before: before)
        return Response.json([
            "service": .string(service.rawValue),
            "versions": .array(versions.map { v in
                var entry: [String: JSONValue] = [
                    "version": .integer(v.version), "checksum": .string(v.checksum), "source": .string(v.source.rawValue),
                    "author": .string(v.author), "reason": v.reason.map(JSONValue.string) ?? .null,
                    "created_at": .string(Timestamp.format(v.createdAt)),
                ]
                if let batch = v.batchID { entry["batch_id"] = .string(batch) }
                return .object(entry)
            }),
        ])
    }

    func diff(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let service = try service(context)
        try authorizeRead(request, service: service)
        guard let from = try Self.integer(request, "from"), let to = try Self.integer(request, "to") else {
            throw Problem(.badRequest, code: "bad_request", detail: "diff needs from and to")
        }
        guard let old = try await store.version(service, from), let new = try await store.version(service, to) else {
            throw Problem(.notFound, code: "not_found", detail: "\(service) has no version \(from) or \(to)")
        }
        // Secrets are shown only to admins (CONTRACT.md; issue 4).
        let redaction = isAdmin(request) ? Redaction(paths: [])
            : distributor.resolver.redaction(files: distributor.source.load(service, environment: distributor.options.environment))
        let changes = ConfigDiff.changes(from: old.config, to: new.config).map { change -> JSONValue in
            var c = change
            if redaction.covers(c.path) {
                if c.old != nil { c.old = Redaction.mask }
                if c.new != nil { c.new = Redaction.mask }
            }
            return c.json
        }
        return Response.json([
            "service": .string(service.rawValue), "from": .integer(from), "to": .integer(to), "changes": .array(changes),
        ])
    }

    func services(_ request: Request) async throws -> Response {
        try authorizeRead(request, service: nil)
        let counts = (try? await store.instanceCounts()) ?? [:]
        let invalid = distributor.brokenServices
        var entries: [ServiceName: JSONValue] = [:]
        for v in cache.all {
            let c = counts[v.service] ?? (0, 0)
            var entry: [String: JSONValue] = [
                "service": .string(v.service.rawValue), "version": .integer(v.version),
                "checksum": .string(v.checksum), "updated_at": .string(Timestamp.format(v.createdAt)),
                "instances": .integer(c.total), "lagging": .integer(c.lagging), "state": "ok",
            ]
            if let errors = invalid[v.service] { entry["state"] = "invalid"; entry["errors"] = Self.errorList(errors) }
            entries[v.service] = .object(entry)
        }
        // A service whose files are invalid and that has no version yet is listed too.
        for (service, errors) in invalid where entries[service] == nil {
            entries[service] = .object(["service": .string(service.rawValue), "version": .null, "state": "invalid",
                                        "errors": Self.errorList(errors), "instances": .integer(0), "lagging": .integer(0)])
        }
        return Response.json(["services": .array(entries.keys.sorted().compactMap { entries[$0] })], headers: staleHeaders())
    }

    /// Errors as `[{code, message, location?}]`: paths, files, lines and rules, never a value.
    static func errorList(_ errors: [ConfbusError]) -> JSONValue {
        .array(errors.map { e in
            var o: [String: JSONValue] = ["code": .string(e.code.description), "message": .string(e.message)]
            if let l = e.location { o["location"] = .string(l.description) }
            return .object(o)
        })
    }

    func instances(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let service = try service(context)
        try authorizeRead(request, service: service)
        guard let latest = cache.latest(service) else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no version") }
        let records = try await store.instances(service)
        return Response.json([
            "service": .string(service.rawValue), "version": .integer(latest.version),
            "instances": .array(records.map { r in
                .object([
                    "instance": .string(r.instance),
                    "first_seen": .string(Timestamp.format(r.firstSeen)),
                    "last_seen": .string(Timestamp.format(r.lastSeen)),
                    "health": r.health.map(JSONValue.string) ?? .null,
                    "applied_version": r.appliedVersion.map(JSONValue.integer) ?? .null,
                    "ack_status": r.ackStatus.map(JSONValue.string) ?? .null,
                    "detail": r.detail.map(JSONValue.string) ?? .null,
                    "lagging": .bool((r.appliedVersion ?? 0) < latest.version),
                ])
            }),
        ])
    }

    func schema(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let service = try service(context)
        try authorizeRead(request, service: service)
        let files = distributor.source.load(service, environment: distributor.options.environment)
        guard let schema = files.schema else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no schema") }
        return Response.json(schema.value)
    }

    func reload(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let author = try authorizeAdmin(request)
        guard readiness.database else { throw Problem(.serviceUnavailable, code: "store_unavailable", detail: "the database is unreachable; nothing was reloaded") }
        let reason = request.headers[HTTPField.Name("X-Confbus-Reason")!]
        let report = try await distributor.reload(author: author, reason: reason ?? "reload")
        return Response.json([
            "committed": .array(report.committed.map { JSONValue.object(["service": .string($0.service.rawValue), "version": .integer($0.version)]) }),
            "unchanged": .array(report.unchanged.map { JSONValue.string($0.rawValue) }),
            "failed": .object(Dictionary(uniqueKeysWithValues: report.failed.map { name, errors in (name.rawValue, Self.errorList(errors)) })),
        ])
    }
}

// MARK: - Admin: overrides, rollback, audit

extension ConfbusAPI {
    enum OverrideMethod { case put, patch, delete }

    func operatorContext(_ request: Request) throws -> OperatorContext {
        let actor = try authorizeAdmin(request)
        let requestID = request.headers[HTTPField.Name("X-Request-Id")!].map { String($0.prefix(128)) } ?? UUID().uuidString
        let reason = request.headers[HTTPField.Name("X-Confbus-Reason")!].map { String($0.prefix(1000)) }
        return OperatorContext(actor: actor, requestID: requestID, reason: reason)
    }

    func jsonBody(_ request: Request) async throws -> JSONValue {
        try await body(request).value
    }

    /// The body as JSON, or as YAML when its content type says so; with its canonical bytes' hash.
    func body(_ request: Request) async throws -> (value: JSONValue, hash: String) {
        var request = request
        let bytes: [UInt8]
        do {
            bytes = Array(try await request.collectBody(upTo: maxBodyBytes).readableBytesView)
        } catch is NIOTooManyBytesError {
            throw Problem(.contentTooLarge, code: "document_too_large", detail: "the body is larger than max_document_bytes (\(maxBodyBytes) bytes)")
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw Problem(.contentTooLarge, code: "document_too_large", detail: "the body is larger than max_document_bytes (\(maxBodyBytes) bytes)")
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
        return (value, value.checksum)
    }

    func batch(_ request: Request, validateOnly: Bool) async throws -> Response {
        let who = try operatorContext(request)
        try requireDatabase()
        let (value, hash) = try await body(request)
        var batch = try BatchRequest(value)
        if validateOnly { batch.dryRun = true }
        let key = request.headers[HTTPField.Name("Idempotency-Key")!].map { String($0.prefix(200)) }
        if let key, !batch.dryRun, let earlier = try await distributor.store.idempotentAnswer(key) {
            guard earlier.requestHash == hash else {
                throw Problem(.unprocessableContent, code: "idempotency_key_reused", detail: "this Idempotency-Key was used for a different request")
            }
            return Response.json(try JSONParser().parse(earlier.answer), headers: [HTTPField.Name("Idempotent-Replayed")!: "true"])
        }
        do {
            let result = try await distributor.applyBatch(batch, by: who, idempotencyKey: batch.dryRun ? nil : key, requestHash: hash)
            return Response.json(result.json)
        } catch let replay as IdempotentReplay {
            // A concurrent request with the same key committed first: its answer, never a second commit.
            guard replay.requestHash == hash else {
                throw Problem(.unprocessableContent, code: "idempotency_key_reused", detail: "this Idempotency-Key was used for a different request")
            }
            return Response.json(try JSONParser().parse(replay.answer), headers: [HTTPField.Name("Idempotent-Replayed")!: "true"])
        }
    }

    /// `If-Match`: `"<version>"`, the ETag (`"sha256:…"`) or `*`; returns the version it names.
    func expectedVersion(_ request: Request, _ service: ServiceName) throws -> Int? {
        guard let header = request.headers[.ifMatch]?.trimmingCharacters(in: .whitespaces) else { return nil }
        if header == "*" { return nil }
        let value = header.hasPrefix("\"") && header.hasSuffix("\"") && header.count >= 2 ? String(header.dropFirst().dropLast()) : header
        if let version = Int(value) { return version }
        guard let latest = cache.latest(service) else {
            throw Problem(.preconditionFailed, code: "version_conflict", detail: "\(service) has no version to match")
        }
        guard value == latest.checksum else {
            throw Problem(.preconditionFailed, code: "version_conflict", detail: "If-Match does not match the current version of \(service)")
        }
        return latest.version
    }

    func requireDatabase() throws {
        guard readiness.database else {
            throw Problem(.serviceUnavailable, code: "store_unavailable", detail: "the database is unreachable; nothing was changed")
        }
    }

    func documentResponse(_ outcome: CommitOutcome) -> Response {
        switch outcome {
        case .committed(let v), .unchanged(let v):
            return Response.json(v.document, headers: [.eTag: "\"\(v.checksum)\""])
        }
    }

    func override(_ request: Request, _ context: some RequestContext, _ method: OverrideMethod) async throws -> Response {
        let service = try service(context)
        let who = try operatorContext(request)
        try requireDatabase()
        let expected = try expectedVersion(request, service)
        let edit: OverrideEdit = switch method {
        case .put: .replace(try await jsonBody(request))
        case .patch: .patch(try await jsonBody(request))
        case .delete: .clear
        }
        return documentResponse(try await distributor.editOverride(service, edit, expectedVersion: expected, by: who))
    }

    func rollback(_ request: Request, _ context: some RequestContext) async throws -> Response {
        let service = try service(context)
        let who = try operatorContext(request)
        try requireDatabase()
        let expected = try expectedVersion(request, service)
        guard case .integer(let target)? = try await jsonBody(request)["version"], target >= 1 else {
            throw Problem(.badRequest, code: "bad_request", detail: "the body must be {\"version\": N} with N from 1")
        }
        return documentResponse(try await distributor.rollback(service, to: target, expectedVersion: expected, by: who))
    }

    func audit(_ request: Request) async throws -> Response {
        _ = try authorizeAdmin(request)
        let limit = min(try Self.integer(request, "limit") ?? 100, 1000)
        var service: ServiceName?
        if let raw = request.uri.queryParameters.get("service") {
            guard let name = try? ServiceName(validating: raw) else {
                throw Problem(.badRequest, code: "invalid_name", detail: "invalid service name")
            }
            service = name
        }
        let records = try await distributor.store.auditLog(service: service, limit: limit)
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
}
