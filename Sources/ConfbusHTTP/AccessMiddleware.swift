import ConfbusCore
import ConfbusEngine
import Foundation
import Hummingbird

/// The tokens of CONTRACT.md §6: reads are open unless read tokens are configured; an admin
/// token reads everything; with no admin token configured every admin call is 401.
public struct AccessPolicy: Sendable {
    public let adminTokens: [AccessToken]
    public let readTokens: [AccessToken]

    public init(adminTokens: [AccessToken], readTokens: [AccessToken]) {
        self.adminTokens = adminTokens
        self.readTokens = readTokens
    }

    static func bearer(_ request: Request) -> String? {
        guard let header = request.headers[.authorization], header.lowercased().hasPrefix("bearer ") else { return nil }
        return String(header.dropFirst(7)).trimmingCharacters(in: .whitespaces)
    }

    func admin(_ presented: String?) -> Caller? {
        guard let presented, let token = adminTokens.first(where: { $0.matches(presented) }) else { return nil }
        return .admin(name: token.name)
    }

    func reader(_ request: Request) throws -> Caller {
        let presented = Self.bearer(request)
        if let admin = admin(presented) { return admin }
        guard !readTokens.isEmpty else { return .reader(nil) }
        guard let presented else { throw Problem(.unauthorized, code: "unauthorized", detail: "a read token is required") }
        guard let token = readTokens.first(where: { $0.matches(presented) }) else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "unknown token")
        }
        return .reader(token)
    }

    func administrator(_ request: Request) throws -> Caller {
        guard let admin = admin(Self.bearer(request)) else {
            throw Problem(.unauthorized, code: "unauthorized", detail: "an admin token is required")
        }
        return admin
    }
}

/// The `:service` of the path, validated once (a malformed name is 400).
func pathService(_ context: ConfbusRequestContext) throws -> ServiceName? {
    guard let raw = context.parameters.get("service") else { return nil }
    do {
        // Percent-decoding goes through Foundation: only for names that have a %.
        return try ServiceName(validating: raw.utf8.contains(UInt8(ascii: "%")) ? (raw.removingPercentEncoding ?? String(raw)) : String(raw))
    } catch {
        throw Problem(.badRequest, code: "invalid_name", detail: "invalid service name in the URL")
    }
}

/// Every read route passes here: the caller must hold a read (or admin) token when reads are
/// closed. Which services it may see is decided by `VisibleReads`, where a service outside its
/// scope answers exactly as a missing one.
struct ReadAccessMiddleware: RouterMiddleware {
    let policy: AccessPolicy
    let limiter: RateLimiter

    func handle(_ request: Request, context: ConfbusRequestContext,
                next: (Request, ConfbusRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        let caller = try policy.reader(request)
        try limiter.admit(caller)
        context.caller = caller
        context.service = try pathService(context)
        return try await next(request, context)
    }
}

/// Every admin route passes here: an admin token, then the path's service; a write while the
/// database is unreachable is 503 before anything is parsed.
struct AdminAccessMiddleware: RouterMiddleware {
    let policy: AccessPolicy
    let readiness: Readiness
    let limiter: RateLimiter

    /// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to.
    static func sameOrigin(_ origin: String, _ request: Request) -> Bool {
        guard let host = request.head.authority,
              let separator = origin.range(of: "://") else { return false }
        return origin[separator.upperBound...].lowercased() == host.lowercased()
    }

    func handle(_ request: Request, context: ConfbusRequestContext,
                next: (Request, ConfbusRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        // A write a browser sends from another site's page is refused whatever it carries
        // (CSRF); tools send no Origin, and the console's own script sends this origin.
        if request.method != .get, request.method != .head, let origin = request.headers[.origin], !Self.sameOrigin(origin, request) {
            throw Problem(.forbidden, code: "cross_origin", detail: "a write from another origin (\(origin.prefix(100))) is refused")
        }
        context.caller = try policy.administrator(request)
        try limiter.admit(context.caller)
        context.service = try pathService(context)
        if request.method != .get, !readiness.database {
            throw Problem(.serviceUnavailable, code: "store_unavailable", detail: "the database is unreachable; nothing was changed")
        }
        return try await next(request, context)
    }
}
