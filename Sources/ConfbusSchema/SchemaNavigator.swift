import ConfbusCore

/// Reads what a schema says about a place in the config without validating anything:
/// the properties it declares, their types and their `default`s. It follows `$ref` and
/// `allOf`, the ways a schema splits one object's properties across subschemas.
public struct SchemaNavigator: Sendable {
    let schema: CompiledSchema

    public init(_ schema: CompiledSchema) { self.schema = schema }

    /// The schema's root, to walk from: none when the compiled schema dropped its tree (then it
    /// has a defaults plan and its secret paths; walks by path need `retainingDocument`).
    private var root: [Located] {
        guard let source = schema.source else {
            assertionFailure("SchemaNavigator walks a schema compiled without retainingDocument")
            return []
        }
        return expand((source.document, schema.uri))
    }

    private typealias Located = (schema: JSONValue, base: String)

    /// One level of the object `schemas` describe: each declared property's schemas and the ones
    /// `additionalProperties` gives every other member, all expanded.
    private func members(of schemas: [Located]) -> (properties: [String: [Located]], additional: [Located]) {
        var properties: [String: [Located]] = [:]
        var additional: [Located] = []
        for located in schemas {
            for (name, sub) in located.schema["properties"]?.objectValue ?? [:] { properties[name, default: []] += expand((sub, located.base)) }
            if let sub = located.schema["additionalProperties"], case .object = sub { additional += expand((sub, located.base)) }
        }
        return (properties, additional)
    }

    /// The schema itself plus everything reachable through `$ref` and `allOf`.
    private func expand(_ start: Located) -> [Located] {
        var result: [Located] = []
        var queue = [start]
        while let next = queue.popLast(), result.count < 64 {
            guard case .object(let object) = next.schema else { continue }
            var base = next.base
            if case .string(let id) = object["$id"] { base = URIReference(base).resolving(URIReference(id)).withoutFragment.description }
            result.append((next.schema, base))
            if case .string(let ref) = object["$ref"], let target = schema.source?.registry.resolve(URIReference(base).resolving(URIReference(ref))) {
                queue.append((target.schema, target.base))
            }
            for member in object["allOf"]?.arrayValue ?? [] { queue.append((member, base)) }
        }
        return result
    }

    private func subschemas(at path: [String]) -> [Located] {
        var current = root
        for token in path {
            var next: [Located] = []
            for located in current {
                if let property = located.schema["properties"]?[token] { next += expand((property, located.base)) }
            }
            current = next
            if current.isEmpty { break }
        }
        return current
    }

    /// Property names the schema declares for the object at `path`, sorted.
    public func propertyNames(at path: [String]) -> [String] {
        var names = Set<String>()
        for located in subschemas(at: path) { names.formUnion(located.schema["properties"]?.objectValue?.keys ?? [:].keys) }
        return names.sorted()
    }

    /// The `type`s the schema declares for the value at `path` (empty when it says nothing).
    public func declaredTypes(at path: [String]) -> Set<String> {
        var types = Set<String>()
        for located in subschemas(at: path) {
            switch located.schema["type"] {
            case .string(let t): types.insert(t)
            case .array(let ts): types.formUnion(ts.compactMap(\.stringValue))
            default: break
            }
        }
        return types
    }

    /// The schema-defaults layer (CONTRACT.md §2 layer 1): `default`s of properties whose parent
    /// object is present in `present` (the merge of the higher layers) or is itself defaulted.
    public func defaults(present: JSONValue) -> JSONValue {
        if let plan = schema.defaultsPlan { return .object(plan.defaults(present: present.objectValue ?? [:])) }
        return defaultsByWalking(present: present)
    }

    func defaultsByWalking(present: JSONValue) -> JSONValue {
        .object(defaults(in: root, present: present.objectValue ?? [:]))
    }

    /// The schema's defaults laid out once (what `defaults(in:present:)` finds by walking the
    /// schema on every resolution), or nil when a schema recursing in many branches would make
    /// the layout too large; the walk then stays.
    func defaultsPlan(budget: Int = 4096) -> DefaultsPlan? {
        var remaining = budget
        return plan(root, depth: 0, remaining: &remaining)
    }

    private func plan(_ schemas: [Located], depth: Int, remaining: inout Int) -> DefaultsPlan? {
        remaining -= 1
        guard remaining >= 0 else { return nil }
        guard depth < 32 else { return DefaultsPlan(properties: [], declared: [], additional: nil) }
        let (properties, additional) = members(of: schemas)
        var planned: [DefaultsPlan.Property] = []
        let names = properties.keys.sorted()
        for name in names {
            let subs = properties[name] ?? []
            guard let children = plan(subs, depth: depth + 1, remaining: &remaining) else { return nil }
            let own = subs.lazy.compactMap { $0.schema["default"] }.first
            // A property with no default anywhere below adds nothing: only its name is kept, and
            // only where `additionalProperties` needs to tell it from the other members.
            guard own != nil || !children.isEmpty else { continue }
            planned.append(DefaultsPlan.Property(name: name, own: own, children: children.isEmpty ? nil : children))
        }
        var additionalPlan: DefaultsPlan?
        if !additional.isEmpty {
            guard let members = plan(additional, depth: depth + 1, remaining: &remaining) else { return nil }
            additionalPlan = members.isEmpty ? nil : members
        }
        return DefaultsPlan(properties: planned, declared: additionalPlan == nil ? [] : names, additional: additionalPlan)
    }

    private func defaults(in schemas: [Located], present: [String: JSONValue], depth: Int = 0) -> [String: JSONValue] {
        guard depth < 32 else { return [:] }
        let (properties, additional) = members(of: schemas)
        var out: [String: JSONValue] = [:]
        for (name, subs) in properties {
            let own = subs.lazy.compactMap { $0.schema["default"] }.first
            let childPresent: [String: JSONValue]?
            if case .object(let p) = present[name] {
                childPresent = p
            } else if present[name] == nil, case .object(let d) = own {
                childPresent = d
            } else {
                childPresent = nil
            }
            var value = own
            if let childPresent {
                let nested = defaults(in: subs, present: childPresent, depth: depth + 1)
                if !nested.isEmpty {
                    // The parent's own default is more specific than its children's.
                    value = own.map { MergePatch.apply($0, to: .object(nested)) } ?? .object(nested)
                }
            }
            if let value { out[name] = value }
        }
        // Members that no `properties` names take the defaults of `additionalProperties`
        // (a map of feature flags gets each flag's defaults).
        if !additional.isEmpty {
            for (name, member) in present where properties[name] == nil {
                guard case .object(let memberObject) = member else { continue }
                let nested = defaults(in: additional, present: memberObject, depth: depth + 1)
                if !nested.isEmpty { out[name] = .object(nested) }
            }
        }
        return out
    }

    /// Paths of values the schema marks secret (`writeOnly: true` or `x-confbus-secret: true`),
    /// wherever they sit: `*` stands for any member of a map that `additionalProperties` or
    /// `patternProperties` describes and for any item of an array (`items`); `prefixItems` give
    /// their index. A pattern's members are all covered, matching or not: masking one value too
    /// many is safe, missing one is not.
    /// A schema recursing in many branches (`items` and `additionalProperties` both `$ref: "#"`)
    /// would be walked exponentially: past a budget of schema objects visited the walk ends with the
    /// paths found and the remaining subtree masked whole.
    public func secretPaths(budget: Int = 4096) -> [[String]] {
        paths(budget: budget, markedOutOfBudget: true) { $0["writeOnly"] == .bool(true) || $0["x-confbus-secret"] == .bool(true) }
    }

    /// Paths of the values that are feature flags (CONTRACT.md §12): whose schema is, through
    /// `$ref` or `allOf`, the embedded `urn:confbus:flag`. `*` as in `secretPaths`; past the budget
    /// the walk ends with the flags found.
    public func flagPaths(budget: Int = 4096) -> [[String]] {
        paths(budget: budget, markedOutOfBudget: false) { $0["$id"] == .string(FlagSchema.uri) }
    }

    /// The paths of the values whose schemas include one that `marks`; the walk stops at a marked
    /// one. Out of budget, the subtree left is taken as marked when `markedOutOfBudget`.
    private func paths(budget: Int, markedOutOfBudget: Bool, marks: (JSONValue) -> Bool) -> [[String]] {
        var out: [[String]] = []
        var remaining = budget
        collect(root, path: [], into: &out, depth: 0, remaining: &remaining, markedOutOfBudget: markedOutOfBudget, marks: marks)
        return out
    }

    private func collect(_ schemas: [Located], path: [String], into out: inout [[String]], depth: Int, remaining: inout Int,
                         markedOutOfBudget: Bool, marks: (JSONValue) -> Bool) {
        remaining -= 1
        guard remaining >= 0 else {
            // Out of budget: what is below here is not known (for secrets: treated as secret).
            if markedOutOfBudget && !schemas.isEmpty { out.append(path) }
            return
        }
        guard depth < 32 else { return }
        if schemas.contains(where: { marks($0.schema) }) {
            out.append(path)
            return
        }
        let (properties, additional) = members(of: schemas)
        var anyMember = additional
        var anyItem: [Located] = []
        var prefix: [Int: [Located]] = [:]
        for located in schemas {
            for (_, sub) in located.schema["patternProperties"]?.objectValue ?? [:] { anyMember += expand((sub, located.base)) }
            if let sub = located.schema["items"], case .object = sub { anyItem += expand((sub, located.base)) }
            for (i, sub) in (located.schema["prefixItems"]?.arrayValue ?? []).enumerated() { prefix[i, default: []] += expand((sub, located.base)) }
        }
        var next: [(path: String, schemas: [Located])] = properties.sorted(by: { $0.key < $1.key }).map { ($0.key, $0.value) }
        if !anyMember.isEmpty { next.append(("*", anyMember)) }
        next += prefix.sorted(by: { $0.key < $1.key }).map { (String($0.key), $0.value) }
        if !anyItem.isEmpty { next.append(("*", anyItem)) }
        for (token, subs) in next {
            collect(subs, path: path + [token], into: &out, depth: depth + 1, remaining: &remaining, markedOutOfBudget: markedOutOfBudget, marks: marks)
        }
    }
}

/// Where a schema puts `default`s, laid out once per compiled schema: for each declared property
/// its own default and the layout of its members, and the layout that `additionalProperties`
/// gives to every other member. Applying it to what the higher layers hold is the schema-defaults
/// layer of CONTRACT.md §2.
final class DefaultsPlan: Sendable {
    struct Property: Sendable {
        let name: String
        let own: JSONValue?
        let children: DefaultsPlan?
    }

    /// The properties with a default at or below them, by name.
    let properties: [Property]
    /// Every property the level declares, sorted: kept only when `additional` is laid out, to
    /// tell the other members from them.
    let declared: [String]
    let additional: DefaultsPlan?

    init(properties: [Property], declared: [String], additional: DefaultsPlan?) {
        self.properties = properties
        self.declared = declared
        self.additional = additional
    }

    /// Lays out nothing: no property has a default anywhere below.
    var isEmpty: Bool { additional == nil && properties.isEmpty }

    /// Defaults of properties whose parent object is present in `present` or is itself defaulted.
    func defaults(present: [String: JSONValue]) -> [String: JSONValue] {
        var out: [String: JSONValue] = [:]
        for property in properties {
            let own = property.own
            var value = own
            if let children = property.children {
                let childPresent: [String: JSONValue]?
                if case .object(let p) = present[property.name] {
                    childPresent = p
                } else if present[property.name] == nil, case .object(let d) = own {
                    childPresent = d
                } else {
                    childPresent = nil
                }
                if let childPresent {
                    let nested = children.defaults(present: childPresent)
                    if !nested.isEmpty {
                        // The parent's own default is more specific than its children's.
                        value = own.map { MergePatch.apply($0, to: .object(nested)) } ?? .object(nested)
                    }
                }
            }
            if let value { out[property.name] = value }
        }
        if let additional {
            for (name, member) in present where !Evaluator.sortedContains(declared, name) {
                guard case .object(let memberObject) = member else { continue }
                let nested = additional.defaults(present: memberObject)
                if !nested.isEmpty { out[name] = .object(nested) }
            }
        }
        return out
    }
}
