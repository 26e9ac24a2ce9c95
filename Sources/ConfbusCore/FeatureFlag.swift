/// A feature flag of CONTRACT.md §12 and the one rule that evaluates it, shared by the server,
/// `ConfbusProvider` and `confbus agent`: rules in order, then a sha256 bucket of the context's key
/// against the rollout percentage, then a second bucket over the variants' weights. Pure: the same
/// flag, service, pointer and context give the same answer in every process.
public struct FeatureFlag: Sendable, Equatable {
    public struct Rule: Sendable, Equatable {
        public enum Operator: String, Sendable, CaseIterable {
            case eq, `in`, notIn = "not_in", startsWith = "starts_with", gte, lte
        }

        public var attribute: String
        public var op: Operator
        public var values: [JSONValue]
        public var serve: FlagValue
    }

    public struct Variant: Sendable, Equatable {
        public var name: String
        public var weight: Double
    }

    public var enabled: Bool
    /// 0–100; absent means 100.
    public var rolloutPercentage: Double
    /// By name (code point order), which is the order their weights are laid out in.
    public var variants: [Variant]
    public var rules: [Rule]
    public var salt: String

    /// A flag from its JSON; a shape the contract does not allow is an error naming the member
    /// (a pointer relative to the flag) without quoting any value.
    public init(json: JSONValue) throws(FlagProblem) {
        guard case .object(let object) = json else { throw FlagProblem("", "a flag must be an object") }
        let known: Set<String> = ["enabled", "rollout_percentage", "variants", "rules", "salt", "description"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw FlagProblem("/\(JSONPointer.escape(unknown))", "is not a member of a flag")
        }
        guard case .bool(let enabled)? = object["enabled"] else { throw FlagProblem("/enabled", "is required and must be a boolean") }
        self.enabled = enabled
        switch object["rollout_percentage"] {
        case nil: rolloutPercentage = 100
        case let value?:
            guard let percent = value.doubleValue, percent >= 0, percent <= 100 else {
                throw FlagProblem("/rollout_percentage", "must be a number from 0 to 100")
            }
            rolloutPercentage = percent
        }
        switch object["salt"] {
        case nil: salt = ""
        case .string(let text)?: salt = text
        default: throw FlagProblem("/salt", "must be a string")
        }
        if let description = object["description"], description.stringValue == nil { throw FlagProblem("/description", "must be a string") }
        var variants: [Variant] = []
        if let raw = object["variants"] {
            guard case .object(let weights) = raw, !weights.isEmpty else { throw FlagProblem("/variants", "must be an object of one or more weights") }
            for name in weights.keys.sorted(by: FeatureFlag.codePointOrder) {
                guard let weight = weights[name]!.doubleValue, weight >= 0, weight.isFinite else {
                    throw FlagProblem("/variants/\(JSONPointer.escape(name))", "must be a weight of 0 or more")
                }
                if name.isEmpty { throw FlagProblem("/variants/", "a variant needs a name") }
                variants.append(Variant(name: name, weight: weight))
            }
            if variants.reduce(0, { $0 + $1.weight }) <= 0 { throw FlagProblem("/variants", "at least one weight must be above 0") }
        }
        self.variants = variants
        var rules: [Rule] = []
        if let raw = object["rules"] {
            guard case .array(let items) = raw else { throw FlagProblem("/rules", "must be an array") }
            for (index, item) in items.enumerated() {
                rules.append(try Self.rule(item, at: "/rules/\(index)", variants: Set(variants.map(\.name))))
            }
        }
        self.rules = rules
    }

    private static func rule(_ json: JSONValue, at path: String, variants: Set<String>) throws(FlagProblem) -> Rule {
        guard case .object(let object) = json else { throw FlagProblem(path, "a rule must be an object") }
        let known: Set<String> = ["attribute", "op", "values", "serve"]
        if let unknown = object.keys.sorted().first(where: { !known.contains($0) }) {
            throw FlagProblem("\(path)/\(JSONPointer.escape(unknown))", "is not a member of a rule")
        }
        guard case .string(let attribute)? = object["attribute"], !attribute.isEmpty else {
            throw FlagProblem("\(path)/attribute", "is required and must be a non-empty string")
        }
        guard case .string(let name)? = object["op"], let op = Rule.Operator(rawValue: name) else {
            throw FlagProblem("\(path)/op", "must be one of eq, in, not_in, starts_with, gte, lte")
        }
        guard case .array(let values)? = object["values"], !values.isEmpty else {
            throw FlagProblem("\(path)/values", "is required and must be a non-empty array")
        }
        for (index, value) in values.enumerated() {
            switch value {
            case .string, .integer, .number, .bool: break
            default: throw FlagProblem("\(path)/values/\(index)", "must be a string, a number or a boolean")
            }
            if op == .startsWith, value.stringValue == nil { throw FlagProblem("\(path)/values/\(index)", "starts_with compares strings") }
            if op == .gte || op == .lte, value.stringValue == nil, value.doubleValue == nil {
                throw FlagProblem("\(path)/values/\(index)", "\(op.rawValue) compares numbers or strings")
            }
        }
        if (op == .eq || op == .gte || op == .lte), values.count != 1 { throw FlagProblem("\(path)/values", "\(op.rawValue) takes exactly one value") }
        let serve: FlagValue
        switch object["serve"] {
        case .bool(let on)?: serve = .bool(on)
        case .string(let variant)?:
            guard variants.contains(variant) else { throw FlagProblem("\(path)/serve", "names no variant of this flag") }
            serve = .variant(variant)
        default: throw FlagProblem("\(path)/serve", "is required: true, false or a variant's name")
        }
        return Rule(attribute: attribute, op: op, values: values, serve: serve)
    }

    // MARK: Evaluation

    public func evaluate(_ context: FlagContext, service: String, pointer: JSONPointer) -> FlagResult {
        guard enabled else { return FlagResult(value: .bool(false), reason: "disabled") }
        for (index, rule) in rules.enumerated() where rule.matches(context.attributes[rule.attribute]) {
            let value: FlagValue = if case .bool(true) = rule.serve, !variants.isEmpty {
                .variant(variant(for: context.key, service: service, pointer: pointer))
            } else {
                rule.serve
            }
            return FlagResult(value: value, reason: "rule:\(index)")
        }
        let on = Self.bucket(service: service, pointer: pointer, salt: salt, key: context.key) < rolloutPercentage
        guard on else { return FlagResult(value: .bool(false), reason: "rollout") }
        return FlagResult(value: variants.isEmpty ? .bool(true) : .variant(variant(for: context.key, service: service, pointer: pointer)),
                          reason: "rollout")
    }

    /// The variant whose cumulative share of the weights first exceeds the second bucket.
    func variant(for key: String, service: String, pointer: JSONPointer) -> String {
        let b = Self.bucket(service: service, pointer: pointer, salt: salt + "/variant", key: key)
        let total = variants.reduce(0) { $0 + $1.weight }
        var cumulative = 0.0
        for variant in variants where variant.weight > 0 {
            cumulative += variant.weight
            if cumulative / total * 100 > b { return variant.name }
        }
        // Rounding can leave the last share a hair under b: the last weighted variant takes it.
        return variants.last { $0.weight > 0 }!.name
    }

    /// b in [0, 100): the first 8 bytes of sha256("<service>/<pointer>/<salt>/<key>") as a
    /// big-endian unsigned integer over 2^64, times 100. The top 53 bits are taken, so that the
    /// quotient is exact in a double and b never rounds up to 100.
    public static func bucket(service: String, pointer: JSONPointer, salt: String, key: String) -> Double {
        let digest = SHA256.hash(Array("\(service)/\(pointer)/\(salt)/\(key)".utf8))
        var value: UInt64 = 0
        for byte in digest.prefix(8) { value = value << 8 | UInt64(byte) }
        return Double(value >> 11) / 9_007_199_254_740_992.0 * 100
    }

    static func codePointOrder(_ a: String, _ b: String) -> Bool { a.unicodeScalars.lexicographicallyPrecedes(b.unicodeScalars) }
}

extension FeatureFlag.Rule {
    /// A context without the attribute matches no rule, `not_in` included (as LaunchDarkly's
    /// clauses); an attribute that is not a string, number or boolean matches none either.
    func matches(_ attribute: JSONValue?) -> Bool {
        guard let attribute else { return false }
        switch attribute {
        case .string, .integer, .number, .bool: break
        default: return false
        }
        switch op {
        case .eq, .in: return values.contains { Self.equal($0, attribute) }
        case .notIn: return !values.contains { Self.equal($0, attribute) }
        case .startsWith:
            guard case .string(let text) = attribute else { return false }
            return values.contains { $0.stringValue.map(text.hasPrefix) ?? false }
        case .gte, .lte:
            guard let order = Self.compare(attribute, values[0]) else { return false }
            return op == .gte ? order >= 0 : order <= 0
        }
    }

    /// Numbers by value (1 equals 1.0), strings and booleans exactly.
    static func equal(_ a: JSONValue, _ b: JSONValue) -> Bool {
        if let x = a.doubleValue, let y = b.doubleValue { return x == y }
        return a == b
    }

    /// Numbers by value, strings by code point; other pairs do not compare.
    static func compare(_ a: JSONValue, _ b: JSONValue) -> Int? {
        if let x = a.doubleValue, let y = b.doubleValue { return x < y ? -1 : (x > y ? 1 : 0) }
        if case .string(let x) = a, case .string(let y) = b {
            return x == y ? 0 : (FeatureFlag.codePointOrder(x, y) ? -1 : 1)
        }
        return nil
    }
}

/// What a flag serves: on, off, or a variant's name.
public enum FlagValue: Sendable, Hashable {
    case bool(Bool)
    case variant(String)

    public var json: JSONValue {
        switch self {
        case .bool(let on): .bool(on)
        case .variant(let name): .string(name)
        }
    }

    /// Whether the context gets the feature at all (a variant is on).
    public var isOn: Bool {
        if case .bool(false) = self { return false }
        return true
    }
}

public struct FlagResult: Sendable, Equatable {
    public var value: FlagValue
    /// `disabled`, `rule:<index>` or `rollout`.
    public var reason: String

    public init(value: FlagValue, reason: String) {
        self.value = value
        self.reason = reason
    }

    public var json: JSONValue { .object(["value": value.json, "reason": .string(reason)]) }
}

/// Who a flag is evaluated for: a stable key (a user's or a tenant's id) and attributes for rules.
public struct FlagContext: Sendable, Equatable {
    public var key: String
    public var attributes: [String: JSONValue]

    public init(key: String, attributes: [String: JSONValue] = [:]) {
        self.key = key
        self.attributes = attributes
    }

    /// `{"key": "...", "attributes": {...}}`.
    public init(json: JSONValue) throws(FlagProblem) {
        guard case .object(let object) = json else { throw FlagProblem("", "the context must be an object") }
        guard case .string(let key)? = object["key"], !key.isEmpty else { throw FlagProblem("/key", "is required and must be a non-empty string") }
        var attributes: [String: JSONValue] = [:]
        switch object["attributes"] {
        case nil, .null?: break
        case .object(let values)?: attributes = values
        default: throw FlagProblem("/attributes", "must be an object")
        }
        if let unknown = object.keys.sorted().first(where: { $0 != "key" && $0 != "attributes" }) {
            throw FlagProblem("/\(JSONPointer.escape(unknown))", "is not a member of a context")
        }
        self.init(key: key, attributes: attributes)
    }
}

/// A flag or context the contract does not allow: where (a JSON pointer relative to it) and why.
public struct FlagProblem: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(_ path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

extension FeatureFlag {
    /// The pointers of the flags in `config`, from the schema's flag paths (`*`: any member or item).
    public static func pointers(in config: JSONValue, paths: [[String]]) -> [JSONPointer] {
        var out: Set<JSONPointer> = []
        for path in paths { collect(config, path[...], at: .root, into: &out) }
        return out.sorted()
    }

    private static func collect(_ value: JSONValue, _ path: ArraySlice<String>, at pointer: JSONPointer, into out: inout Set<JSONPointer>) {
        guard let token = path.first else {
            out.insert(pointer)
            return
        }
        switch value {
        case .object(let members):
            if token == "*" {
                for (name, member) in members { collect(member, path.dropFirst(), at: pointer.appending(name), into: &out) }
            } else if let member = members[token] {
                collect(member, path.dropFirst(), at: pointer.appending(token), into: &out)
            }
        case .array(let items):
            for (index, item) in items.enumerated() where token == "*" || token == String(index) {
                collect(item, path.dropFirst(), at: pointer.appending(String(index)), into: &out)
            }
        default:
            return
        }
    }

    /// What the schema cannot say about the flags of a config that passed it, as validation
    /// issues at the offending member.
    public static func problems(in config: JSONValue, paths: [[String]]) -> [ValidationIssue] {
        pointers(in: config, paths: paths).compactMap { pointer -> ValidationIssue? in
            guard let value = config.value(at: pointer) else { return nil }
            do throws(FlagProblem) {
                _ = try FeatureFlag(json: value)
                return nil
            } catch {
                let at = JSONPointer(pointer.description + error.path) ?? pointer
                return ValidationIssue(instancePath: at, keywordPath: JSONPointer(tokens: ["$ref"]), message: error.message)
            }
        }
    }
}
