/// Replaces secret values with `"***"` (CONTRACT.md §6c: secrets reach only their own service and
/// admins). A path token `*` matches any member of an object and any item of an array.
public struct Redaction: Sendable, Equatable {
    public static let mask: JSONValue = "***"
    public let paths: [[String]]

    public init(paths: [[String]]) { self.paths = paths }

    /// Every member masked: for a service whose schema is not known, so none of its secrets can be.
    public static let everything = Redaction(paths: [[]])

    public var isEmpty: Bool { paths.isEmpty }

    private static func matches(_ path: [String], _ tokens: ArraySlice<String>) -> Bool {
        zip(path, tokens).allSatisfy { $0 == "*" || $0 == $1 }
    }

    /// Whether `pointer` is a secret or lies inside one.
    public func covers(_ pointer: JSONPointer) -> Bool {
        paths.contains { path in path.count <= pointer.tokens.count && Self.matches(path, pointer.tokens[...]) }
    }

    /// Whether the value at `pointer` is a secret, lies inside one or holds one: a changed subtree
    /// that contains a secret is masked whole.
    public func touches(_ pointer: JSONPointer) -> Bool {
        paths.contains { path in Self.matches(path, pointer.tokens[...]) }
    }

    public func apply(to value: JSONValue) -> JSONValue {
        isEmpty ? value : redact(value, at: [])
    }

    /// The value at `pointer` with the secrets in it masked (all of it when it is one).
    public func apply(to value: JSONValue, at pointer: JSONPointer) -> JSONValue {
        if isEmpty { return value }
        if !pointer.tokens.isEmpty && covers(pointer) { return Self.mask }
        return redact(value, at: pointer.tokens)
    }

    private func redact(_ value: JSONValue, at tokens: [String]) -> JSONValue {
        if !tokens.isEmpty && covers(JSONPointer(tokens: tokens)) { return Self.mask }
        switch value {
        case .object(let object):
            var out: [String: JSONValue] = [:]
            for (key, member) in object { out[key] = redact(member, at: tokens + [key]) }
            return .object(out)
        case .array(let items):
            return .array(items.enumerated().map { redact($1, at: tokens + [String($0)]) })
        default:
            return value
        }
    }
}
