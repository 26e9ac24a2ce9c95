import ConfbusCore
import ConfbusEngine
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization

/// The read routes of CONTRACT.md §5: pull (with long-poll, `?version`, `?pointer`), history,
/// diff, services, instances, schemas. Pull is served from memory.
struct ReadController: Sendable {
    let allReads: ConfigReads
    let readiness: Readiness
    /// The running rollouts: `?instance=` gives a cohort member the candidate (CONTRACT.md §8).
    let rollouts: Rollouts
    var board: RolloutBoard { rollouts.board }
    let maxWait: Int = 60
    let encoded = EncodedDocuments()

    func addRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.get("/v1/config/:service", use: config)
        group.get("/v1/config/:service/history", use: history)
        group.get("/v1/config/:service/diff", use: diff)
        group.get("/v1/services", use: services)
        group.get("/v1/services/:service/instances", use: instances)
        group.get("/v1/schemas/:service", use: schema)
    }

    func staleHeaders() -> HTTPFields {
        readiness.database ? [:] : [HTTPField.Name("Confbus-Stale")!: "true"]
    }

    static func integer(_ request: Request, _ name: String) throws -> Int? {
        guard let raw = request.uri.queryParameters.get(name) else { return nil }
        guard let value = Int(raw), (0...Int(Int32.max)).contains(value) else {
            throw Problem(.badRequest, code: "bad_request", detail: "query parameter \(name) must be an integer from 0 to 2147483647")
        }
        return value
    }

    /// `true`/`1` or `false`/`0`; nil when absent.
    static func boolean(_ request: Request, _ name: String) throws -> Bool? {
        switch request.uri.queryParameters.get(name).map({ String($0) }) {
        case nil: nil
        case "true", "1": true
        case "false", "0": false
        default: throw Problem(.badRequest, code: "bad_request", detail: "\(name) must be true or false")
        }
    }

    /// What a pull asks for, read off the request before anything waits.
    struct PullQuery: Sendable {
        var service: ServiceName
        var version: Int?
        var pointer: JSONPointer?
        var wait: Int?
        var after: Int?
        var ifNoneMatch: String?
        var instance: String?
    }

    /// A pull in three parts, so that the frame a long-poll holds for its whole wait is small: the
    /// query parsed (synchronously), the version found (the only part that waits), the answer built.
    @Sendable func config(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let query = try pullQuery(request, context)
        let reads = VisibleReads(allReads, for: context.caller)
        guard let version = try await find(query, reads) else { return Response(status: .notModified, headers: staleHeaders()) }
        return try await respond(query, version, reads)
    }

    func pullQuery(_ request: Request, _ context: ConfbusRequestContext) throws -> PullQuery {
        let service = try context.requireService()
        let version = try Self.integer(request, "version")
        if request.uri.queryParameters.get("version") != nil, version == 0 {
            throw Problem(.badRequest, code: "bad_request", detail: "version starts at 1")
        }
        var pointer: JSONPointer?
        if let raw = request.uri.queryParameters.get("pointer") {
            guard let p = JSONPointer(raw), raw.hasPrefix("/") else {
                throw Problem(.badRequest, code: "bad_request", detail: "pointer must be a JSON pointer starting with /")
            }
            pointer = p
        }
        let instance = request.uri.queryParameters.get("instance").map { String($0) }
        if let instance, !InstanceMessages.isValidInstanceID(instance) {
            throw Problem(.badRequest, code: "bad_request", detail: "instance must be a valid instance id")
        }
        return PullQuery(service: service, version: version, pointer: pointer, wait: try Self.integer(request, "wait").map { min($0, maxWait) },
                         after: try Self.integer(request, "after"), ifNoneMatch: request.headers[.ifNoneMatch], instance: instance)
    }

    /// The version to answer with; nil for a long-poll that saw nothing newer (304).
    func find(_ query: PullQuery, _ reads: VisibleReads) async throws -> StoredVersion? {
        let service = query.service
        if let number = query.version {
            guard let stored = try await reads.version(service, number) else {
                throw Problem(.notFound, code: "not_found", detail: "\(service) has no version \(number)")
            }
            return stored
        }
        if let instance = query.instance, reads.sees(service), let candidate = board.candidate(for: service, instance: instance),
           query.wait == nil || candidate.version > (query.after ?? 0) {
            return candidate
        }
        if let wait = query.wait {
            let threshold = query.after ?? reads.latest(service)?.version ?? 0
            if let newer = await reads.wait(for: service, after: threshold, timeout: .seconds(wait)) { return newer }
            guard reads.latest(service) != nil else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no version") }
            return nil
        }
        guard let latest = reads.latest(service) else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no version") }
        return latest
    }

    func respond(_ query: PullQuery, _ version: StoredVersion, _ reads: VisibleReads) async throws -> Response {
        let service = query.service
        var headers = staleHeaders()
        let etag = "\"\(version.checksum)\""
        headers[.eTag] = etag
        let masking = await reads.masking(service)
        // Said out loud, so a client that verifies checksums knows why this one cannot match and
        // that it needs a token that sees the secrets.
        if masking != nil { headers[Self.masked] = "true" }
        if let pointer = query.pointer {
            guard let value = version.config.value(at: pointer) else {
                throw Problem(.notFound, code: "not_found", detail: "no value at \(pointer) in version \(version.version)")
            }
            return Response.json(["service": .string(service.rawValue), "version": .integer(version.version),
                                  "pointer": .string(pointer.description), "value": masking?.apply(to: value, at: pointer) ?? value], headers: headers)
        }
        if let match = query.ifNoneMatch, Self.etagMatches(match, etag) {
            return Response(status: .notModified, headers: headers)
        }
        headers[.contentType] = "application/json"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: encoded.body(of: version, masking: masking)))
    }

    static let masked = HTTPField.Name("Confbus-Masked")!

    static func etagMatches(_ header: String, _ etag: String) -> Bool {
        header.split(separator: ",").contains { candidate in
            let c = candidate.trimmingCharacters(in: .whitespaces)
            return c == "*" || c == etag || c == "W/" + etag
        }
    }

    @Sendable func history(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let reads = VisibleReads(allReads, for: context.caller)
        let service = try context.requireService()
        let limit = min(try Self.integer(request, "limit") ?? 50, 1000)
        let before = try Self.integer(request, "before")
        guard reads.latest(service) != nil else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no version") }
        let versions = try await reads.history(service, limit: limit, before: before)
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

    @Sendable func diff(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let reads = VisibleReads(allReads, for: context.caller)
        let service = try context.requireService()
        guard let from = try Self.integer(request, "from"), let to = try Self.integer(request, "to") else {
            throw Problem(.badRequest, code: "bad_request", detail: "diff needs from and to")
        }
        let changes = try await Self.changes(of: service, from: from, to: to, reads: reads).map(\.json)
        return Response.json([
            "service": .string(service.rawValue), "from": .integer(from), "to": .integer(to), "changes": .array(changes),
        ])
    }

    /// The leaf changes between two versions as this reader may see them (the API's diff and the
    /// console's): a secret, or a changed subtree that holds one, is masked whole.
    static func changes(of service: ServiceName, from: Int, to: Int, reads: VisibleReads) async throws -> [ConfigChange] {
        guard let old = try await reads.version(service, from), let new = try await reads.version(service, to) else {
            throw Problem(.notFound, code: "not_found", detail: "\(service) has no version \(from) or \(to)")
        }
        let masking = await reads.masking(service)
        return ConfigDiff.changes(from: old.config, to: new.config).map { change in
            var c = change
            if masking?.touches(c.path) == true {
                if c.old != nil { c.old = Redaction.mask }
                if c.new != nil { c.new = Redaction.mask }
            }
            return c
        }
    }

    @Sendable func services(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let reads = VisibleReads(allReads, for: context.caller)
        return Response.json(["services": .array(await serviceEntries(reads))], headers: staleHeaders())
    }

    /// Every service the caller sees, in name order, as `GET /v1/services` (and the console's fleet) lists it.
    func serviceEntries(_ reads: VisibleReads) async -> [JSONValue] {
        let counts = (try? await reads.instanceCounts()) ?? [:]
        let invalid = reads.invalidServices
        let diverged = (try? await reads.divergedServices()) ?? [:]
        var entries: [ServiceName: JSONValue] = [:]
        for v in reads.all {
            let c = counts[v.service] ?? (0, 0)
            var entry: [String: JSONValue] = [
                "service": .string(v.service.rawValue), "version": .integer(v.version),
                "checksum": .string(v.checksum), "updated_at": .string(Timestamp.format(v.createdAt)),
                "instances": .integer(c.total), "lagging": .integer(c.lagging), "state": "ok",
            ]
            if let divergence = diverged[v.service] { entry["state"] = "diverged"; entry["diverged"] = Self.divergence(divergence) }
            if let errors = invalid[v.service] { entry["state"] = "invalid"; entry["errors"] = Self.errorList(errors) }
            entry["released_version"] = .integer(v.version)
            if let running = board.running(v.service), let records = try? await reads.instances(v.service) {
                let m = running.record.machine
                entry["candidate_version"] = .integer(m.candidateVersion)
                entry["rollout"] = Self.rolloutSummary(m, answers(records, to: m))
            }
            entries[v.service] = .object(entry)
        }
        // A service whose files are invalid and that has no version yet is listed too.
        for (service, errors) in invalid where entries[service] == nil {
            entries[service] = .object(["service": .string(service.rawValue), "version": .null, "state": "invalid",
                                        "errors": Self.errorList(errors), "instances": .integer(0), "lagging": .integer(0)])
        }
        return entries.keys.sorted().compactMap { entries[$0] }
    }

    /// What a repair of a divergence did (CONTRACT.md §11).
    static func divergence(_ d: Divergence) -> JSONValue {
        ["retained_version": .integer(d.retainedVersion), "retained_checksum": .string(d.retainedChecksum),
         "database_version": .integer(d.databaseVersion), "repaired_version": .integer(d.repairedVersion),
         "detected_at": .string(Timestamp.format(d.detectedAt)), "reason": .string(d.reason)]
    }

    /// Errors as `[{code, message, location?}]`: paths, files, lines and rules, never a value.
    static func errorList(_ errors: [ConfbusError]) -> JSONValue {
        .array(errors.map { e in
            var o: [String: JSONValue] = ["code": .string(e.code.description), "message": .string(e.message)]
            if let l = e.location { o["location"] = .string(l.description) }
            return .object(o)
        })
    }

    @Sendable func instances(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let reads = VisibleReads(allReads, for: context.caller)
        let service = try context.requireService()
        guard let latest = reads.latest(service) else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no version") }
        let records = try await reads.instances(service)
        let now = Date()
        let rollout = board.running(service)?.record.machine
        var top: [String: JSONValue] = ["service": .string(service.rawValue), "version": .integer(latest.version),
                                        "released_version": .integer(latest.version)]
        let answered = rollout.map { answers(records, to: $0) } ?? []
        top["instances"] = .array(records.enumerated().map { index, r in
                var entry: [String: JSONValue] = [
                    "instance": .string(r.instance),
                    "first_seen": .string(Timestamp.format(r.firstSeen)),
                    "last_seen": .string(Timestamp.format(r.lastSeen)),
                    "health": r.health.map(JSONValue.string) ?? .null,
                    "applied_version": r.appliedVersion.map(JSONValue.integer) ?? .null,
                    "ack_status": r.ackStatus.map(JSONValue.string) ?? .null,
                    "detail": r.detail.map(JSONValue.string) ?? .null,
                    "lagging": .bool((r.appliedVersion ?? 0) < latest.version),
                    "lagging_since": r.laggingSince.map { .string(Timestamp.format($0)) } ?? .null,
                    "lag_seconds": r.laggingSince.map { .number((max(0, now.timeIntervalSince($0)) * 10).rounded() / 10) } ?? .null,
                    "features": .array(r.features.map(JSONValue.string)),
                ]
                if let rollout {
                    entry["rollout"] = ["in_cohort": .bool(answered[index].answer != "not_in_cohort"), "answer": .string(answered[index].answer)]
                }
                return .object(entry)
            })
        if let rollout {
            top["candidate_version"] = .integer(rollout.candidateVersion)
            top["rollout"] = Self.rolloutSummary(rollout, answered)
        }
        return Response.json(.object(top))
    }

    /// Each instance's answer to a running rollout's candidate, as the rollout itself counts it
    /// (`not_in_cohort` outside the cohort).
    func answers(_ records: [InstanceRecord], to rollout: RolloutMachine) -> [(record: InstanceRecord, answer: String)] {
        let members = rollout.answers(Rollouts.machineInstances(records, ttl: rollouts.instanceTTL, now: Date()))
        return records.map { ($0, members[$0.instance]?.rawValue ?? "not_in_cohort") }
    }

    /// The drift view of §8 for a service with a running rollout: its step, the cohort's answers and
    /// the last rejection (instance and detail).
    static func rolloutSummary(_ rollout: RolloutMachine, _ answered: [(record: InstanceRecord, answer: String)]) -> JSONValue {
        func count(_ answer: String) -> JSONValue { .integer(answered.filter { $0.answer == answer }.count) }
        var summary: [String: JSONValue] = ["id": .string(rollout.id), "step": .integer(rollout.step + 1), "steps": .integer(rollout.policy.steps.count),
                                            "cohort": .integer(rollout.cohort.count),
                                            "applied": count("applied"), "rejected": count("rejected"), "pending": count("pending")]
        if let last = answered.filter({ $0.answer == "rejected" }).max(by: { $0.record.lastSeen < $1.record.lastSeen }) {
            summary["last_rejection"] = ["instance": .string(last.record.instance), "detail": last.record.detail.map(JSONValue.string) ?? .null]
        }
        return .object(summary)
    }

    @Sendable func schema(_ request: Request, _ context: ConfbusRequestContext) async throws -> Response {
        let reads = VisibleReads(allReads, for: context.caller)
        let service = try context.requireService()
        guard let schema = await reads.schema(service) else { throw Problem(.notFound, code: "not_found", detail: "\(service) has no schema") }
        return Response.json(schema)
    }
}

/// Each service's latest document, encoded once: a pull copies a reference to these bytes.
/// The masked form (secrets as `"***"`) is kept beside the full one, keyed also by the redaction
/// it was made with, since a reload can change which values are secret without a new version.
final class EncodedDocuments: Sendable {
    private struct Held: Sendable {
        var version: Int
        var checksum: String
        var redaction: Redaction?
        var body: ByteBuffer
    }

    private struct Key: Hashable {
        var service: ServiceName
        var masked: Bool
        /// A rollout's candidate has its own slot, so serving it to the cohort does not push the
        /// released document out.
        var candidate: Bool
    }

    private let bodies = Mutex<[Key: Held]>([:])

    func body(of version: StoredVersion, masking redaction: Redaction? = nil) -> ByteBuffer {
        let key = Key(service: version.service, masked: redaction != nil, candidate: version.source == .rollout)
        if let held = bodies.withLock({ $0[key] }), held.version == version.version, held.checksum == version.checksum,
           held.redaction == redaction {
            return held.body
        }
        var document = version.document
        if let redaction, case .object(var object) = document, let config = object["config"] {
            object["config"] = redaction.apply(to: config)
            document = .object(object)
        }
        var bytes = document.serializedBytes()
        bytes.append(0x0A)
        let body = ByteBuffer(bytes: bytes)
        bodies.withLock { all in
            // Only the newest version of a service is kept (a `?version=` read of an old one is encoded each time).
            if (all[key]?.version ?? 0) <= version.version {
                all[key] = Held(version: version.version, checksum: version.checksum, redaction: redaction, body: body)
            }
        }
        return body
    }
}
