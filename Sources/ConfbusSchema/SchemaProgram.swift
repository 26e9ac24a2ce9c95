import ConfbusCore

/// A schema compiled once into a flat table of nodes, each a list of operations with everything
/// the interpreter used to look up per value already settled: references point at their target
/// node, vocabularies and `format` assertion are decided per node, patterns are compiled, `type`
/// is a bit mask and messages that depend only on the schema are spelled out.
///
/// Nodes refer to each other by index, so a recursive schema (`$ref: "#"`) is a cycle of
/// integers, not of objects.
final class SchemaProgram: Sendable {
    struct Node: Sendable {
        enum Kind: Sendable { case accept, reject, object, notSchema }
        var kind: Kind
        /// The resource (base URI) the node is evaluated in; entered into the dynamic scope.
        var resource: Int32
        var ops: [Op]
    }

    struct Resource: Sendable {
        var uri: String
        /// `$dynamicAnchor`s of this resource, compiled; consulted while the resource is in scope.
        var dynamicAnchors: [String: Int32]
    }

    enum Op: Sendable {
        case ref(Int32)
        /// `anchor` is set when the reference lands on a matching `$dynamicAnchor`, so the outermost
        /// resource in scope with that anchor wins.
        case dynamicRef(Int32, anchor: String?)
        case unresolved(keyword: String, reference: String)
        case allOf([Int32])
        case anyOf([Int32])
        case oneOf([Int32])
        case not(Int32)
        case ifThenElse(Int32, then: Int32?, else: Int32?)
        case dependentSchemas([(String, Int32)])
        case prefixItems([Int32])
        case items(Int32, start: Int)
        case contains(Int32, minimum: Double, maximum: Double?, minimumDeclared: Bool)
        case properties([(String, Int32)])
        case patternProperties([(String, ECMARegex?, Int32)])
        /// `declared`: the sibling `properties`' names, sorted (searched by halves).
        case additionalProperties(Int32?, declared: [String], patterns: [(String, ECMARegex?)])
        case propertyNames(Int32)
        case unevaluatedItems(Int32?)
        case unevaluatedProperties(Int32?)
        /// The messages of these three are spelled out when a value fails, not kept per keyword:
        /// a tree of ten thousand schemas holds hundreds of thousands of them.
        case type(UInt8, names: TypeList)
        case enumeration([JSONValue])
        case constant(JSONValue)
        case pattern(String, ECMARegex?)
        case format(String)
        /// `maxLength`/`minLength`, `maxItems`/`minItems`, `maxProperties`/`minProperties`.
        case size(KeywordKind, Size, limit: Double, atMost: Bool)
        /// The other single-value assertions, with the keyword's value.
        case assertion(KeywordKind, JSONValue)
    }

    /// What a size keyword counts, and in which type of value.
    enum Size: Sendable {
        case characters, items, properties

        /// The count of `value`, nil when the keyword does not apply to its type.
        func count(of value: JSONValue) -> Int? {
            switch (self, value) {
            case (.characters, .string(let s)): s.unicodeScalars.count
            case (.items, .array(let a)): a.count
            case (.properties, .object(let o)): o.count
            default: nil
            }
        }

        func message(_ limit: String, atMost: Bool) -> String {
            let bound = atMost ? "at most" : "at least"
            return switch self {
            case .characters: "must be \(bound) \(limit) characters long"
            case .items: "must have \(bound) \(limit) items"
            case .properties: "must have \(bound) \(limit) properties"
            }
        }
    }

    let nodes: [Node]
    let resources: [Resource]
    /// Whether any node uses `unevaluatedItems`/`unevaluatedProperties`: only then are the
    /// evaluated properties and items recorded at all.
    let tracksAnnotations: Bool
    let regexStepLimit: Int

    init(nodes: [Node], resources: [Resource], tracksAnnotations: Bool, regexStepLimit: Int) {
        self.nodes = nodes
        self.resources = resources
        self.tracksAnnotations = tracksAnnotations
        self.regexStepLimit = regexStepLimit
    }

    /// Compiles the schema at `rootURI` in `registry`; node 0 is the root.
    static func compile(registry: SchemaRegistry, rootURI: String, options: SchemaValidator.Options) -> SchemaProgram? {
        guard let root = registry.resource(rootURI) else { return nil }
        var compiler = Compiler(registry: registry, options: options)
        _ = compiler.target(rootURI, root.root, base: rootURI)
        compiler.compileDynamicAnchors()
        // Exactly as many nodes as compiled: the growth slack of the compiler's array would stay
        // allocated for as long as the schema is in use.
        var nodes: [Node] = []
        nodes.reserveCapacity(compiler.nodes.count)
        nodes.append(contentsOf: compiler.nodes)
        return SchemaProgram(nodes: nodes, resources: compiler.resources,
                             tracksAnnotations: compiler.tracksAnnotations, regexStepLimit: options.regexStepLimit)
    }

    /// The type names a `type` keyword lists, in its order, packed four bits each (the name's
    /// place in `names`, plus one): the failure message names them as the schema does.
    struct TypeList: Sendable {
        static let names = ["null", "boolean", "integer", "number", "string", "array", "object"]
        let packed: UInt32

        init(_ listed: [String]) {
            var packed: UInt32 = 0
            var shift: UInt32 = 0
            // A valid schema lists each of the seven names at most once.
            for name in listed.prefix(8) {
                guard let index = Self.names.firstIndex(of: name) else { continue }
                packed |= UInt32(index + 1) << shift
                shift += 4
            }
            self.packed = packed
        }

        /// "must be a string or a null, not " (the instance's type follows).
        var message: String {
            var listed: [String] = []
            var rest = packed
            while rest != 0 {
                listed.append(JSONValue.withArticle(Self.names[Int(rest & 15) - 1]))
                rest >>= 4
            }
            return "must be \(listed.joined(separator: " or ")), not "
        }
    }

    static let typeBits: [String: UInt8] = ["null": 1, "boolean": 2, "integer": 4, "number": 8, "string": 16, "array": 32, "object": 64]

    /// The bit of `value`'s JSON type; an integral number counts as an integer.
    static func typeBit(of value: JSONValue) -> UInt8 {
        switch value {
        case .null: 1
        case .bool: 2
        case .integer: 4
        case .number(let d): d.isFinite && d.rounded(.towardZero) == d ? 4 : 8
        case .string: 16
        case .array: 32
        case .object: 64
        }
    }
}

/// Turns schema objects into program nodes, each reference target once.
private struct Compiler {
    let registry: SchemaRegistry
    let options: SchemaValidator.Options
    var nodes: [SchemaProgram.Node] = []
    var resources: [SchemaProgram.Resource] = []
    var resourceIndex: [String: Int32] = [:]
    var targets: [String: Int32] = [:]
    var regexes: [String: ECMARegex?] = [:]
    var tracksAnnotations = false

    init(registry: SchemaRegistry, options: SchemaValidator.Options) {
        self.registry = registry
        self.options = options
    }

    /// The node of a reference target, compiled the first time it is reached (a target's base
    /// already includes its own `$id`).
    mutating func target(_ key: String, _ schema: JSONValue, base: String) -> Int32 {
        if let index = targets[key] { return index }
        let index = reserve()
        targets[key] = index
        fill(index, schema, base: base, idApplied: true)
        return index
    }

    /// A subschema reached by walking from its parent (not through a reference).
    mutating func walk(_ schema: JSONValue, base: String) -> Int32 {
        let index = reserve()
        fill(index, schema, base: base, idApplied: false)
        return index
    }

    private mutating func reserve() -> Int32 {
        nodes.append(SchemaProgram.Node(kind: .accept, resource: 0, ops: []))
        return Int32(nodes.count - 1)
    }

    private mutating func resource(_ uri: String) -> Int32 {
        if let index = resourceIndex[uri] { return index }
        let index = Int32(resources.count)
        resources.append(SchemaProgram.Resource(uri: uri, dynamicAnchors: [:]))
        resourceIndex[uri] = index
        return index
    }

    /// Every `$dynamicAnchor` of every resource the program can enter, compiled, until no new
    /// resource appears.
    mutating func compileDynamicAnchors() {
        var done = 0
        while done < resources.count {
            let uri = resources[done].uri
            if let resource = registry.resource(uri) {
                for anchor in resource.dynamicAnchors.sorted() {
                    guard let schema = resource.anchors[anchor] else { continue }
                    let node = target(uri + "#" + anchor, schema, base: uri)
                    resources[done].dynamicAnchors[anchor] = node
                }
            }
            done += 1
        }
    }

    private mutating func regex(_ source: String) -> ECMARegex? {
        if let cached = regexes[source] { return cached }
        let compiled = try? ECMARegex(source)
        regexes[source] = compiled
        return compiled
    }

    /// Evaluation order: cheap assertions first (a failing one ends a validity-only pass early),
    /// then applicators, `unevaluated*` last, as the specification requires.
    private static let order: [KeywordKind: Int] = Dictionary(uniqueKeysWithValues: KeywordKind.allCases.enumerated().map { i, kind in
        switch kind {
        case .type: (kind, 0)
        case .const, .enum_: (kind, 1)
        case .unevaluatedItems, .unevaluatedProperties: (kind, 1000 + i)
        case _ where kind.vocabulary == .applicator || kind == .ref || kind == .dynamicRef: (kind, 100 + i)
        default: (kind, 10 + i)
        }
    })

    private mutating func fill(_ index: Int32, _ schema: JSONValue, base: String, idApplied: Bool) {
        let object: [String: JSONValue]
        switch schema {
        case .bool(true): nodes[Int(index)].kind = .accept; return
        case .bool(false): nodes[Int(index)].kind = .reject; return
        case .object(let o): object = o
        default: nodes[Int(index)].kind = .notSchema; return
        }
        var base = base
        if !idApplied, case .string(let id) = object["$id"] {
            base = URIReference(base).resolving(URIReference(id)).withoutFragment.description
        }
        let resourceIndex = resource(base)
        let registered = registry.resource(base)
        let vocabularies = registered?.vocabularies
        let formatAssertion = options.formatAssertion || registered?.formatAssertion == true
        var kinds: [(KeywordKind, JSONValue)] = []
        for (keyword, value) in object {
            guard let kind = KeywordKind.table[keyword] else { continue }
            if let vocabularies, let v = kind.vocabulary, !vocabularies.contains(v) { continue }
            kinds.append((kind, value))
        }
        kinds.sort { Self.order[$0.0]! < Self.order[$1.0]! }
        var ops: [SchemaProgram.Op] = []
        ops.reserveCapacity(kinds.count)
        for (kind, value) in kinds {
            if let op = op(kind, value, object: object, base: base, formatAssertion: formatAssertion) { ops.append(op) }
        }
        nodes[Int(index)] = SchemaProgram.Node(kind: .object, resource: resourceIndex, ops: ops)
    }

    private mutating func reference(_ value: JSONValue, keyword: String, base: String, dynamic: Bool) -> SchemaProgram.Op? {
        guard case .string(let ref) = value else { return nil }
        let target = URIReference(base).resolving(URIReference(ref))
        guard let resolved = registry.resolve(target) else { return .unresolved(keyword: keyword, reference: ref) }
        let node = self.target(target.description, resolved.schema, base: resolved.base)
        guard dynamic else { return .ref(node) }
        var anchor: String?
        if let fragment = target.fragment, !fragment.isEmpty, !fragment.hasPrefix("/"),
           resolved.schema["$dynamicAnchor"] == .string(fragment)
        {
            anchor = fragment
        }
        return .dynamicRef(node, anchor: anchor)
    }

    private mutating func walkAll(_ value: JSONValue, base: String) -> [Int32] {
        (value.arrayValue ?? []).map { walk($0, base: base) }
    }

    private mutating func walkMap(_ value: JSONValue, base: String) -> [(String, Int32)] {
        (value.objectValue ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, walk($0.value, base: base)) }
    }

    private mutating func op(_ kind: KeywordKind, _ value: JSONValue, object: [String: JSONValue], base: String,
                             formatAssertion: Bool) -> SchemaProgram.Op? {
        switch kind {
        case .ref: return reference(value, keyword: "$ref", base: base, dynamic: false)
        case .dynamicRef: return reference(value, keyword: "$dynamicRef", base: base, dynamic: true)
        case .allOf: return .allOf(walkAll(value, base: base))
        case .anyOf: return .anyOf(walkAll(value, base: base))
        case .oneOf: return .oneOf(walkAll(value, base: base))
        case .not_: return .not(walk(value, base: base))
        case .if_:
            let condition = walk(value, base: base)
            let then = object["then"].map { walk($0, base: base) }
            let otherwise = object["else"].map { walk($0, base: base) }
            return .ifThenElse(condition, then: then, else: otherwise)
        case .then, .else_, .minContains, .maxContains:
            return nil
        case .dependentSchemas:
            guard case .object = value else { return nil }
            return .dependentSchemas(walkMap(value, base: base))
        case .prefixItems:
            guard case .array = value else { return nil }
            return .prefixItems(walkAll(value, base: base))
        case .items:
            return .items(walk(value, base: base), start: object["prefixItems"]?.arrayValue?.count ?? 0)
        case .contains:
            return .contains(walk(value, base: base), minimum: object["minContains"].flatMap { $0.doubleValue } ?? 1,
                             maximum: object["maxContains"].flatMap { $0.doubleValue }, minimumDeclared: object["minContains"] != nil)
        case .properties:
            guard case .object = value else { return nil }
            return .properties(walkMap(value, base: base))
        case .patternProperties:
            guard case .object = value else { return nil }
            var entries: [(String, ECMARegex?, Int32)] = []
            for (source, node) in walkMap(value, base: base) { entries.append((source, regex(source), node)) }
            return .patternProperties(entries)
        case .additionalProperties:
            let declared = (object["properties"]?.objectValue?.keys).map { $0.sorted() } ?? []
            var patterns: [(String, ECMARegex?)] = []
            for source in object["patternProperties"]?.objectValue?.keys.sorted() ?? [] { patterns.append((source, regex(source))) }
            let node = value == .bool(false) ? nil : walk(value, base: base)
            return .additionalProperties(node, declared: declared, patterns: patterns)
        case .propertyNames:
            return .propertyNames(walk(value, base: base))
        case .unevaluatedItems:
            tracksAnnotations = true
            return .unevaluatedItems(value == .bool(false) ? nil : walk(value, base: base))
        case .unevaluatedProperties:
            tracksAnnotations = true
            return .unevaluatedProperties(value == .bool(false) ? nil : walk(value, base: base))
        case .type:
            let allowed: [String] = value.stringValue.map { [$0] } ?? value.arrayValue?.compactMap(\.stringValue) ?? []
            var mask: UInt8 = 0
            for name in allowed { mask |= SchemaProgram.typeBits[name] ?? 0 }
            // A "number" admits integers too.
            if mask & 8 != 0 { mask |= 4 }
            return .type(mask, names: SchemaProgram.TypeList(allowed))
        case .enum_:
            guard let options = value.arrayValue else { return nil }
            return .enumeration(options)
        case .const:
            return .constant(value)
        case .pattern:
            guard case .string(let source) = value else { return nil }
            return .pattern(source, regex(source))
        case .format:
            guard formatAssertion, case .string(let name) = value else { return nil }
            return .format(name)
        case .maxLength, .minLength, .maxItems, .minItems, .maxProperties, .minProperties:
            guard let limit = value.doubleValue else { return nil }
            let size: SchemaProgram.Size = switch kind {
            case .maxLength, .minLength: .characters
            case .maxItems, .minItems: .items
            default: .properties
            }
            return .size(kind, size, limit: limit, atMost: [.maxLength, .maxItems, .maxProperties].contains(kind))
        default:
            return .assertion(kind, value)
        }
    }
}
