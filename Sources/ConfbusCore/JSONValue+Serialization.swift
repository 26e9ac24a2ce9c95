/// Writing JSON. Every style sorts object keys by UTF-16 code units and writes numbers as
/// ECMAScript does, so `.canonical` is exactly RFC 8785 (JCS) and the others differ only in layout.
extension JSONValue {
    public enum Style: Sendable {
        /// RFC 8785: no whitespace.
        case canonical
        /// Two-space indentation, one member per line, for people.
        case pretty
    }

    public func serialized(_ style: Style = .canonical) -> String {
        var out = ""
        write(into: &out, style: style, indent: 0)
        return out
    }

    public func serializedBytes(_ style: Style = .canonical) -> [UInt8] {
        Array(serialized(style).utf8)
    }

    private func write(into out: inout String, style: Style, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .integer(let i): out += JSONValue.formatInteger(i)
        case .number(let d): out += JSONValue.formatNumber(d)
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out += "[]"; return }
            out += "["
            for (n, element) in a.enumerated() {
                if n > 0 { out += "," }
                newline(&out, style, indent + 1)
                element.write(into: &out, style: style, indent: indent + 1)
            }
            newline(&out, style, indent)
            out += "]"
        case .object(let o):
            if o.isEmpty { out += "{}"; return }
            out += "{"
            for (n, key) in JSONValue.sortedKeys(o).enumerated() {
                if n > 0 { out += "," }
                newline(&out, style, indent + 1)
                JSONValue.writeString(key, into: &out)
                out += style == .pretty ? ": " : ":"
                o[key]!.write(into: &out, style: style, indent: indent + 1)
            }
            newline(&out, style, indent)
            out += "}"
        }
    }

    private func newline(_ out: inout String, _ style: Style, _ indent: Int) {
        guard style == .pretty else { return }
        out += "\n"
        out += String(repeating: "  ", count: indent)
    }

    /// RFC 8785 §3.2.3: keys ordered by their UTF-16 code units.
    public static func sortedKeys(_ object: [String: JSONValue]) -> [String] {
        object.keys.sorted { $0.utf16.lexicographicallyPrecedes($1.utf16) }
    }

    static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    /// Integers are IEEE doubles in RFC 8785; within ±2^53 that is the plain decimal form.
    static func formatInteger(_ i: Int) -> String {
        if i.magnitude <= 1 << 53 { return String(i) }
        return formatNumber(Double(i))
    }

    /// ECMAScript's Number::toString (ECMA-262 §6.1.6.1.20) from the shortest round-trip digits.
    public static func formatNumber(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == 0 { return "0" }
        let negative = d < 0
        // Swift's description is the shortest round-trip form: "1.5", "1e-07", "1.7976931348623157e+308".
        let text = d.magnitude.description
        var mantissa = Substring(text)
        var exponent = 0
        if let e = text.firstIndex(where: { $0 == "e" || $0 == "E" }) {
            mantissa = text[..<e]
            exponent = Int(text[text.index(after: e)...])!
        }
        var digits = ""
        var pointPosition = mantissa.count
        if let dot = mantissa.firstIndex(of: ".") {
            pointPosition = mantissa.distance(from: mantissa.startIndex, to: dot)
            digits = String(mantissa[..<dot]) + String(mantissa[mantissa.index(after: dot)...])
        } else {
            digits = String(mantissa)
        }
        // Strip leading zeros (moving the point) and trailing zeros.
        while digits.hasPrefix("0") && digits.count > 1 { digits.removeFirst(); pointPosition -= 1 }
        while digits.hasSuffix("0") && digits.count > 1 { digits.removeLast() }
        let k = digits.count
        let n = pointPosition + exponent
        var out = negative ? "-" : ""
        if k <= n && n <= 21 {
            out += digits + String(repeating: "0", count: n - k)
        } else if 0 < n && n <= 21 {
            out += String(digits.prefix(n)) + "." + String(digits.dropFirst(n))
        } else if -6 < n && n <= 0 {
            out += "0." + String(repeating: "0", count: -n) + digits
        } else {
            let e = n - 1
            out += String(digits.prefix(1))
            if k > 1 { out += "." + String(digits.dropFirst()) }
            out += "e" + (e >= 0 ? "+" : "-") + String(e.magnitude)
        }
        return out
    }
}
