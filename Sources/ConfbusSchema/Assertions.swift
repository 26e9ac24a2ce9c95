import ConfbusCore

/// The validation vocabulary and `format`: keywords that look at one value and pass or fail.
enum Assertions {
    static func check(_ kind: KeywordKind, _ value: JSONValue, _ c: Evaluator.KeywordContext, _ out: inout Outcome,
                      regex: (String, String, inout Outcome) -> Bool) {
        let instance = c.instance
        let path = c.path(kind.rawValue)
        func fail(_ message: String) { out.fail(c.instancePath, path, message) }
        switch kind {
        case .type:
            let allowed: [String] = value.stringValue.map { [$0] } ?? value.arrayValue?.compactMap(\.stringValue) ?? []
            let actual = instance.typeName
            if !allowed.contains(where: { $0 == actual || ($0 == "number" && actual == "integer") }) {
                fail("must be \(allowed.map(JSONValue.withArticle).joined(separator: " or ")), not \(JSONValue.withArticle(actual))")
            }
        case .enum_:
            guard let options = value.arrayValue, !options.contains(instance) else { break }
            fail("must be one of \(options.map { $0.serialized() }.joined(separator: ", "))")
        case .const:
            if instance != value { fail("must be \(value.serialized())") }
        case .multipleOf:
            guard let x = instance.doubleValue, let m = value.doubleValue, m > 0 else { break }
            if case .integer(let i) = instance, case .integer(let d) = value {
                if i % d != 0 { fail("must be a multiple of \(d)") }
                break
            }
            let q = x / m
            if !q.isFinite || abs(q - q.rounded()) > 1e-9 * max(1, abs(q)) { fail("must be a multiple of \(format(m))") }
        case .maximum:
            if let x = instance.doubleValue, let limit = value.doubleValue, compare(instance, value) > 0 || x > limit {
                fail("must be at most \(format(limit))")
            }
        case .exclusiveMaximum:
            if let _ = instance.doubleValue, let limit = value.doubleValue, compare(instance, value) >= 0 {
                fail("must be less than \(format(limit))")
            }
        case .minimum:
            if let x = instance.doubleValue, let limit = value.doubleValue, compare(instance, value) < 0 || x < limit {
                fail("must be at least \(format(limit))")
            }
        case .exclusiveMinimum:
            if let _ = instance.doubleValue, let limit = value.doubleValue, compare(instance, value) <= 0 {
                fail("must be greater than \(format(limit))")
            }
        case .maxLength:
            if case .string(let s) = instance, let limit = value.doubleValue, Double(s.unicodeScalars.count) > limit {
                fail("must be at most \(format(limit)) characters long")
            }
        case .minLength:
            if case .string(let s) = instance, let limit = value.doubleValue, Double(s.unicodeScalars.count) < limit {
                fail("must be at least \(format(limit)) characters long")
            }
        case .pattern:
            if case .string(let s) = instance, case .string(let p) = value {
                var scratch = Outcome()
                let matched = regex(p, s, &scratch)
                if !scratch.valid { out.fail(with: scratch) } else if !matched { fail("must match the pattern \(p)") }
            }
        case .maxItems:
            if case .array(let a) = instance, let limit = value.doubleValue, Double(a.count) > limit {
                fail("must have at most \(format(limit)) items")
            }
        case .minItems:
            if case .array(let a) = instance, let limit = value.doubleValue, Double(a.count) < limit {
                fail("must have at least \(format(limit)) items")
            }
        case .uniqueItems:
            guard value == .bool(true), case .array(let a) = instance else { break }
            var seen = Set<JSONValue>()
            for (i, item) in a.enumerated() where !seen.insert(item).inserted {
                out.fail(c.instancePath.appending(i), path, "items must be unique; item \(i) repeats an earlier one")
                break
            }
        case .maxProperties:
            if case .object(let o) = instance, let limit = value.doubleValue, Double(o.count) > limit {
                fail("must have at most \(format(limit)) properties")
            }
        case .minProperties:
            if case .object(let o) = instance, let limit = value.doubleValue, Double(o.count) < limit {
                fail("must have at least \(format(limit)) properties")
            }
        case .required:
            guard case .object(let o) = instance, case .array(let names) = value else { break }
            for case .string(let name) in names where o[name] == nil {
                out.fail(c.instancePath.appending(name), path, "required property \"\(name)\" is missing")
            }
        case .dependentRequired:
            guard case .object(let o) = instance, case .object(let deps) = value else { break }
            for (name, needs) in deps where o[name] != nil {
                for case .string(let needed) in needs.arrayValue ?? [] where o[needed] == nil {
                    out.fail(c.instancePath.appending(needed), path.appending(name),
                             "property \"\(needed)\" is required when \"\(name)\" is present")
                }
            }
        case .format:
            guard c.formatAssertion, case .string(let name) = value, case .string(let s) = instance else { break }
            if let valid = Formats.check(name, s), !valid { fail("is not a valid \(name)") }
        default:
            break
        }
    }

    /// Exact comparison when both sides are integers, so large values do not round.
    static func compare(_ a: JSONValue, _ b: JSONValue) -> Int {
        if case .integer(let x) = a, case .integer(let y) = b { return x < y ? -1 : (x > y ? 1 : 0) }
        guard let x = a.doubleValue, let y = b.doubleValue else { return 0 }
        return x < y ? -1 : (x > y ? 1 : 0)
    }

    static func format(_ d: Double) -> String { JSONValue.formatNumber(d) }
}
