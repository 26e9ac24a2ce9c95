/// Parses ECMA-262 pattern syntax (with the `u` flag's strictness) into `RegexNode`s.
struct RegexParser {
    let source: [UInt32]
    var index = 0
    var groupCount = 0
    var groupNames: [String: Int] = [:]
    var pendingNamedReferences: [String] = []
    var maxBackreference = 0

    init(_ source: [UInt32]) { self.source = source }

    typealias SyntaxError = ECMARegex.SyntaxError

    func error(_ message: String) -> SyntaxError { SyntaxError(message: "\(message) at offset \(index)") }

    var atEnd: Bool { index >= source.count }
    func peek(_ offset: Int = 0) -> UInt32? { index + offset < source.count ? source[index + offset] : nil }
    func peekIs(_ c: Character, _ offset: Int = 0) -> Bool { peek(offset) == c.unicodeScalars.first!.value }

    mutating func parse() throws(SyntaxError) -> RegexNode {
        prescanGroups()
        let node = try parseAlternation()
        guard atEnd else { throw error("unmatched ')'") }
        guard maxBackreference <= groupCount else { throw error("backreference to a group that does not exist") }
        for name in pendingNamedReferences where groupNames[name] == nil { throw error("unknown group name '\(name)'") }
        return node
    }

    /// Counts capturing groups first, so `\2` before group 2 is still a backreference.
    private mutating func prescanGroups() {
        var n = 0
        var i = 0
        var inClass = false
        while i < source.count {
            let c = source[i]
            if c == 92 { i += 2; continue }
            if inClass { if c == 93 { inClass = false } } else if c == 91 { inClass = true } else if c == 40 {
                if i + 1 < source.count && source[i + 1] == 63 {
                    if i + 2 < source.count && source[i + 2] == 60 && i + 3 < source.count && source[i + 3] != 61 && source[i + 3] != 33 {
                        n += 1
                    }
                } else {
                    n += 1
                }
            }
            i += 1
        }
        groupCount = n
    }

    private var nextGroup = 0

    mutating func parseAlternation() throws(SyntaxError) -> RegexNode {
        var options = [try parseSequence()]
        while peekIs("|") {
            index += 1
            options.append(try parseSequence())
        }
        return options.count == 1 ? options[0] : .alternation(options)
    }

    mutating func parseSequence() throws(SyntaxError) -> RegexNode {
        var nodes: [RegexNode] = []
        while let c = peek(), c != 124, c != 41 {   // '|' ')'
            var (atom, quantifiable) = try parseAtom()
            if let q = try parseQuantifier() {
                guard quantifiable else { throw error("nothing to repeat") }
                atom = .repetition(atom, min: q.min, max: q.max, greedy: q.greedy)
            }
            nodes.append(atom)
        }
        return nodes.count == 1 ? nodes[0] : .sequence(nodes)
    }

    mutating func parseQuantifier() throws(SyntaxError) -> (min: Int, max: Int?, greedy: Bool)? {
        guard let c = peek() else { return nil }
        var result: (min: Int, max: Int?)
        switch c {
        case 42: result = (0, nil); index += 1
        case 43: result = (1, nil); index += 1
        case 63: result = (0, 1); index += 1
        case 123:
            index += 1
            guard let lo = readDecimal() else { throw error("incomplete quantifier") }
            var hi: Int? = lo
            if peekIs(",") {
                index += 1
                hi = readDecimal()
            }
            guard peekIs("}") else { throw error("incomplete quantifier") }
            index += 1
            if let hi, hi < lo { throw error("numbers out of order in quantifier") }
            result = (lo, hi)
        default:
            return nil
        }
        var greedy = true
        if peekIs("?") { greedy = false; index += 1 }
        return (result.min, result.max, greedy)
    }

    mutating func readDecimal() -> Int? {
        var value = 0
        var any = false
        while let c = peek(), c >= 48, c <= 57 {
            value = min(value * 10 + Int(c - 48), 1_000_000)
            index += 1
            any = true
        }
        return any ? value : nil
    }

    mutating func parseAtom() throws(SyntaxError) -> (RegexNode, Bool) {
        let c = peek()!
        index += 1
        switch c {
        case 94: return (.lineStart, false)                       // ^
        case 36: return (.lineEnd, false)                         // $
        case 46: return (.set(RegexSet(items: [.dot])), true)    // .
        case 91: return (.set(try parseClass()), true)           // [
        case 40: return try parseGroup()                         // (
        case 92: return try parseEscape()                        // \
        case 42, 43, 63: throw error("nothing to repeat")
        case 123: throw error("lone '{' (escape it as \\{)")
        case 125: throw error("lone '}' (escape it as \\})")
        case 93: throw error("lone ']' (escape it as \\])")
        default: return (.char(c), true)
        }
    }

    mutating func parseGroup() throws(SyntaxError) -> (RegexNode, Bool) {
        if peekIs("?") {
            index += 1
            let kind = peek()
            index += 1
            switch kind {
            case 58: // (?:
                let inner = try parseAlternation()
                try close()
                return (.group(inner, capture: nil), true)
            case 61, 33: // (?= (?!
                let inner = try parseAlternation()
                try close()
                return (.look(inner, ahead: true, negated: kind == 33), false)
            case 60:
                if peekIs("=") || peekIs("!") {
                    let negated = peekIs("!")
                    index += 1
                    let inner = try parseAlternation()
                    try close()
                    return (.look(inner, ahead: false, negated: negated), false)
                }
                let name = try readGroupName()
                nextGroup += 1
                let number = nextGroup
                guard groupNames.updateValue(number, forKey: name) == nil else { throw error("duplicate group name '\(name)'") }
                let inner = try parseAlternation()
                try close()
                return (.group(inner, capture: number), true)
            default:
                throw error("invalid group")
            }
        }
        nextGroup += 1
        let number = nextGroup
        let inner = try parseAlternation()
        try close()
        return (.group(inner, capture: number), true)
    }

    mutating func readGroupName() throws(SyntaxError) -> String {
        var name = ""
        while let c = peek(), c != 62 {
            guard let s = Unicode.Scalar(c), s.properties.isAlphabetic || s == "_" || s == "$" || (s.properties.numericType != nil && !name.isEmpty)
            else { throw error("invalid group name") }
            name.unicodeScalars.append(s)
            index += 1
        }
        guard peekIs(">"), !name.isEmpty else { throw error("invalid group name") }
        index += 1
        return name
    }

    mutating func close() throws(SyntaxError) {
        guard peekIs(")") else { throw error("missing ')'") }
        index += 1
    }

    mutating func parseEscape() throws(SyntaxError) -> (RegexNode, Bool) {
        guard let c = peek() else { throw error("trailing backslash") }
        switch c {
        case 98: index += 1; return (.wordBoundary(negated: false), false)  // \b
        case 66: index += 1; return (.wordBoundary(negated: true), false)   // \B
        case 49...57:
            let n = readDecimal()!
            maxBackreference = max(maxBackreference, n)
            return (.backreference(n), true)
        case 107: // \k<name>
            index += 1
            guard peekIs("<") else { throw error("invalid named reference") }
            index += 1
            let name = try readGroupName()
            pendingNamedReferences.append(name)
            return (.backreference(groupNames[name] ?? 0), true)
        default:
            let item = try parseClassEscape(inClass: false)
            switch item {
            case .range(let lo, let hi) where lo == hi: return (.char(lo), true)
            default: return (.set(RegexSet(items: [item])), true)
            }
        }
    }

    /// An escape that stands for a character or a class, after the backslash.
    mutating func parseClassEscape(inClass: Bool) throws(SyntaxError) -> RegexSet.Item {
        guard let c = peek() else { throw error("trailing backslash") }
        index += 1
        func single(_ v: UInt32) -> RegexSet.Item { .range(v, v) }
        switch Character(Unicode.Scalar(c)!) {
        case "d": return .digit(false)
        case "D": return .digit(true)
        case "w": return .word(false)
        case "W": return .word(true)
        case "s": return .space(false)
        case "S": return .space(true)
        case "t": return single(9)
        case "n": return single(10)
        case "v": return single(11)
        case "f": return single(12)
        case "r": return single(13)
        case "b" where inClass: return single(8)
        case "-" where inClass: return single(45)
        case "0":
            if let n = peek(), n >= 48, n <= 57 { throw error("invalid octal escape") }
            return single(0)
        case "c":
            guard let l = peek(), (l >= 65 && l <= 90) || (l >= 97 && l <= 122) else { throw error("invalid control escape") }
            index += 1
            return single(l % 32)
        case "x":
            guard let v = readHex(count: 2) else { throw error("invalid \\x escape") }
            return single(v)
        case "u":
            if peekIs("{") {
                index += 1
                var v: UInt32 = 0
                var digits = 0
                while let h = peek(), let d = Self.hexValue(h) { v = v * 16 + d; digits += 1; index += 1; if v > 0x10FFFF { throw error("code point out of range") } }
                guard digits > 0, peekIs("}") else { throw error("invalid \\u{} escape") }
                index += 1
                return single(v)
            }
            guard let v = readHex(count: 4) else { throw error("invalid \\u escape") }
            if (0xD800...0xDBFF).contains(v), peekIs("\\"), peekIs("u", 1) {
                let save = index
                index += 2
                if let low = readHex(count: 4), (0xDC00...0xDFFF).contains(low) {
                    return single(0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00))
                }
                index = save
            }
            return single(v)
        case "p", "P":
            let negated = c == 80
            guard peekIs("{") else { throw error("invalid property escape") }
            index += 1
            var name = ""
            while let n = peek(), n != 125 { name.unicodeScalars.append(Unicode.Scalar(n)!); index += 1 }
            guard peekIs("}") else { throw error("invalid property escape") }
            index += 1
            guard let categories = UnicodeCategories.named(name) else { throw error("unsupported Unicode property '\(name)'") }
            return .category(categories, negated: negated)
        default:
            // With the u flag only syntax characters may be escaped.
            guard "^$\\.*+?()[]{}|/".unicodeScalars.contains(where: { $0.value == c }) else {
                throw error("invalid escape '\\\(Character(Unicode.Scalar(c)!))'")
            }
            return single(c)
        }
    }

    mutating func readHex(count: Int) -> UInt32? {
        var v: UInt32 = 0
        for offset in 0..<count {
            guard let h = peek(offset), let d = Self.hexValue(h) else { return nil }
            v = v * 16 + d
        }
        index += count
        return v
    }

    static func hexValue(_ c: UInt32) -> UInt32? {
        switch c {
        case 48...57: c - 48
        case 65...70: c - 55
        case 97...102: c - 87
        default: nil
        }
    }

    mutating func parseClass() throws(SyntaxError) -> RegexSet {
        var set = RegexSet(items: [])
        if peekIs("^") { set.negated = true; index += 1 }
        while true {
            guard let c = peek() else { throw error("missing ']'") }
            if c == 93 { index += 1; return set }
            let low = try classAtom()
            if peekIs("-"), let next = peek(1), next != 93 {
                index += 1
                let high = try classAtom()
                guard case .range(let a, let a2) = low, a == a2, case .range(let b, let b2) = high, b == b2 else {
                    throw error("invalid character class range")
                }
                guard a <= b else { throw error("range out of order in character class") }
                set.items.append(.range(a, b))
            } else {
                set.items.append(low)
            }
        }
    }

    mutating func classAtom() throws(SyntaxError) -> RegexSet.Item {
        let c = peek()!
        index += 1
        if c == 92 { return try parseClassEscape(inClass: true) }
        return .range(c, c)
    }
}

enum UnicodeCategories {
    static func named(_ name: String) -> Set<Unicode.GeneralCategory>? {
        var key = name
        if key.hasPrefix("General_Category=") { key = String(key.dropFirst(17)) }
        if key.hasPrefix("gc=") { key = String(key.dropFirst(3)) }
        switch key {
        case "L", "Letter": return [.uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter]
        case "Lu", "Uppercase_Letter": return [.uppercaseLetter]
        case "Ll", "Lowercase_Letter": return [.lowercaseLetter]
        case "Lt", "Titlecase_Letter": return [.titlecaseLetter]
        case "Lm", "Modifier_Letter": return [.modifierLetter]
        case "Lo", "Other_Letter": return [.otherLetter]
        case "N", "Number": return [.decimalNumber, .letterNumber, .otherNumber]
        case "Nd", "Decimal_Number", "digit": return [.decimalNumber]
        case "Nl", "Letter_Number": return [.letterNumber]
        case "No", "Other_Number": return [.otherNumber]
        case "P", "Punctuation", "punct":
            return [.connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                    .initialPunctuation, .finalPunctuation, .otherPunctuation]
        case "S", "Symbol": return [.mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol]
        case "Z", "Separator": return [.spaceSeparator, .lineSeparator, .paragraphSeparator]
        case "Zs", "Space_Separator": return [.spaceSeparator]
        case "M", "Mark", "Combining_Mark": return [.spacingMark, .nonspacingMark, .enclosingMark]
        case "C", "Other": return [.control, .format, .surrogate, .privateUse, .unassigned]
        case "Cc", "Control", "cntrl": return [.control]
        default: return nil
        }
    }
}
