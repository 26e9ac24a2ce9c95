/// Checks for the `format` values confbus asserts when format assertion is on.
/// `check` returns nil for a format it does not know: unknown formats never fail a value.
enum Formats {
    static func check(_ format: String, _ s: String) -> Bool? {
        switch format {
        case "date": date(Substring(s))
        case "time": time(Substring(s))
        case "date-time": dateTime(s)
        case "duration": duration(s)
        case "email": email(s)
        case "hostname": hostname(s)
        case "ipv4": ipv4(Substring(s))
        case "ipv6": ipv6(s)
        case "uri": uri(s, requireScheme: true)
        case "uri-reference": uri(s, requireScheme: false)
        case "uuid": uuid(s)
        case "json-pointer": s.isEmpty || (s.hasPrefix("/") && jsonPointerEscapes(s))
        case "regex": (try? ECMARegex(s)) != nil
        default: nil
        }
    }

    static func digits(_ s: Substring, _ count: Int) -> Int? {
        guard s.count == count, s.unicodeScalars.allSatisfy({ $0.value >= 48 && $0.value <= 57 }) else { return nil }
        return Int(s)
    }

    static func date(_ s: Substring) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, let y = digits(parts[0], 4), let m = digits(parts[1], 2), let d = digits(parts[2], 2),
              (1...12).contains(m), d >= 1 else { return false }
        let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]
        return d <= days
    }

    static func time(_ s: Substring) -> Bool {
        let u = Array(s.unicodeScalars)
        guard u.count >= 9, u[2] == ":", u[5] == ":" else { return false }
        guard let h = digits(s.prefix(2), 2), let m = digits(Substring(String(String.UnicodeScalarView(u[3..<5]))), 2),
              let sec = digits(Substring(String(String.UnicodeScalarView(u[6..<8]))), 2) else { return false }
        var i = 8
        if i < u.count, u[i] == "." {
            i += 1
            let start = i
            while i < u.count, u[i].value >= 48, u[i].value <= 57 { i += 1 }
            guard i > start else { return false }
        }
        guard i < u.count else { return false }
        var offsetMinutes = 0
        if u[i] == "Z" || u[i] == "z" {
            guard i + 1 == u.count else { return false }
        } else {
            guard u[i] == "+" || u[i] == "-", u.count - i == 6, u[i + 3] == ":" else { return false }
            guard let oh = digits(Substring(String(String.UnicodeScalarView(u[(i + 1)..<(i + 3)]))), 2),
                  let om = digits(Substring(String(String.UnicodeScalarView(u[(i + 4)..<(i + 6)]))), 2),
                  oh <= 23, om <= 59 else { return false }
            offsetMinutes = (oh * 60 + om) * (u[i] == "+" ? 1 : -1)
        }
        guard h <= 23, m <= 59, sec <= 60 else { return false }
        if sec == 60 {
            // A leap second is only valid at 23:59:60 UTC.
            var utc = (h * 60 + m - offsetMinutes) % 1440
            if utc < 0 { utc += 1440 }
            return utc == 23 * 60 + 59
        }
        return true
    }

    static func dateTime(_ s: String) -> Bool {
        guard let t = s.firstIndex(where: { $0 == "T" || $0 == "t" }) else { return false }
        return date(s[..<t]) && time(s[s.index(after: t)...])
    }

    static func duration(_ s: String) -> Bool {
        var u = Substring(s)
        guard u.first == "P" else { return false }
        u = u.dropFirst()
        guard !u.isEmpty else { return false }
        if u.hasSuffix("W") {
            return digits(u.dropLast(), u.count - 1) != nil && u.count > 1
        }
        let parts = u.split(separator: "T", maxSplits: 1, omittingEmptySubsequences: false)
        func units(_ part: Substring, _ order: [Character]) -> Bool? {
            var rest = part
            var position = 0
            var any = false
            while !rest.isEmpty {
                let number = rest.prefix(while: { $0.isASCIIDigit })
                guard !number.isEmpty else { return nil }
                rest = rest.dropFirst(number.count)
                // RFC 3339 Appendix A: units run on without a gap (no `P1Y2D`, no `PT1H2S`).
                guard let unit = rest.first, let at = order[position...].firstIndex(of: unit),
                      !any || at == position else { return nil }
                position = at + 1
                rest = rest.dropFirst()
                any = true
            }
            return any
        }
        guard let datePart = units(parts[0], ["Y", "M", "D"]) else { return false }
        if parts.count == 2 {
            guard let timePart = units(parts[1], ["H", "M", "S"]), timePart else { return false }
            return true
        }
        return datePart
    }

    static func email(_ s: String) -> Bool {
        guard let at = s.lastIndex(of: "@") else { return false }
        let local = s[..<at]
        let domain = s[s.index(after: at)...]
        guard !local.isEmpty, !domain.isEmpty else { return false }
        if local.hasPrefix("\"") {
            guard local.count >= 2, local.hasSuffix("\"") else { return false }
        } else {
            let allowed = "!#$%&'*+-/=?^_`{|}~."
            guard local.allSatisfy({ $0.isASCIIAlphanumeric || allowed.contains($0) }),
                  !local.hasPrefix("."), !local.hasSuffix("."), !local.contains("..") else { return false }
        }
        if domain.hasPrefix("[") {
            guard domain.hasSuffix("]") else { return false }
            let literal = domain.dropFirst().dropLast()
            if literal.hasPrefix("IPv6:") { return ipv6(String(literal.dropFirst(5))) }
            return ipv4(literal)
        }
        return hostname(String(domain))
    }

    static func hostname(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253 else { return false }
        for label in s.split(separator: ".", omittingEmptySubsequences: false) {
            guard (1...63).contains(label.count), !label.hasPrefix("-"), !label.hasSuffix("-"),
                  label.allSatisfy({ $0.isASCIIAlphanumeric || $0 == "-" }) else { return false }
            let chars = Array(label)
            if chars.count >= 4, chars[2] == "-", chars[3] == "-" {
                // Only A-labels (IDNA) may have "--" there, and they must decode to a valid U-label.
                guard label.lowercased().hasPrefix("xn--"), let decoded = Punycode.decode(label.dropFirst(4)),
                      IDNA.isValidULabel(decoded) else { return false }
            }
        }
        return true
    }

    static func ipv4(_ s: Substring) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for part in parts {
            guard (1...3).contains(part.count), let v = digits(part, part.count), v <= 255,
                  !(part.count > 1 && part.hasPrefix("0")) else { return false }
        }
        return true
    }

    static func ipv6(_ s: String) -> Bool {
        guard !s.isEmpty, s.allSatisfy({ $0.isASCII && ($0.isHexDigit || $0 == ":" || $0 == ".") }) else { return false }
        var groups = s.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        var maxGroups = 8
        if let last = groups.last, last.contains(".") {
            guard ipv4(Substring(last)) else { return false }
            groups.removeLast()
            maxGroups = 6
        }
        let chars = Array(s)
        var compressions = 0
        for i in 0..<(chars.count - 1) where chars[i] == ":" && chars[i + 1] == ":" { compressions += 1 }
        if s.contains(":::") { return false }
        guard compressions <= 1 else { return false }
        if compressions == 1 {
            if s.hasPrefix(":") && !s.hasPrefix("::") { return false }
            if s.hasSuffix(":") && !s.hasSuffix("::") { return false }
            let nonEmpty = groups.filter { !$0.isEmpty }
            return nonEmpty.allSatisfy({ $0.count <= 4 }) && nonEmpty.count < maxGroups
        }
        if maxGroups == 6, groups.last == "" { groups.removeLast() }
        return groups.count == maxGroups && groups.allSatisfy { (1...4).contains($0.count) }
    }

    static func uuid(_ s: String) -> Bool {
        let parts = s.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.map(\.count) == [8, 4, 4, 4, 12] else { return false }
        return parts.allSatisfy { $0.allSatisfy { $0.isASCII && $0.isHexDigit } }
    }

    static func jsonPointerEscapes(_ s: String) -> Bool {
        var chars = s.makeIterator()
        while let c = chars.next() {
            if c == "~" { guard let n = chars.next(), n == "0" || n == "1" else { return false } }
        }
        return true
    }

    static func uri(_ s: String, requireScheme: Bool) -> Bool {
        let unreserved = "-._~"
        let subDelims = "!$&'()*+,;="
        func validChars(_ part: Substring, extra: String) -> Bool {
            var it = Array(part.unicodeScalars)[...]
            while let c = it.first {
                it = it.dropFirst()
                if c == "%" {
                    guard it.count >= 2, it.prefix(2).allSatisfy({ Character($0).isHexDigit }) else { return false }
                    it = it.dropFirst(2)
                    continue
                }
                let ch = Character(c)
                guard c.isASCII, ch.isASCIIAlphanumeric || unreserved.contains(ch) || subDelims.contains(ch) || extra.contains(ch)
                else { return false }
            }
            return true
        }
        let ref = URIReference(s)
        if requireScheme {
            guard let scheme = ref.scheme, scheme.first?.isLetter == true else { return false }
        }
        if ref.scheme == nil, let colon = s.firstIndex(of: ":"), !s[..<colon].contains("/"), !s[..<colon].contains("?"), !s[..<colon].contains("#") {
            return false
        }
        if let authority = ref.authority {
            var host = Substring(authority)
            if let at = host.lastIndex(of: "@") {
                guard validChars(host[..<at], extra: ":") else { return false }
                host = host[host.index(after: at)...]
            }
            if host.hasPrefix("[") {
                guard let close = host.firstIndex(of: "]"), ipv6(String(host[host.index(after: host.startIndex)..<close])) else { return false }
                let rest = host[host.index(after: close)...]
                guard rest.isEmpty || (rest.hasPrefix(":") && rest.dropFirst().allSatisfy(\.isNumber)) else { return false }
            } else {
                if let colon = host.lastIndex(of: ":") {
                    guard host[host.index(after: colon)...].allSatisfy(\.isNumber) else { return false }
                    host = host[..<colon]
                }
                guard validChars(host, extra: "") else { return false }
            }
        }
        return validChars(Substring(ref.path), extra: ":@/")
            && validChars(Substring(ref.query ?? ""), extra: ":@/?")
            && validChars(Substring(ref.fragment ?? ""), extra: ":@/?")
    }
}

extension Character {
    /// `A`–`Z`, `a`–`z`, `0`–`9`, decided from the ASCII value (`isLetter` and `isNumber` look up
    /// Unicode properties, most of a format check's time).
    var isASCIIAlphanumeric: Bool {
        guard let a = asciiValue else { return false }
        return (a >= 0x30 && a <= 0x39) || (a >= 0x41 && a <= 0x5A) || (a >= 0x61 && a <= 0x7A)
    }

    var isASCIIDigit: Bool {
        guard let a = asciiValue else { return false }
        return a >= 0x30 && a <= 0x39
    }
}
