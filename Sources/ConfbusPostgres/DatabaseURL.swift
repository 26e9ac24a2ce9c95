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
        self.init(host: host, port: c.port ?? 5432, username: user.removingPercentEncoding ?? user,
                  password: c.password?.removingPercentEncoding, database: database?.isEmpty == false ? database : nil, tls: tls)
        options.connectTimeout = .seconds(3)
    }
}

public struct DatabaseURLError: Error, CustomStringConvertible {
    public var description: String { "database_url must be postgres://user:password@host:port/database" }
}
