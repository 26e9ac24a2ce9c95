import ConfbusCore

/// What `unevaluatedProperties`/`unevaluatedItems` need from the keywords evaluated before them:
/// recorded only when the program uses either.
struct Annotations {
    var properties: Set<String> = []
    var itemsPrefix = 0
    var itemIndices: Set<Int> = []

    mutating func absorb(_ other: Annotations) {
        properties.formUnion(other.properties)
        itemsPrefix = max(itemsPrefix, other.itemsPrefix)
        itemIndices.formUnion(other.itemIndices)
    }
}

/// Runs a `SchemaProgram` against one instance. In a validity-only pass (`collect` off) nothing
/// is spelled out and the first failure ends the node; when the value turns out invalid, a second
/// pass with `collect` on gathers every failed assertion with its instance and keyword paths.
/// Branches whose messages are never shown (`not`, `if`, `contains`) always run validity-only.
struct Evaluator {
    let program: SchemaProgram
    private(set) var collect: Bool
    private(set) var issues: [ValidationIssue] = []
    private var instanceTokens: [String] = []
    private var keywordTokens: [String] = []
    private var scope: [Int32] = []
    private var depth = 0
    private static let maxDepth = 200

    init(program: SchemaProgram, collect: Bool) {
        self.program = program
        self.collect = collect
    }

    // MARK: paths and failures

    private mutating func fail(_ message: @autoclosure () -> String, instance extra: String? = nil, keyword: [String] = []) {
        guard collect else { return }
        var instancePath = instanceTokens
        if let extra { instancePath.append(extra) }
        issues.append(ValidationIssue(instancePath: JSONPointer(tokens: instancePath),
                                      keywordPath: JSONPointer(tokens: keywordTokens + keyword), message: message()))
    }

    /// Evaluates node `index` against a member or item of the current instance (`item`), or
    /// against the instance itself, under the keyword path `keyword`/`second`.
    private mutating func child(_ index: Int32, _ instance: JSONValue, _ annotations: inout Annotations, _ keyword: String,
                                _ second: String? = nil, item: String? = nil) -> Bool {
        let tracking = collect
        if tracking {
            keywordTokens.append(keyword)
            if let second { keywordTokens.append(second) }
            if let item { instanceTokens.append(item) }
        }
        let valid = evaluate(index, instance, &annotations)
        if tracking {
            keywordTokens.removeLast(second == nil ? 1 : 2)
            if item != nil { instanceTokens.removeLast() }
        }
        return valid
    }

    /// A branch whose own failures are never reported: validity only.
    private mutating func quietly(_ index: Int32, _ instance: JSONValue, _ annotations: inout Annotations) -> Bool {
        let saved = collect
        collect = false
        defer { collect = saved }
        return evaluate(index, instance, &annotations)
    }

    /// The first issue gathered since `mark`, as the "for example" of a summary message; the
    /// gathered issues are dropped.
    private mutating func takeReason(since mark: Int) -> String {
        guard issues.count > mark else { return "" }
        let reason = " (for example: \(issues[mark].description))"
        issues.removeSubrange(mark...)
        return reason
    }

    // MARK: nodes

    /// Whether the instance is valid against node `index`; its annotations join `parent` only when it is.
    mutating func evaluate(_ index: Int32, _ instance: JSONValue, _ parent: inout Annotations) -> Bool {
        let node = program.nodes[Int(index)]
        switch node.kind {
        case .accept: return true
        case .reject:
            fail("no value is allowed here")
            return false
        case .notSchema:
            fail("the schema is not an object or a boolean")
            return false
        case .object:
            break
        }
        depth += 1
        defer { depth -= 1 }
        guard depth < Self.maxDepth else {
            fail("schema references nest too deeply (a $ref cycle?)")
            return false
        }
        let entered = scope.last != node.resource
        if entered { scope.append(node.resource) }
        defer { if entered { scope.removeLast() } }
        var valid = true
        var local = Annotations()
        for op in node.ops {
            guard !apply(op, instance, &local) else { continue }
            valid = false
            if !collect { break }
        }
        if valid && program.tracksAnnotations { parent.absorb(local) }
        return valid
    }

    private mutating func apply(_ op: SchemaProgram.Op, _ instance: JSONValue, _ out: inout Annotations) -> Bool {
        let tracks = program.tracksAnnotations
        switch op {
        case .ref(let target):
            return child(target, instance, &out, "$ref")
        case .dynamicRef(var target, let anchor):
            if let anchor {
                for resource in scope {
                    if let anchored = program.resources[Int(resource)].dynamicAnchors[anchor] {
                        target = anchored
                        break
                    }
                }
            }
            return child(target, instance, &out, "$dynamicRef")
        case .unresolved(let keyword, let reference):
            fail("cannot resolve \(keyword) \"\(reference)\"", keyword: [keyword])
            return false
        case .allOf(let schemas):
            var valid = true
            for (i, schema) in schemas.enumerated() {
                guard !child(schema, instance, &out, "allOf", String(i)) else { continue }
                valid = false
                if !collect { break }
            }
            return valid
        case .anyOf(let schemas):
            let mark = issues.count
            var any = false
            for (i, schema) in schemas.enumerated() {
                guard child(schema, instance, &out, "anyOf", String(i)) else { continue }
                any = true
                if !tracks { break }
            }
            let reason = takeReason(since: mark)
            if !any { fail("does not match any of the allowed alternatives" + reason, keyword: ["anyOf"]) }
            return any
        case .oneOf(let schemas):
            let mark = issues.count
            var matches: [Int] = []
            var matched = Annotations()
            for (i, schema) in schemas.enumerated() {
                var branch = Annotations()
                guard child(schema, instance, &branch, "oneOf", String(i)) else { continue }
                matches.append(i)
                matched = branch
                if matches.count > 1 && !collect { break }
            }
            let reason = takeReason(since: mark)
            if matches.count == 1 {
                out.absorb(matched)
                return true
            }
            if matches.isEmpty {
                fail("does not match any of the alternatives" + reason, keyword: ["oneOf"])
            } else {
                fail("matches alternatives \(matches.map(String.init).joined(separator: " and ")), but must match exactly one", keyword: ["oneOf"])
            }
            return false
        case .not(let schema):
            var scratch = Annotations()
            if quietly(schema, instance, &scratch) {
                fail("matches a schema it must not match", keyword: ["not"])
                return false
            }
            return true
        case .ifThenElse(let condition, let then, let otherwise):
            if quietly(condition, instance, &out) {
                if let then { return child(then, instance, &out, "then") }
            } else if let otherwise {
                return child(otherwise, instance, &out, "else")
            }
            return true
        case .dependentSchemas(let schemas):
            guard case .object(let members) = instance else { return true }
            var valid = true
            for (name, schema) in schemas where members[name] != nil {
                guard !child(schema, instance, &out, "dependentSchemas", name) else { continue }
                valid = false
                if !collect { break }
            }
            return valid
        case .prefixItems(let schemas):
            guard case .array(let items) = instance else { return true }
            var valid = true
            for (i, schema) in schemas.enumerated() where i < items.count {
                var scratch = Annotations()
                if !child(schema, items[i], &scratch, "prefixItems", String(i), item: String(i)) {
                    valid = false
                    if !collect { return false }
                }
            }
            if tracks { out.itemsPrefix = max(out.itemsPrefix, min(schemas.count, items.count)) }
            return valid
        case .items(let schema, let start):
            guard case .array(let items) = instance, start < items.count else { return true }
            var valid = true
            for i in start..<items.count {
                var scratch = Annotations()
                if !child(schema, items[i], &scratch, "items", item: String(i)) {
                    valid = false
                    if !collect { return false }
                }
            }
            if tracks { out.itemsPrefix = items.count }
            return valid
        case .contains(let schema, let minimum, let maximum, let minimumDeclared):
            guard case .array(let items) = instance else { return true }
            var count = 0
            for (i, item) in items.enumerated() {
                var scratch = Annotations()
                if quietly(schema, item, &scratch) {
                    count += 1
                    if tracks { out.itemIndices.insert(i) }
                }
            }
            var valid = true
            if Double(count) < minimum {
                valid = false
                fail(minimum <= 1 ? "no item matches the \"contains\" schema"
                    : "only \(count) items match the \"contains\" schema, at least \(Self.format(minimum)) must",
                    keyword: [minimumDeclared ? "minContains" : "contains"])
            }
            if let maximum, Double(count) > maximum {
                valid = false
                fail("\(count) items match the \"contains\" schema, at most \(Self.format(maximum)) may", keyword: ["maxContains"])
            }
            return valid
        case .properties(let schemas):
            guard case .object(let members) = instance else { return true }
            var valid = true
            for (name, schema) in schemas {
                guard let member = members[name] else { continue }
                var scratch = Annotations()
                if !child(schema, member, &scratch, "properties", name, item: name) {
                    valid = false
                    if !collect { return false }
                }
                if tracks { out.properties.insert(name) }
            }
            return valid
        case .patternProperties(let schemas):
            guard case .object(let members) = instance else { return true }
            var valid = true
            for (source, regex, schema) in schemas {
                for (name, member) in members {
                    switch match(source, regex, name) {
                    case .noMatch: continue
                    case .failed: valid = false
                    case .matched:
                        var scratch = Annotations()
                        if !child(schema, member, &scratch, "patternProperties", source, item: name) { valid = false }
                        if tracks { out.properties.insert(name) }
                    }
                    if !valid && !collect { return false }
                }
            }
            return valid
        case .additionalProperties(let schema, let declared, let patterns):
            guard case .object(let members) = instance else { return true }
            var valid = true
            for (name, member) in members where !Self.sortedContains(declared, name) {
                if patterns.contains(where: { Self.matches($0.1, name, stepLimit: program.regexStepLimit) }) { continue }
                if let schema {
                    var scratch = Annotations()
                    if !child(schema, member, &scratch, "additionalProperties", item: name) { valid = false }
                } else {
                    valid = false
                    fail("property \"\(name)\" is not allowed", instance: name, keyword: ["additionalProperties"])
                }
                if !valid && !collect { return false }
                if tracks { out.properties.insert(name) }
            }
            return valid
        case .propertyNames(let schema):
            guard case .object(let members) = instance else { return true }
            var valid = true
            for name in members.keys {
                let mark = issues.count
                var scratch = Annotations()
                if !child(schema, .string(name), &scratch, "propertyNames", item: name) {
                    valid = false
                    let reason = takeReason(since: mark)
                    fail("property name \"\(name)\" is not allowed" + reason, instance: name, keyword: ["propertyNames"])
                    if !collect { return false }
                }
            }
            return valid
        case .unevaluatedItems(let schema):
            guard case .array(let items) = instance else { return true }
            var valid = true
            for i in items.indices where i >= out.itemsPrefix && !out.itemIndices.contains(i) {
                if let schema {
                    var scratch = Annotations()
                    if !child(schema, items[i], &scratch, "unevaluatedItems", item: String(i)) { valid = false }
                } else {
                    valid = false
                    fail("item \(i) is not allowed here", instance: String(i), keyword: ["unevaluatedItems"])
                }
                if !valid && !collect { return false }
            }
            out.itemsPrefix = items.count
            return valid
        case .unevaluatedProperties(let schema):
            guard case .object(let members) = instance else { return true }
            var valid = true
            for (name, member) in members where !out.properties.contains(name) {
                if let schema {
                    var scratch = Annotations()
                    if !child(schema, member, &scratch, "unevaluatedProperties", item: name) { valid = false }
                } else {
                    valid = false
                    fail("property \"\(name)\" is not allowed", instance: name, keyword: ["unevaluatedProperties"])
                }
                if !valid && !collect { return false }
            }
            out.properties.formUnion(members.keys)
            return valid
        case .type(let mask, let names):
            if mask & SchemaProgram.typeBit(of: instance) != 0 { return true }
            fail(names.message + JSONValue.withArticle(instance.typeName), keyword: ["type"])
            return false
        case .enumeration(let options):
            if options.contains(instance) { return true }
            fail("must be one of \(options.map { $0.serialized() }.joined(separator: ", "))", keyword: ["enum"])
            return false
        case .constant(let value):
            if instance == value { return true }
            fail("must be \(value.serialized())", keyword: ["const"])
            return false
        case .pattern(let source, let regex):
            guard case .string(let text) = instance else { return true }
            switch match(source, regex, text) {
            case .matched: return true
            case .failed: return false
            case .noMatch:
                fail("must match the pattern \(source)", keyword: ["pattern"])
                return false
            }
        case .format(let name):
            guard case .string(let text) = instance, let valid = Formats.check(name, text), !valid else { return true }
            fail("is not a valid \(name)", keyword: ["format"])
            return false
        case .size(let keyword, let size, let limit, let atMost):
            guard let count = size.count(of: instance) else { return true }
            if atMost ? Double(count) <= limit : Double(count) >= limit { return true }
            fail(size.message(Self.format(limit), atMost: atMost), keyword: [keyword.rawValue])
            return false
        case .assertion(let kind, let value):
            return assert(kind, value, instance)
        }
    }

    private enum Match { case matched, noMatch, failed }

    /// Matches a `pattern` or a `patternProperties` key; a pattern that does not compile, or that
    /// runs out of steps on this value, fails the schema object.
    private mutating func match(_ source: String, _ regex: ECMARegex?, _ text: String) -> Match {
        guard let regex else {
            fail("pattern \"\(source)\" is not a valid regular expression")
            return .failed
        }
        switch regex.firstMatch(in: text, stepLimit: program.regexStepLimit) {
        case .matched: return .matched
        case .noMatch: return .noMatch
        case .tooComplex:
            fail("pattern \"\(source)\" took too many steps on this value; the value is refused")
            return .failed
        }
    }

    /// Whether `sorted` (ascending) holds `name`, by halves.
    static func sortedContains(_ sorted: [String], _ name: String) -> Bool {
        var (low, high) = (0, sorted.count)
        while low < high {
            let mid = (low + high) / 2
            if sorted[mid] < name { low = mid + 1 } else { high = mid }
        }
        return low < sorted.count && sorted[low] == name
    }

    private static func matches(_ regex: ECMARegex?, _ text: String, stepLimit: Int) -> Bool {
        regex?.firstMatch(in: text, stepLimit: stepLimit) == .matched
    }

    // MARK: the validation vocabulary

    private mutating func assert(_ kind: KeywordKind, _ value: JSONValue, _ instance: JSONValue) -> Bool {
        let keyword = [kind.rawValue]
        switch kind {
        case .multipleOf:
            guard let x = instance.doubleValue, let m = value.doubleValue, m > 0 else { return true }
            if case .integer(let i) = instance, case .integer(let d) = value {
                if i % d == 0 { return true }
                fail("must be a multiple of \(d)", keyword: keyword)
                return false
            }
            let q = x / m
            if q.isFinite && abs(q - q.rounded()) <= 1e-9 * max(1, abs(q)) { return true }
            fail("must be a multiple of \(Self.format(m))", keyword: keyword)
            return false
        case .maximum:
            guard let x = instance.doubleValue, let limit = value.doubleValue, Self.compare(instance, value) > 0 || x > limit else { return true }
            fail("must be at most \(Self.format(limit))", keyword: keyword)
            return false
        case .exclusiveMaximum:
            guard instance.doubleValue != nil, let limit = value.doubleValue, Self.compare(instance, value) >= 0 else { return true }
            fail("must be less than \(Self.format(limit))", keyword: keyword)
            return false
        case .minimum:
            guard let x = instance.doubleValue, let limit = value.doubleValue, Self.compare(instance, value) < 0 || x < limit else { return true }
            fail("must be at least \(Self.format(limit))", keyword: keyword)
            return false
        case .exclusiveMinimum:
            guard instance.doubleValue != nil, let limit = value.doubleValue, Self.compare(instance, value) <= 0 else { return true }
            fail("must be greater than \(Self.format(limit))", keyword: keyword)
            return false
        case .uniqueItems:
            guard value == .bool(true), case .array(let a) = instance else { return true }
            var seen = Set<JSONValue>()
            for (i, item) in a.enumerated() where !seen.insert(item).inserted {
                fail("items must be unique; item \(i) repeats an earlier one", instance: String(i), keyword: keyword)
                return false
            }
            return true
        case .required:
            guard case .object(let o) = instance, case .array(let names) = value else { return true }
            var valid = true
            for case .string(let name) in names where o[name] == nil {
                valid = false
                guard collect else { return false }
                fail("required property \"\(name)\" is missing", instance: name, keyword: keyword)
            }
            return valid
        case .dependentRequired:
            guard case .object(let o) = instance, case .object(let deps) = value else { return true }
            var valid = true
            for (name, needs) in deps where o[name] != nil {
                for case .string(let needed) in needs.arrayValue ?? [] where o[needed] == nil {
                    valid = false
                    guard collect else { return false }
                    fail("property \"\(needed)\" is required when \"\(name)\" is present", instance: needed, keyword: [kind.rawValue, name])
                }
            }
            return valid
        default:
            return true
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
