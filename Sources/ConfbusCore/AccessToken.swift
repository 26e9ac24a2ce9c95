/// A bearer token from settings (CONTRACT.md §6): `name=secret`, a bare `secret` (named
/// `token-<n>`), or for read tokens `name:billing|worker=secret`, limited to those services.
/// The secret never appears in `description`; comparison takes the same time wherever it differs.
public struct AccessToken: Sendable, CustomStringConvertible {
    public var name: String
    public var services: Set<String>?
    private let secret: [UInt8]

    public init(name: String, secret: String, services: Set<String>? = nil) {
        self.name = name
        self.secret = Array(secret.utf8)
        self.services = services
    }

    /// Parses a list of entries; `index` numbers the bare ones from 1 in list order.
    public static func parseList(_ entries: [String]) throws(ConfbusError) -> [AccessToken] {
        var tokens: [AccessToken] = []
        for (n, raw) in entries.enumerated() {
            let entry = raw.trimmingWhitespace
            guard !entry.isEmpty else { continue }
            guard let eq = entry.firstIndex(of: "=") else {
                tokens.append(AccessToken(name: "token-\(n + 1)", secret: entry))
                continue
            }
            var name = String(entry[..<eq])
            let secret = String(entry[entry.index(after: eq)...])
            guard !secret.isEmpty, !name.isEmpty else {
                throw ConfbusError(code: .badRequest, message: "token entry \(n + 1) is malformed: use name=secret or a bare secret")
            }
            var services: Set<String>?
            if let colon = name.firstIndex(of: ":") {
                let list = name[name.index(after: colon)...].split(separator: "|").map(String.init)
                guard !list.isEmpty, list.allSatisfy(ServiceName.isValid) else {
                    throw ConfbusError(code: .badRequest, message: "token \"\(name[..<colon])\" names an invalid service")
                }
                services = Set(list)
                name = String(name[..<colon])
            }
            tokens.append(AccessToken(name: name, secret: secret, services: services))
        }
        return tokens
    }

    /// Constant-time comparison with a presented secret.
    public func matches(_ presented: String) -> Bool {
        let other = Array(presented.utf8)
        var difference = UInt8(truncatingIfNeeded: secret.count ^ other.count)
        for i in 0..<max(secret.count, other.count) {
            let a = i < secret.count ? secret[i] : 0
            let b = i < other.count ? other[i] : 0
            difference |= a ^ b
        }
        return difference == 0
    }

    public func allows(_ service: ServiceName) -> Bool { services?.contains(service.rawValue) ?? true }

    public var description: String { "AccessToken(\(name))" }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let f = s.first, f.isWhitespace { s = s.dropFirst() }
        while let l = s.last, l.isWhitespace { s = s.dropLast() }
        return String(s)
    }
}
