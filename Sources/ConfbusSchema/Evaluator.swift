import ConfbusCore

/// The interpreter behind `SchemaValidator`: one pass over a schema object per instance value,
/// in-place applicators first, `unevaluated*` last, with the dynamic scope for `$dynamicRef`.
struct Evaluator {
    let validator: SchemaValidator
    private var depth = 0
    private static let maxDepth = 200

    init(validator: SchemaValidator) { self.validator = validator }

    /// `base` is the base URI around `schema`; `idApplied` says it already includes the schema's
    /// own `$id` (as a resolved reference's base does).
    mutating func evaluate(_ schema: JSONValue, base: String, idApplied: Bool = false, scope: [String],
                           instance: JSONValue, instancePath: EvalPath, keywordPath: EvalPath) -> Outcome {
        var outcome = Outcome()
        switch schema {
        case .bool(true): return outcome
        case .bool(false):
            outcome.fail(instancePath, keywordPath, "no value is allowed here")
            return outcome
        case .object(let object):
            depth += 1
            defer { depth -= 1 }
            guard depth < Self.maxDepth else {
                outcome.fail(instancePath, keywordPath, "schema references nest too deeply (a $ref cycle?)")
                return outcome
            }
            var base = base
            if !idApplied, case .string(let id) = object["$id"] {
                base = validator.base(forID: id, in: base)
            }
            var scope = scope
            if scope.last != base { scope.append(base) }
            let resource = validator.registry.resource(base)
            let vocabularies = resource?.vocabularies
            func on(_ kind: KeywordKind) -> Bool {
                guard let vocabularies, let v = kind.vocabulary else { return true }
                return vocabularies.contains(v)
            }
            var context = KeywordContext(object: object, base: base, scope: scope, instance: instance,
                                         instancePath: instancePath, keywordPath: keywordPath,
                                         formatAssertion: validator.options.formatAssertion || resource?.formatAssertion == true)
            for (keyword, value) in object {
                guard let kind = KeywordKind.table[keyword], kind != .unevaluatedItems, kind != .unevaluatedProperties,
                      on(kind) else { continue }
                apply(kind, value, &context, &outcome)
            }
            if on(.unevaluatedItems), let value = object["unevaluatedItems"] {
                unevaluatedItems(value, &context, &outcome)
            }
            if on(.unevaluatedProperties), let value = object["unevaluatedProperties"] {
                unevaluatedProperties(value, &context, &outcome)
            }
            if !outcome.valid {
                outcome.properties = []
                outcome.itemsPrefix = 0
                outcome.itemIndices = []
            }
            return outcome
        default:
            outcome.fail(instancePath, keywordPath, "the schema is not an object or a boolean")
            return outcome
        }
    }

    struct KeywordContext {
        let object: [String: JSONValue]
        let base: String
        let scope: [String]
        let instance: JSONValue
        let instancePath: EvalPath
        let keywordPath: EvalPath
        let formatAssertion: Bool

        func path(_ keyword: String) -> EvalPath { keywordPath.appending(keyword) }
    }

    mutating func sub(_ schema: JSONValue, _ c: KeywordContext, _ keywordPath: EvalPath,
                      instance: JSONValue? = nil, instancePath: EvalPath? = nil, base: String? = nil) -> Outcome {
        evaluate(schema, base: base ?? c.base, scope: c.scope, instance: instance ?? c.instance,
                 instancePath: instancePath ?? c.instancePath, keywordPath: keywordPath)
    }

    mutating func apply(_ kind: KeywordKind, _ value: JSONValue, _ c: inout KeywordContext, _ out: inout Outcome) {
        switch kind {
        case .ref: reference(value, dynamic: false, &c, &out)
        case .dynamicRef: reference(value, dynamic: true, &c, &out)
        case .allOf:
            for (i, s) in (value.arrayValue ?? []).enumerated() {
                let r = sub(s, c, c.path("allOf").appending(i))
                if r.valid { out.absorbAnnotations(r) } else { out.fail(with: r) }
            }
        case .anyOf:
            var any = false
            var failures: [ValidationIssue] = []
            for (i, s) in (value.arrayValue ?? []).enumerated() {
                let r = sub(s, c, c.path("anyOf").appending(i))
                if r.valid { any = true; out.absorbAnnotations(r) } else { failures += r.issues }
            }
            if !any { out.fail(c.instancePath, c.path("anyOf"), "does not match any of the allowed alternatives" + Self.firstReason(failures)) }
        case .oneOf:
            var matches: [Int] = []
            var matched = Outcome()
            var failures: [ValidationIssue] = []
            for (i, s) in (value.arrayValue ?? []).enumerated() {
                let r = sub(s, c, c.path("oneOf").appending(i))
                if r.valid { matches.append(i); matched = r } else { failures += r.issues }
            }
            if matches.count == 1 {
                out.absorbAnnotations(matched)
            } else if matches.isEmpty {
                out.fail(c.instancePath, c.path("oneOf"), "does not match any of the alternatives" + Self.firstReason(failures))
            } else {
                out.fail(c.instancePath, c.path("oneOf"), "matches alternatives \(matches.map(String.init).joined(separator: " and ")), but must match exactly one")
            }
        case .not_:
            if sub(value, c, c.path("not")).valid {
                out.fail(c.instancePath, c.path("not"), "matches a schema it must not match")
            }
        case .if_:
            let r = sub(value, c, c.path("if"))
            if r.valid {
                out.absorbAnnotations(r)
                if let then = c.object["then"] {
                    let t = sub(then, c, c.path("then"))
                    if t.valid { out.absorbAnnotations(t) } else { out.fail(with: t) }
                }
            } else if let otherwise = c.object["else"] {
                let e = sub(otherwise, c, c.path("else"))
                if e.valid { out.absorbAnnotations(e) } else { out.fail(with: e) }
            }
        case .then, .else_, .minContains, .maxContains:
            break
        case .dependentSchemas:
            guard case .object(let instance) = c.instance, case .object(let deps) = value else { break }
            for (name, s) in deps where instance[name] != nil {
                let r = sub(s, c, c.path("dependentSchemas").appending(name))
                if r.valid { out.absorbAnnotations(r) } else { out.fail(with: r) }
            }
        case .prefixItems:
            guard case .array(let items) = c.instance, case .array(let schemas) = value else { break }
            for (i, s) in schemas.enumerated() where i < items.count {
                let r = sub(s, c, c.path("prefixItems").appending(i), instance: items[i], instancePath: c.instancePath.appending(i))
                if !r.valid { out.fail(with: r) }
            }
            out.itemsPrefix = max(out.itemsPrefix, min(schemas.count, items.count))
        case .items:
            guard case .array(let items) = c.instance else { break }
            let start = c.object["prefixItems"]?.arrayValue?.count ?? 0
            guard start < items.count else { break }
            for i in start..<items.count {
                let r = sub(value, c, c.path("items"), instance: items[i], instancePath: c.instancePath.appending(i))
                if !r.valid { out.fail(with: r) }
            }
            out.itemsPrefix = items.count
        case .contains:
            containsKeyword(value, &c, &out)
        case .properties:
            guard case .object(let instance) = c.instance, case .object(let props) = value else { break }
            for (name, s) in props {
                guard let member = instance[name] else { continue }
                let r = sub(s, c, c.path("properties").appending(name), instance: member, instancePath: c.instancePath.appending(name))
                if !r.valid { out.fail(with: r) }
                out.properties.insert(name)
            }
        case .patternProperties:
            guard case .object(let instance) = c.instance, case .object(let patterns) = value else { break }
            for (pattern, s) in patterns {
                for (name, member) in instance where matches(pattern, name, c, &out) {
                    let r = sub(s, c, c.path("patternProperties").appending(pattern), instance: member, instancePath: c.instancePath.appending(name))
                    if !r.valid { out.fail(with: r) }
                    out.properties.insert(name)
                }
            }
        case .additionalProperties:
            guard case .object(let instance) = c.instance else { break }
            let declared = c.object["properties"]?.objectValue ?? [:]
            let patterns = c.object["patternProperties"]?.objectValue?.keys.map { $0 } ?? []
            for (name, member) in instance where declared[name] == nil {
                var scratch = Outcome()
                if patterns.contains(where: { matches($0, name, c, &scratch) }) { continue }
                if value == .bool(false) {
                    out.fail(c.instancePath.appending(name), c.path("additionalProperties"), "property \"\(name)\" is not allowed")
                } else {
                    let r = sub(value, c, c.path("additionalProperties"), instance: member, instancePath: c.instancePath.appending(name))
                    if !r.valid { out.fail(with: r) }
                }
                out.properties.insert(name)
            }
        case .propertyNames:
            guard case .object(let instance) = c.instance else { break }
            for name in instance.keys {
                let r = sub(value, c, c.path("propertyNames"), instance: .string(name), instancePath: c.instancePath.appending(name))
                if !r.valid { out.fail(c.instancePath.appending(name), c.path("propertyNames"), "property name \"\(name)\" is not allowed" + Self.firstReason(r.issues)) }
            }
        default:
            Assertions.check(kind, value, c, &out, regex: { pattern, text, o in self.matches(pattern, text, c, &o) })
        }
    }

    static func firstReason(_ issues: [ValidationIssue]) -> String {
        guard let first = issues.first else { return "" }
        return " (for example: \(first.description))"
    }

    func matches(_ pattern: String, _ text: String, _ c: KeywordContext, _ out: inout Outcome) -> Bool {
        let regex: ECMARegex
        if let cached = validator.pattern(pattern) {
            regex = cached
        } else if let compiled = try? ECMARegex(pattern) {
            regex = compiled
        } else {
            out.fail(c.instancePath, c.keywordPath, "pattern \"\(pattern)\" is not a valid regular expression")
            return false
        }
        switch regex.firstMatch(in: text, stepLimit: validator.options.regexStepLimit) {
        case .matched: return true
        case .noMatch: return false
        case .tooComplex:
            out.fail(c.instancePath, c.keywordPath, "pattern \"\(pattern)\" took too many steps on this value; the value is refused")
            return false
        }
    }

    mutating func reference(_ value: JSONValue, dynamic: Bool, _ c: inout KeywordContext, _ out: inout Outcome) {
        guard case .string(let ref) = value else { return }
        let keyword = dynamic ? "$dynamicRef" : "$ref"
        guard let target = validator.reference(ref, base: c.base) else {
            out.fail(c.instancePath, c.path(keyword), "cannot resolve \(keyword) \"\(ref)\"")
            return
        }
        var resolved = (schema: target.schema, base: target.base)
        if dynamic, let fragment = target.fragment, !fragment.isEmpty, !fragment.hasPrefix("/"),
           resolved.schema["$dynamicAnchor"] == .string(fragment)
        {
            for uri in c.scope {
                if let resource = validator.registry.resource(uri), resource.dynamicAnchors.contains(fragment),
                   let anchored = resource.anchors[fragment]
                {
                    resolved = (anchored, uri)
                    break
                }
            }
        }
        let r = evaluate(resolved.schema, base: resolved.base, idApplied: true, scope: c.scope, instance: c.instance,
                         instancePath: c.instancePath, keywordPath: c.path(keyword))
        if r.valid { out.absorbAnnotations(r) } else { out.fail(with: r) }
    }

    mutating func containsKeyword(_ value: JSONValue, _ c: inout KeywordContext, _ out: inout Outcome) {
        guard case .array(let items) = c.instance else { return }
        var matched: [Int] = []
        for (i, item) in items.enumerated() {
            let r = sub(value, c, c.path("contains"), instance: item, instancePath: c.instancePath.appending(i))
            if r.valid { matched.append(i) }
        }
        let minimum = c.object["minContains"].flatMap { $0.doubleValue } ?? 1
        let maximum = c.object["maxContains"].flatMap { $0.doubleValue }
        if Double(matched.count) < minimum {
            let path = c.object["minContains"] != nil ? c.path("minContains") : c.path("contains")
            out.fail(c.instancePath, path, minimum <= 1 ? "no item matches the \"contains\" schema"
                : "only \(matched.count) items match the \"contains\" schema, at least \(Assertions.format(minimum)) must")
        }
        if let maximum, Double(matched.count) > maximum {
            out.fail(c.instancePath, c.path("maxContains"), "\(matched.count) items match the \"contains\" schema, at most \(Assertions.format(maximum)) may")
        }
        out.itemIndices.formUnion(matched)
    }

    mutating func unevaluatedItems(_ value: JSONValue, _ c: inout KeywordContext, _ out: inout Outcome) {
        guard case .array(let items) = c.instance else { return }
        for i in items.indices where i >= out.itemsPrefix && !out.itemIndices.contains(i) {
            let r = sub(value, c, c.path("unevaluatedItems"), instance: items[i], instancePath: c.instancePath.appending(i))
            if !r.valid {
                if value == .bool(false) {
                    out.fail(c.instancePath.appending(i), c.path("unevaluatedItems"), "item \(i) is not allowed here")
                } else {
                    out.fail(with: r)
                }
            }
        }
        out.itemsPrefix = items.count
    }

    mutating func unevaluatedProperties(_ value: JSONValue, _ c: inout KeywordContext, _ out: inout Outcome) {
        guard case .object(let instance) = c.instance else { return }
        for (name, member) in instance where !out.properties.contains(name) {
            let r = sub(value, c, c.path("unevaluatedProperties"), instance: member, instancePath: c.instancePath.appending(name))
            if !r.valid {
                if value == .bool(false) {
                    out.fail(c.instancePath.appending(name), c.path("unevaluatedProperties"), "property \"\(name)\" is not allowed")
                } else {
                    out.fail(with: r)
                }
            }
        }
        out.properties.formUnion(instance.keys)
    }
}
