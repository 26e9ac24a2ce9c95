/// An RFC 6901 JSON pointer, kept as its unescaped reference tokens.
public struct JSONPointer: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var tokens: [String]

    public init(tokens: [String] = []) { self.tokens = tokens }

    /// Parses `"/a/b~1c"`; the empty string is the whole document.
    public init?(_ text: String) {
        if text.isEmpty { self.tokens = []; return }
        guard text.hasPrefix("/") else { return nil }
        var tokens: [String] = []
        for raw in text.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            // By scalar, not by Character: "~0" followed by a combining mark or a modifier is one
            // Character in Swift, yet still the escape "~0" then that scalar (RFC 6901 counts code points).
            var token = String.UnicodeScalarView()
            var iterator = raw.unicodeScalars.makeIterator()
            while let c = iterator.next() {
                if c == "~" {
                    switch iterator.next() {
                    case "0": token.append("~")
                    case "1": token.append("/")
                    default: return nil
                    }
                } else {
                    token.append(c)
                }
            }
            tokens.append(String(token))
        }
        self.tokens = tokens
    }

    public static let root = JSONPointer()

    public var description: String {
        var text = ""
        for token in tokens {
            text.append("/")
            text.append(Self.escape(token))
        }
        return text
    }

    /// A token as it is written in a pointer's string form (RFC 6901: `~` is `~0`, `/` is `~1`).
    public static func escape(_ token: String) -> String {
        guard token.utf8.contains(where: { $0 == UInt8(ascii: "~") || $0 == UInt8(ascii: "/") }) else { return token }
        return token.replacingAll("~", with: "~0").replacingAll("/", with: "~1")
    }

    public func appending(_ token: String) -> JSONPointer { JSONPointer(tokens: tokens + [token]) }
    public func appending(_ index: Int) -> JSONPointer { appending(String(index)) }

    public var parent: JSONPointer? { tokens.isEmpty ? nil : JSONPointer(tokens: Array(tokens.dropLast())) }

    public func isPrefix(of other: JSONPointer) -> Bool {
        other.tokens.count >= tokens.count && Array(other.tokens.prefix(tokens.count)) == tokens
    }

    public static func < (lhs: JSONPointer, rhs: JSONPointer) -> Bool {
        lhs.tokens.lexicographicallyPrecedes(rhs.tokens)
    }
}

extension JSONValue {
    /// The value a pointer names, or nil when it names nothing.
    public func value(at pointer: JSONPointer) -> JSONValue? {
        var current = self
        for token in pointer.tokens {
            switch current {
            case .object(let o):
                guard let next = o[token] else { return nil }
                current = next
            case .array(let a):
                guard let index = Self.arrayIndex(token), index < a.count else { return nil }
                current = a[index]
            default:
                return nil
            }
        }
        return current
    }

    /// RFC 6901 array index: digits only, no leading zero.
    static func arrayIndex(_ token: String) -> Int? {
        guard !token.isEmpty, token.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        if token.count > 1 && token.hasPrefix("0") { return nil }
        return Int(token)
    }

    /// Every leaf of the document with its pointer. Empty objects and arrays, and arrays
    /// as a whole, are leaves: merge patches replace arrays whole.
    public func leaves(under pointer: JSONPointer = .root) -> [(JSONPointer, JSONValue)] {
        var result: [(JSONPointer, JSONValue)] = []
        collectLeaves(pointer, into: &result)
        return result
    }

    private func collectLeaves(_ pointer: JSONPointer, into result: inout [(JSONPointer, JSONValue)]) {
        if case .object(let o) = self, !o.isEmpty {
            for key in o.keys.sorted() { o[key]!.collectLeaves(pointer.appending(key), into: &result) }
        } else {
            result.append((pointer, self))
        }
    }
}

extension Dictionary where Key == JSONPointer {
    /// The value stored at `pointer` or at its nearest ancestor.
    public func nearest(to pointer: JSONPointer) -> Value? {
        var current: JSONPointer? = pointer
        while let p = current {
            if let value = self[p] { return value }
            current = p.parent
        }
        return nil
    }
}

extension String {
    func replacingAll(_ target: Character, with replacement: String) -> String {
        guard contains(target) else { return self }
        var out = ""
        for c in self { if c == target { out += replacement } else { out.append(c) } }
        return out
    }
}
