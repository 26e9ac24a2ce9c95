#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
        String(decoding: serializedBytes(style), as: UTF8.self)
    }

    /// The UTF-8 bytes, written directly (no intermediate String).
    public func serializedBytes(_ style: Style = .canonical) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out, style: style, indent: 0)
        return out
    }

    private func write(into out: inout [UInt8], style: Style, indent: Int) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .integer(let i): out.append(contentsOf: JSONValue.formatInteger(i).utf8)
        case .number(let d): out.append(contentsOf: JSONValue.formatNumber(d).utf8)
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            if a.isEmpty { out.append(contentsOf: "[]".utf8); return }
            out.append(UInt8(ascii: "["))
            for (n, element) in a.enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                newline(&out, style, indent + 1)
                element.write(into: &out, style: style, indent: indent + 1)
            }
            newline(&out, style, indent)
            out.append(UInt8(ascii: "]"))
        case .object(let o):
            if o.isEmpty { out.append(contentsOf: "{}".utf8); return }
            out.append(UInt8(ascii: "{"))
            for (n, member) in JSONValue.sortedMembers(o).enumerated() {
                if n > 0 { out.append(UInt8(ascii: ",")) }
                newline(&out, style, indent + 1)
                JSONValue.writeString(member.key, into: &out)
                if style == .pretty { out.append(contentsOf: ": ".utf8) } else { out.append(UInt8(ascii: ":")) }
                member.value.write(into: &out, style: style, indent: indent + 1)
            }
            newline(&out, style, indent)
            out.append(UInt8(ascii: "}"))
        }
    }

    private func newline(_ out: inout [UInt8], _ style: Style, _ indent: Int) {
        guard style == .pretty else { return }
        out.append(UInt8(ascii: "\n"))
        out.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * indent))
    }

    /// RFC 8785 §3.2.3: keys ordered by their UTF-16 code units.
    public static func sortedKeys(_ object: [String: JSONValue]) -> [String] {
        sortedMembers(object).map(\.key)
    }

    /// The members in RFC 8785 order. UTF-8 byte order is code point order, which differs from
    /// UTF-16 order only between U+E000–U+FFFF and the supplementary planes (lead bytes ≥ 0xEE),
    /// so keys without such bytes, nearly all of them, are compared as bytes.
    static func sortedMembers(_ object: [String: JSONValue]) -> [(key: String, value: JSONValue)] {
        guard object.count > 1 else { return Array(object) }
        let bytewise = object.keys.allSatisfy { !$0.utf8.contains(where: { $0 >= 0xEE }) }
        if bytewise {
            return object.sorted { a, b in
                var (x, y) = (a.key, b.key)
                return x.withUTF8 { xs in y.withUTF8 { ys in
                    let common = min(xs.count, ys.count)
                    let order = common == 0 ? 0 : memcmp(xs.baseAddress!, ys.baseAddress!, common)
                    return order != 0 ? order < 0 : xs.count < ys.count
                } }
            }
        }
        return object.sorted { $0.key.utf16.lexicographicallyPrecedes($1.key.utf16) }
    }

    /// The length of `serializedBytes(.canonical)`, counted without writing anything.
    public var canonicalSize: Int {
        switch self {
        case .null: 4
        case .bool(let b): b ? 4 : 5
        case .integer(let i): JSONValue.formatInteger(i).utf8.count
        case .number(let d): JSONValue.formatNumber(d).utf8.count
        case .string(let s): JSONValue.stringSize(s)
        case .array(let a): a.isEmpty ? 2 : a.reduce(a.count + 1) { $0 + $1.canonicalSize }
        case .object(let o): o.isEmpty ? 2 : o.reduce(2 * o.count + 1) { $0 + JSONValue.stringSize($1.key) + $1.value.canonicalSize }
        }
    }

    /// What `writeString` writes, counted.
    static func stringSize(_ s: String) -> Int {
        var size = 2
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x08, 0x0C, 0x0A, 0x0D, 0x09: size += 2
            case 0..<0x20: size += 6
            default: size += 1
            }
        }
        return size
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// A string with `"`, `\\` and the control characters escaped (the short forms where JSON has
    /// them); every other character is written as its UTF-8 bytes.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { bytes in
            var runStart = 0
            for (index, byte) in bytes.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart..<index]))
                runStart = index + 1
                out.append(UInt8(ascii: "\\"))
                switch byte {
                case UInt8(ascii: "\""): out.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): out.append(UInt8(ascii: "\\"))
                case 0x08: out.append(UInt8(ascii: "b"))
                case 0x0C: out.append(UInt8(ascii: "f"))
                case 0x0A: out.append(UInt8(ascii: "n"))
                case 0x0D: out.append(UInt8(ascii: "r"))
                case 0x09: out.append(UInt8(ascii: "t"))
                default:
                    out.append(contentsOf: "u00".utf8)
                    out.append(hexDigits[Int(byte >> 4)])
                    out.append(hexDigits[Int(byte & 0x0F)])
                }
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[runStart...]))
        }
        out.append(UInt8(ascii: "\""))
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
