/// A service name that has passed CONTRACT.md §1: `^[a-z0-9]([a-z0-9._-]{0,62}[a-z0-9])?$`,
/// with no `..`. Names starting with `_` are reserved for confbus and never validate here.
public struct ServiceName: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let rawValue: String

    public init(validating text: String) throws(ConfbusError) {
        guard Self.isValid(text) else {
            throw ConfbusError(code: .invalidName, message: "invalid service name \(Self.quoted(text)): "
                + "use 1 to 64 characters of a-z, 0-9, '.', '_' and '-', starting and ending with a letter or digit")
        }
        rawValue = text
    }

    public static func isValid(_ text: String) -> Bool {
        let bytes = text.utf8
        guard (1...64).contains(bytes.count) else { return false }
        func alnum(_ b: UInt8) -> Bool { (b >= 97 && b <= 122) || (b >= 48 && b <= 57) }
        var previous: UInt8 = 0
        for b in bytes {
            guard alnum(b) || b == 46 || b == 95 || b == 45 else { return false }
            if b == 46 && previous == 46 { return false }
            previous = b
        }
        return alnum(bytes.first!) && alnum(previous)
    }

    /// Quotes a name for an error message, escaping control characters so no log line can be forged.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars.prefix(80) {
            if scalar.value < 0x20 || scalar == "\"" || scalar == "\\" || scalar.value == 0x7f {
                out += scalar.escaped(asASCII: true)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out + (text.unicodeScalars.count > 80 ? "…\"" : "\"")
    }

    public var description: String { rawValue }
    public static func < (lhs: ServiceName, rhs: ServiceName) -> Bool { lhs.rawValue < rhs.rawValue }
}
