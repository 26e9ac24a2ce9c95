/// RFC 3492 Punycode decoding, for A-labels (`xn--…`) in hostnames.
enum Punycode {
    static func decode(_ input: Substring) -> [UInt32]? {
        let base = 36, tMin = 1, tMax = 26
        var output: [UInt32] = []
        var rest = Substring(input)
        if let delimiter = input.lastIndex(of: "-") {
            for c in input[..<delimiter].unicodeScalars {
                guard c.isASCII else { return nil }
                output.append(c.value)
            }
            rest = input[input.index(after: delimiter)...]
        }
        var n = 128, i = 0, bias = 72
        var digits = rest.unicodeScalars.makeIterator()
        var pending = digits.next()
        while pending != nil {
            let oldI = i
            var w = 1
            var k = base
            while true {
                guard let c = pending else { return nil }
                pending = digits.next()
                let digit: Int
                switch c.value {
                case 97...122: digit = Int(c.value) - 97
                case 65...90: digit = Int(c.value) - 65
                case 48...57: digit = Int(c.value) - 22
                default: return nil
                }
                let (product, o1) = digit.multipliedReportingOverflow(by: w)
                let (sum, o2) = i.addingReportingOverflow(product)
                guard !o1, !o2 else { return nil }
                i = sum
                let t = k <= bias ? tMin : (k >= bias + tMax ? tMax : k - bias)
                if digit < t { break }
                w *= base - t
                k += base
            }
            bias = adapt(i - oldI, output.count + 1, oldI == 0)
            n += i / (output.count + 1)
            i %= output.count + 1
            guard n <= 0x10FFFF else { return nil }
            output.insert(UInt32(n), at: i)
            i += 1
        }
        return output
    }

    private static func adapt(_ delta: Int, _ count: Int, _ first: Bool) -> Int {
        var delta = first ? delta / 700 : delta / 2
        delta += delta / count
        var k = 0
        while delta > ((36 - 1) * 26) / 2 {
            delta /= 35
            k += 36
        }
        return k + (36 * delta) / (delta + 38)
    }
}

/// The IDNA2008 rules (RFC 5891, 5892) a decoded label must meet: no leading combining mark,
/// no DISALLOWED exceptions, and the CONTEXTJ/CONTEXTO rules for the characters that have them.
enum IDNA {
    static func isValidULabel(_ label: [UInt32]) -> Bool {
        guard let first = label.first else { return false }
        if label.count >= 4, label[2] == 0x2D, label[3] == 0x2D { return false }
        if isMark(first) { return false }
        let disallowed: Set<UInt32> = [0x0640, 0x07FA, 0x302E, 0x302F, 0x3031, 0x3032, 0x3033, 0x3034, 0x3035, 0x303B]
        let hasArabicIndic = label.contains { (0x0660...0x0669).contains($0) }
        let hasExtendedArabicIndic = label.contains { (0x06F0...0x06F9).contains($0) }
        if hasArabicIndic && hasExtendedArabicIndic { return false }
        for (index, c) in label.enumerated() {
            if disallowed.contains(c) { return false }
            let before = index > 0 ? label[index - 1] : nil
            let after = index + 1 < label.count ? label[index + 1] : nil
            switch c {
            case 0x00B7: // MIDDLE DOT: between two 'l's
                guard before == 0x6C, after == 0x6C else { return false }
            case 0x0375: // GREEK KERAIA: followed by Greek
                guard let after, isGreek(after) else { return false }
            case 0x05F3, 0x05F4: // HEBREW GERESH, GERSHAYIM: preceded by Hebrew
                guard let before, (0x0590...0x05FF).contains(before) else { return false }
            case 0x30FB: // KATAKANA MIDDLE DOT: some Hiragana, Katakana or Han in the label
                guard label.contains(where: { $0 != 0x30FB && isJapanese($0) }) else { return false }
            case 0x200D: // ZERO WIDTH JOINER: after a virama
                guard let before, isVirama(before) else { return false }
            case 0x200C: // ZERO WIDTH NON-JOINER: after a virama, or between joining letters
                if let before, isVirama(before) { break }
                guard let before, let after, isJoining(before), isJoining(after) else { return false }
            default:
                guard let scalar = Unicode.Scalar(c) else { return false }
                let p = scalar.properties
                guard p.isAlphabetic || p.numericType != nil || isMark(c) || c == 0x2D
                    || [0x00DF, 0x03C2, 0x0F0B, 0x3007, 0x06FD, 0x06FE].contains(c) else { return false }
            }
        }
        return true
    }

    static func isMark(_ c: UInt32) -> Bool {
        guard let s = Unicode.Scalar(c) else { return false }
        switch s.properties.generalCategory {
        case .spacingMark, .nonspacingMark, .enclosingMark: return true
        default: return false
        }
    }

    static func isVirama(_ c: UInt32) -> Bool {
        Unicode.Scalar(c)?.properties.canonicalCombiningClass == .virama
    }

    static func isGreek(_ c: UInt32) -> Bool { (0x0370...0x03FF).contains(c) || (0x1F00...0x1FFF).contains(c) }

    static func isJoining(_ c: UInt32) -> Bool { (0x0620...0x06FF).contains(c) || (0x0750...0x077F).contains(c) }

    static func isJapanese(_ c: UInt32) -> Bool {
        (0x3040...0x309F).contains(c) || (0x30A0...0x30FF).contains(c) || (0x31F0...0x31FF).contains(c)
            || (0x3400...0x4DBF).contains(c) || (0x4E00...0x9FFF).contains(c) || (0xF900...0xFAFF).contains(c)
            || (0x20000...0x2FA1F).contains(c)
    }
}
