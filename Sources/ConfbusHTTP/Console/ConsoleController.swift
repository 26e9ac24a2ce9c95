import ConfbusCore
import ConfbusEngine
import Foundation
import HTTPTypes
import Hummingbird
import Mustache

/// The operators' console under `/ui/` (issue 13): pages rendered on the server from Mustache
/// templates, a stylesheet and one script, all compiled in. A page is a shell plus a fragment;
/// the fragment is also served alone under `/ui/fragments/…` behind the same read checks as the
/// API, so the script can fetch it again with the token the operator signed in with (kept in
/// `sessionStorage`, never in a cookie) and swap it in. A browser's first request carries no
/// token, so the shell shows what an open reader may see, or asks for a token.
struct ConsoleController: Sendable {
    let reads: ConfigReads
    let rollouts: Rollouts
    let api: ReadController
    let policy: AccessPolicy
    let library: MustacheLibrary

    init(reads: ConfigReads, rollouts: Rollouts, api: ReadController, policy: AccessPolicy) {
        self.reads = reads
        self.rollouts = rollouts
        self.api = api
        self.policy = policy
        var library = MustacheLibrary()
        // The templates are constants of this module: one that does not parse is a build defect.
        for (name, text) in [("layout", ConsoleTemplates.layout), ("fleet", ConsoleTemplates.fleet), ("service", ConsoleTemplates.service),
                             ("diff", ConsoleTemplates.diff), ("audit", ConsoleTemplates.audit), ("rollout", ConsoleTemplates.rollout)] {
            try! library.register(text, named: name)
        }
        self.library = library
    }

    /// A strict policy: only this origin's stylesheet and script, no inline code, no framing.
    static let securityHeaders: HTTPFields = [
        HTTPField.Name("Content-Security-Policy")!: "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            + "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        HTTPField.Name("X-Content-Type-Options")!: "nosniff",
        HTTPField.Name("Referrer-Policy")!: "no-referrer",
        HTTPField.Name("Cache-Control")!: "no-store",
    ]

    /// The shells and assets: open, as `/healthz` is (what they show is decided per reader).
    func addOpenRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        // The router takes `/ui` and `/ui/` as one path.
        group.get("/ui/") { request, _ in try await shell(request, title: "Fleet", fragment: "/ui/fragments/fleet") { try await fleet($0) } }
        group.get("/ui/services/{service}") { request, context in
            let service = try Self.service(context)
            return try await shell(request, title: service.rawValue, fragment: "/ui/fragments/services/\(service)") {
                try await page(of: service, $0)
            }
        }
        group.get("/ui/services/{service}/diff") { request, context in
            let service = try Self.service(context)
            let (from, to) = try Self.versions(request)
            return try await shell(request, title: "\(service) v\(from) → v\(to)", fragment: "/ui/fragments/services/\(service)/diff?from=\(from)&to=\(to)") {
                try await diff(of: service, from: from, to: to, $0)
            }
        }
        group.get("/ui/rollouts/{id}") { request, context in
            let id = try RolloutController.id(context)
            return try await shell(request, title: "Rollout", fragment: "/ui/fragments/rollouts/\(id)") { try await rollout(id, $0) }
        }
        group.get("/ui/audit") { request, _ in
            // The audit log is an admin's read, as `GET /v1/audit` is.
            let body: String
            do {
                _ = try policy.administrator(request)
                body = try await audit()
            } catch let problem as Problem where problem.status == .unauthorized {
                body = render("audit", ["problem": "Sign in with an admin token to see the audit log."])
            }
            return html(render("layout", ["title": "Audit", "fragment": "/ui/fragments/audit", "body": body]))
        }
        group.get("/ui/assets/console.css") { _, _ in asset(ConsoleAssets.css, type: "text/css; charset=utf-8") }
        group.get("/ui/assets/console.js") { _, _ in asset(ConsoleAssets.js, type: "text/javascript; charset=utf-8") }
    }

    /// The audit fragment, behind `AdminAccessMiddleware` like `GET /v1/audit`.
    func addAdminRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.get("/ui/fragments/audit") { _, _ in html(try await audit()) }
    }

    /// The fragments, behind `ReadAccessMiddleware` like every read of the API.
    func addReadRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.get("/ui/fragments/rollouts/{id}") { _, context in
            let (status, body) = try await rollout(try RolloutController.id(context), VisibleReads(reads, for: context.caller))
            return html(body, status: status)
        }
        group.get("/ui/fragments/services/{service}/diff") { request, context in
            let (from, to) = try Self.versions(request)
            let (status, body) = try await diff(of: try context.requireService(), from: from, to: to, VisibleReads(reads, for: context.caller))
            return html(body, status: status)
        }
        group.get("/ui/fragments/fleet") { _, context in
            html(try await fleet(VisibleReads(reads, for: context.caller)).1)
        }
        group.get("/ui/fragments/services/{service}") { _, context in
            let (status, body) = try await page(of: try context.requireService(), VisibleReads(reads, for: context.caller))
            return html(body, status: status)
        }
    }

    static func service(_ context: ConfbusRequestContext) throws -> ServiceName {
        guard let service = try pathService(context) else { throw Problem(.badRequest, code: "invalid_name", detail: "missing service") }
        return service
    }

    /// `from` and `to` of a diff page: both positive integers.
    static func versions(_ request: Request) throws -> (Int, Int) {
        guard let from = try ReadController.integer(request, "from"), let to = try ReadController.integer(request, "to"), from >= 1, to >= 1 else {
            throw Problem(.badRequest, code: "bad_request", detail: "a diff needs from and to, versions from 1")
        }
        return (from, to)
    }

    // MARK: Rendering

    /// The layout around a fragment rendered for the request's reader (open reads, or none).
    private func shell(_ request: Request, title: String, fragment: String,
                       _ fragmentFor: (VisibleReads) async throws -> (HTTPResponse.Status, String)) async throws -> Response {
        let (status, body): (HTTPResponse.Status, String)
        do {
            (status, body) = try await fragmentFor(VisibleReads(reads, for: try policy.reader(request)))
        } catch let problem as Problem where problem.status == .unauthorized {
            (status, body) = (.ok, render("fleet", ["problem": "Sign in with a read or admin token to see what this console shows."]))
        }
        return html(render("layout", ["title": title, "fragment": fragment, "body": body]), status: status)
    }

    private func fleet(_ reads: VisibleReads) async throws -> (HTTPResponse.Status, String) {
        let entries = await api.serviceEntries(reads)
        let services: [[String: Any]] = entries.map { entry in
            var row: [String: Any] = [
                "name": entry["service"]?.stringValue ?? "",
                "state": entry["state"]?.stringValue ?? "ok",
                "instances": entry["instances"]?.integralValue ?? 0,
                "lagging": entry["lagging"]?.integralValue ?? 0,
                "updated": entry["updated_at"]?.stringValue ?? "",
            ]
            if let version = entry["released_version"]?.integralValue ?? entry["version"]?.integralValue { row["version"] = version }
            if case .array(let errors)? = entry["errors"] {
                row["errors"] = errors.map { ["message": $0["message"]?.stringValue ?? "", "location": $0["location"]?.stringValue as Any] }
            }
            if let rollout = entry["rollout"], let candidate = entry["candidate_version"]?.integralValue {
                row["rollout"] = ["id": rollout["id"]?.stringValue ?? "", "step": rollout["step"]?.integralValue ?? 0,
                                  "steps": rollout["steps"]?.integralValue ?? 0, "candidate": candidate]
            }
            return row
        }
        return (.ok, render("fleet", ["services": services, "count": services.count, "stale": !api.readiness.database]))
    }

    private func page(of service: ServiceName, _ reads: VisibleReads) async throws -> (HTTPResponse.Status, String) {
        guard let latest = reads.latest(service) else {
            return (.notFound, render("service", ["problem": "No service \(service) (or none this token may see)."]))
        }
        let masking = await reads.masking(service)
        let config = masking?.apply(to: latest.config) ?? latest.config
        let instances: [[String: Any]] = try await reads.instances(service).map { record in
            let applied = record.appliedVersion
            return ["instance": record.instance, "health": record.health ?? "—", "applied": applied.map { "v\($0)" } ?? "—",
                    "lag": applied.map { max(0, latest.version - $0) }.map(String.init) ?? "—",
                    "ack": record.ackStatus ?? "—", "seen": Timestamp.format(record.lastSeen)]
        }
        let versions = try await reads.history(service, limit: 50, before: nil)
        // Newest first: each one's previous is the next in the list (numbers skip after a repair).
        let history: [[String: Any]] = versions.enumerated().map { index, version in
            ["version": version.version, "previous": index + 1 < versions.count ? versions[index + 1].version : false,
             "source": version.source.rawValue, "author": version.author, "reason": version.reason ?? "",
             "created": Timestamp.format(version.createdAt), "short": String(version.checksum.prefix(19))]
        }
        let flags = await flags(of: latest)
        var values: [String: Any] = [
            "values": try await provenance(of: latest, shown: config, reads), "flags": flags, "hasFlags": !flags.isEmpty,
            "name": service.rawValue, "version": latest.version, "checksum": latest.checksum, "updated": Timestamp.format(latest.createdAt),
            "document": config.serialized(.pretty), "instances": instances, "hasInstances": !instances.isEmpty, "history": history,
            "masked": masking != nil, "stale": !api.readiness.database,
        ]
        // Write controls only for an admin (whom the API would let write anyway).
        if reads.isAdmin {
            values["editable"] = true
            values["layer"] = (try await reads.overrideLayer(service) ?? .object([:])).serialized(.pretty)
        }
        if let divergence = (try? await reads.divergedServices())?[service] { values["diverged"] = ["reason": divergence.reason] }
        return (.ok, render("service", values))
    }

    /// The version's feature flags (CONTRACT.md §12), as `GET /v1/flags` lists them: a secret one
    /// is left out for every reader.
    private func flags(of version: StoredVersion) async -> [[String: Any]] {
        await reads.flags(of: version).compactMap { pointer, json in
            guard let flag = try? FeatureFlag(json: json) else { return nil }
            return ["pointer": pointer.description, "enabled": flag.enabled ? "on" : "off", "percentage": Self.percent(flag.rolloutPercentage),
                    "variants": flag.variants.map { "\($0.name) \(Self.percent($0.weight))" }.joined(separator: ", "),
                    "rules": flag.rules.map { rule in
                        "\(rule.attribute) \(rule.op.rawValue) \(rule.values.map { $0.serialized(.canonical) }.joined(separator: ", ")) → \(rule.serve.json.serialized(.canonical))"
                    }]
        }
    }

    static func percent(_ value: Double) -> String { value.rounded() == value ? String(Int(value)) : String(value) }

    /// Each leaf of the shown (masked) document with the layer and source that set it, as the
    /// version was committed; a version stored without them (imported) shows its values alone.
    private func provenance(of version: StoredVersion, shown config: JSONValue, _ reads: VisibleReads) async throws -> [[String: Any]] {
        let layers = try await reads.layers(version.service, version: version.version)?.objectValue ?? [:]
        return config.leaves().map { pointer, value in
            var row: [String: Any] = ["pointer": pointer.description, "value": value.serialized(.canonical)]
            if case .object(let origin)? = layers[pointer.description] {
                let layer = origin["layer"]?.stringValue ?? ""
                row["layer"] = layer
                row["kind"] = layer.replacingOccurrences(of: " ", with: "-")
                var source = Self.relative(origin["source"]?.stringValue ?? "", service: version.service)
                if let line = origin["line"]?.integralValue, let column = origin["column"]?.integralValue { source += ":\(line):\(column)" }
                row["source"] = source
            }
            return row
        }
    }

    /// A file as the tree names it (`services/<service>/defaults.yaml`): the version stores the
    /// committing node's absolute path, which says nothing to an operator of another node.
    static func relative(_ source: String, service: ServiceName) -> String {
        guard source.hasPrefix("/"), let range = source.range(of: "/services/\(service)/", options: .backwards) else { return source }
        return String(source[source.index(after: range.lowerBound)...])
    }

    private func diff(of service: ServiceName, from: Int, to: Int, _ reads: VisibleReads) async throws -> (HTTPResponse.Status, String) {
        let changes: [ConfigChange]
        do {
            changes = try await ReadController.changes(of: service, from: from, to: to, reads: reads)
        } catch let problem as Problem where problem.status == .notFound {
            return (.notFound, render("diff", ["problem": "\(service) has no version \(from) or \(to) (or this token may not see it)."]))
        }
        let rows: [[String: Any]] = changes.map { change in
            ["op": change.op.rawValue, "path": change.path.description,
             "old": change.old?.serialized(.pretty) ?? "", "new": change.new?.serialized(.pretty) ?? ""]
        }
        return (.ok, render("diff", ["name": service.rawValue, "from": from, "to": to, "changes": rows, "hasChanges": !rows.isEmpty]))
    }

    /// A rollout's progress, read like its service; promote and abort for an admin while it runs.
    private func rollout(_ id: String, _ reads: VisibleReads) async throws -> (HTTPResponse.Status, String) {
        guard let view = try await rollouts.rollout(id: id), reads.sees(view.record.machine.service) else {
            return (.notFound, render("rollout", ["problem": "No rollout \(id) (or none this token may see)."]))
        }
        let json = RolloutController.json(view)
        let m = view.record.machine
        let phase = json["phase"]?.stringValue ?? ""
        var values: [String: Any] = [
            "id": m.id, "service": m.service.rawValue, "stable": m.stableVersion, "candidate": m.candidateVersion, "phase": phase,
            "step": m.step + 1, "stepCount": m.policy.steps.count, "actor": view.record.actor, "started": Timestamp.format(view.record.startedAt),
            "steps": m.policy.steps.enumerated().map { index, percent -> [String: Any] in
                ["percent": percent, "current": index == m.step && !m.phase.isFinished, "done": index < m.step || m.phase.isFinished]
            },
            "applied": view.count(.applied), "rejected": view.count(.rejected), "pending": view.count(.pending),
            "members": view.members.map { ["instance": $0.instance, "answer": $0.answer.rawValue, "detail": $0.detail ?? ""] },
            "bake": json["bake"]?.stringValue ?? "", "ackTimeout": json["ack_timeout"]?.stringValue ?? "", "maxRejected": m.policy.maxRejected,
            "operable": reads.isAdmin && !m.phase.isFinished,
        ]
        if let reason = view.record.reason { values["reason"] = reason }
        if let reason = json["rollback_reason"]?.stringValue { values["rollbackReason"] = reason }
        if let deadline = m.deadline, !m.phase.isFinished {
            values["timeLeft"] = "\(max(0, Int(deadline.timeIntervalSinceNow.rounded(.up)))) s"
        }
        return (.ok, render("rollout", values))
    }

    private func audit() async throws -> String {
        let entries: [[String: Any]] = try await reads.auditLog(service: nil, limit: 200).map { record in
            ["at": record.at.map(Timestamp.format) ?? "", "actor": record.actor, "action": record.action, "outcome": record.outcome,
             "services": record.services.joined(separator: ", "), "reason": record.reason ?? "", "detail": record.detail ?? ""]
        }
        return render("audit", ["entries": entries, "count": entries.count])
    }

    private func render(_ template: String, _ values: [String: Any]) -> String {
        library.render(values, withTemplate: template) ?? ""
    }

    private func html(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = Self.securityHeaders
        headers[.contentType] = "text/html; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }

    private func asset(_ text: String, type: String) -> Response {
        var headers = Self.securityHeaders
        headers[.contentType] = type
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
