/// Replaces secret values with `"***"` (CONTRACT.md: secrets reach only their own service).
/// A path segment `*` matches any member.
public struct Redaction: Sendable {
    public static let mask: JSONValue = "***"
    public let paths: [[String]]

    public init(paths: [[String]]) { self.paths = paths }

    public var isEmpty: Bool { paths.isEmpty }

    /// Whether `pointer` is a secret or lies inside one.
    public func covers(_ pointer: JSONPointer) -> Bool {
        paths.contains { path in
            path.count <= pointer.tokens.count && zip(path, pointer.tokens).allSatisfy { $0 == "*" || $0 == $1 }
        }
    }

    public func apply(to value: JSONValue) -> JSONValue { redact(value, at: .root) }

    private func redact(_ value: JSONValue, at pointer: JSONPointer) -> JSONValue {
        if !pointer.tokens.isEmpty && covers(pointer) { return Self.mask }
        guard case .object(let object) = value else { return value }
        var out: [String: JSONValue] = [:]
        for (key, member) in object { out[key] = redact(member, at: pointer.appending(key)) }
        return .object(out)
    }
}
