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
    let api: ReadController
    let policy: AccessPolicy
    let library: MustacheLibrary

    init(reads: ConfigReads, api: ReadController, policy: AccessPolicy) {
        self.reads = reads
        self.api = api
        self.policy = policy
        var library = MustacheLibrary()
        // The templates are constants of this module: one that does not parse is a build defect.
        for (name, text) in [("layout", ConsoleTemplates.layout), ("fleet", ConsoleTemplates.fleet), ("service", ConsoleTemplates.service)] {
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
        group.get("/ui/assets/console.css") { _, _ in asset(ConsoleAssets.css, type: "text/css; charset=utf-8") }
        group.get("/ui/assets/console.js") { _, _ in asset(ConsoleAssets.js, type: "text/javascript; charset=utf-8") }
    }

    /// The fragments, behind `ReadAccessMiddleware` like every read of the API.
    func addReadRoutes(to group: RouterGroup<ConfbusRequestContext>) {
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
                row["rollout"] = ["step": (rollout["step"]?.integralValue ?? 0) + 1, "steps": rollout["steps"]?.arrayValue?.count ?? 0,
                                  "candidate": candidate]
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
        let history: [[String: Any]] = try await reads.history(service, limit: 50, before: nil).map { version in
            ["version": version.version, "source": version.source.rawValue, "author": version.author, "reason": version.reason ?? "",
             "created": Timestamp.format(version.createdAt), "short": String(version.checksum.prefix(19))]
        }
        var values: [String: Any] = [
            "name": service.rawValue, "version": latest.version, "checksum": latest.checksum, "updated": Timestamp.format(latest.createdAt),
            "document": config.serialized(.pretty), "instances": instances, "hasInstances": !instances.isEmpty, "history": history,
            "masked": masking != nil, "stale": !api.readiness.database,
        ]
        if let divergence = (try? await reads.divergedServices())?[service] { values["diverged"] = ["reason": divergence.reason] }
        return (.ok, render("service", values))
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
