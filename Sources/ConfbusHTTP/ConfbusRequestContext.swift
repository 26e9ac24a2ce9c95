import ConfbusCore
import Hummingbird

/// Who is calling, as the access middleware established it before any handler runs.
public enum Caller: Sendable {
    /// An admin token: may read and change everything.
    case admin(name: String)
    /// A read token, limited to its services when it names some; nil when reads are open.
    case reader(AccessToken?)

    public var isAdmin: Bool {
        if case .admin = self { return true }
        return false
    }

    /// Secret values in full: an admin, or a read token scoped to this service (the service itself).
    /// Open reads and unscoped read tokens see them masked.
    public func seesSecrets(of service: ServiceName) -> Bool {
        switch self {
        case .admin: true
        case .reader(let token): token?.services?.contains(service.rawValue) ?? false
        }
    }

    public func mayRead(_ service: ServiceName) -> Bool {
        switch self {
        case .admin: true
        case .reader(let token): token?.allows(service) ?? true
        }
    }
}

/// The request context of every confbus route: the caller and the service the path names, both
/// filled in by the group's middleware, so a handler can neither skip the check nor repeat it.
public struct ConfbusRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var caller: Caller?
    public var service: ServiceName?

    public init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
    }

    /// The service of the path (`:service`), checked by the middleware.
    func requireService() throws -> ServiceName {
        guard let service else { throw Problem(.badRequest, code: "invalid_name", detail: "missing service") }
        return service
    }

    /// The admin's name; only admin routes' middleware sets an admin caller.
    func adminName() throws -> String {
        guard case .admin(let name)? = caller else { throw Problem(.unauthorized, code: "unauthorized", detail: "an admin token is required") }
        return name
    }
}
