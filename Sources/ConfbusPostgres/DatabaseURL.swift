import Foundation
import PostgresNIO

extension PostgresClient.Configuration {
    /// `postgres://user:password@host:port/database?sslmode=disable|prefer|require`.
    public init(url text: String) throws {
        guard let c = URLComponents(string: text), let scheme = c.scheme, ["postgres", "postgresql"].contains(scheme.lowercased()),
              let host = c.host, !host.isEmpty, let user = c.user, !user.isEmpty
        else { throw DatabaseURLError() }
        let mode = c.queryItems?.first { $0.name == "sslmode" }?.value ?? "disable"
        let tls: PostgresClient.Configuration.TLS = switch mode {
        case "require", "verify-ca", "verify-full": .require(.makeClientConfiguration())
        case "prefer": .prefer(.makeClientConfiguration())
        default: .disable
        }
        let database = c.path.hasPrefix("/") ? String(c.path.dropFirst()) : nil
        // An IPv6 literal comes bracketed from the URL; the resolver wants it bare.
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        self.init(host: bare, port: c.port ?? 5432, username: user.removingPercentEncoding ?? user,
                  password: c.password?.removingPercentEncoding, database: database?.isEmpty == false ? database : nil, tls: tls)
        options.connectTimeout = .seconds(3)
    }

    /// One configuration per host of `postgres://user:password@h1:5432,h2:5432/database?…` (libpq's
    /// multi-host form; a host without a port takes 5432). Everything but the host is shared.
    public static func cluster(url text: String) throws -> [PostgresClient.Configuration] {
        guard let start = text.range(of: "://") else { throw DatabaseURLError() }
        let rest = text[start.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let at = authority.lastIndex(of: "@")
        let userInfo = at.map { String(authority[...$0]) } ?? ""
        let hosts = (at.map { authority[authority.index(after: $0)...] } ?? authority).split(separator: ",", omittingEmptySubsequences: false)
        guard !hosts.isEmpty, hosts.allSatisfy({ !$0.isEmpty }) else { throw DatabaseURLError() }
        let prefix = String(text[..<start.upperBound]) + userInfo
        return try hosts.map { host in try PostgresClient.Configuration(url: prefix + host + rest[authorityEnd...]) }
    }
}

public struct DatabaseURLError: Error, CustomStringConvertible {
    public var description: String { "database_url must be postgres://user:password@host:port[,host:port…]/database" }
}
