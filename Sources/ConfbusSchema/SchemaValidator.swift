import ConfbusCore

/// Validates JSON values against one draft 2020-12 schema held in a `SchemaRegistry`.
///
/// The validator interprets the schema directly; patterns are compiled once when it is made.
/// Every keyword of the core, applicator, unevaluated, validation, format and meta-data
/// vocabularies is supported; `format` asserts only when `Options.formatAssertion` is on or the
/// schema's metaschema declares the format-assertion vocabulary.
public struct SchemaValidator: Sendable {
    public struct Options: Sendable {
        public var formatAssertion: Bool
        /// Most backtracking steps one `pattern` match may take before the value is refused.
        public var regexStepLimit: Int

        public init(formatAssertion: Bool = false, regexStepLimit: Int = 200_000) {
            self.formatAssertion = formatAssertion
            self.regexStepLimit = regexStepLimit
        }
    }

    let registry: SchemaRegistry
    let rootURI: String
    let options: Options
    let patterns: [String: ECMARegex]
    /// `$ref`/`$dynamicRef` targets and `$id` bases, resolved once for every schema in the registry.
    let references: [ReferenceKey: ResolvedReference]
    let ids: [ReferenceKey: String]

    struct ReferenceKey: Hashable, Sendable {
        var base: String
        var reference: String
    }

    struct ResolvedReference: Sendable {
        var schema: JSONValue
        var base: String
        var fragment: String?
    }

    /// A validator for the schema registered at `uri` (its `$id` or retrieval URI).
    public init(registry: SchemaRegistry, uri: String, options: Options = Options()) {
        self.registry = registry
        self.rootURI = URIReference(uri).withoutFragment.description
        self.options = options
        // Only this schema's own entries: the metaschemas' tables are shared by every validator, not
        // copied into each (a copy per service was most of a compiled schema's memory).
        var patterns: [String: ECMARegex] = [:]
        var references: [ReferenceKey: ResolvedReference] = [:]
        var ids: [ReferenceKey: String] = [:]
        for (uri, resource) in registry.resources where !resource.isStandard {
            Self.collectPatterns(resource.root, into: &patterns)
            Self.collectReferences(resource.root, base: uri, registry: registry, references: &references, ids: &ids)
        }
        self.patterns = patterns
        self.references = references
        self.ids = ids
    }

    private static func collectReferences(_ schema: JSONValue, base: String, registry: SchemaRegistry,
                                          references: inout [ReferenceKey: ResolvedReference], ids: inout [ReferenceKey: String]) {
        guard case .object(let object) = schema else { return }
        var base = base
        if case .string(let id) = object["$id"] {
            let key = ReferenceKey(base: base, reference: id)
            let resolved = ids[key] ?? URIReference(base).resolving(URIReference(id)).withoutFragment.description
            ids[key] = resolved
            base = resolved
        }
        for keyword in ["$ref", "$dynamicRef"] {
            guard case .string(let ref) = object[keyword] else { continue }
            let key = ReferenceKey(base: base, reference: ref)
            if references[key] == nil, let resolved = resolveReference(ref, base: base, registry: registry) {
                references[key] = resolved
            }
        }
        for (keyword, value) in object {
            switch Keyword.subschemaShape(of: keyword) {
            case .single: collectReferences(value, base: base, registry: registry, references: &references, ids: &ids)
            case .array: for v in value.arrayValue ?? [] { collectReferences(v, base: base, registry: registry, references: &references, ids: &ids) }
            case .map: for (_, v) in value.objectValue ?? [:] { collectReferences(v, base: base, registry: registry, references: &references, ids: &ids) }
            case .none: break
            }
        }
    }

    static func resolveReference(_ ref: String, base: String, registry: SchemaRegistry) -> ResolvedReference? {
        let target = URIReference(base).resolving(URIReference(ref))
        guard let resolved = registry.resolve(target) else { return nil }
        return ResolvedReference(schema: resolved.schema, base: resolved.base, fragment: target.fragment)
    }

    func reference(_ ref: String, base: String) -> ResolvedReference? {
        let key = ReferenceKey(base: base, reference: ref)
        return references[key] ?? Self.standardTables.1[key] ?? Self.resolveReference(ref, base: base, registry: registry)
    }

    func base(forID id: String, in base: String) -> String {
        let key = ReferenceKey(base: base, reference: id)
        return ids[key] ?? Self.standardTables.2[key] ?? URIReference(base).resolving(URIReference(id)).withoutFragment.description
    }

    /// The compiled regex of a `pattern` or `patternProperties` key of this schema or a metaschema.
    func pattern(_ source: String) -> ECMARegex? {
        patterns[source] ?? Self.standardTables.0[source]
    }

    /// The tables of the embedded metaschemas, computed once per process.
    private static let standardTables: ([String: ECMARegex], [ReferenceKey: ResolvedReference], [ReferenceKey: String]) = {
        var patterns: [String: ECMARegex] = [:]
        var references: [ReferenceKey: ResolvedReference] = [:]
        var ids: [ReferenceKey: String] = [:]
        let registry = SchemaRegistry.standard
        for (uri, resource) in registry.resources {
            collectPatterns(resource.root, into: &patterns)
            collectReferences(resource.root, base: uri, registry: registry, references: &references, ids: &ids)
        }
        return (patterns, references, ids)
    }()

    private static func collectPatterns(_ schema: JSONValue, into patterns: inout [String: ECMARegex]) {
        guard case .object(let object) = schema else { return }
        if case .string(let p) = object["pattern"], patterns[p] == nil, let regex = try? ECMARegex(p) { patterns[p] = regex }
        if case .object(let pp) = object["patternProperties"] {
            for key in pp.keys where patterns[key] == nil { if let regex = try? ECMARegex(key) { patterns[key] = regex } }
        }
        for (keyword, value) in object {
            switch Keyword.subschemaShape(of: keyword) {
            case .single: collectPatterns(value, into: &patterns)
            case .array: for v in value.arrayValue ?? [] { collectPatterns(v, into: &patterns) }
            case .map: for (_, v) in value.objectValue ?? [:] { collectPatterns(v, into: &patterns) }
            case .none: break
            }
        }
    }

    /// Every failed assertion; empty when the instance is valid.
    public func validate(_ instance: JSONValue) -> [ValidationIssue] {
        guard let resource = registry.resource(rootURI) else {
            return [ValidationIssue(instancePath: .root, keywordPath: .root, message: "schema \(rootURI) is not registered")]
        }
        var evaluator = Evaluator(validator: self)
        let outcome = evaluator.evaluate(resource.root, base: rootURI, scope: [], instance: instance,
                                         instancePath: .root, keywordPath: .root)
        return outcome.valid ? [] : outcome.issues
    }

    public func isValid(_ instance: JSONValue) -> Bool { validate(instance).isEmpty }
}

/// What evaluating one schema against one instance produced: validity, the annotations that
/// `unevaluatedProperties`/`unevaluatedItems` need, and the failed assertions.
struct Outcome {
    var valid = true
    var properties: Set<String> = []
    var itemsPrefix = 0
    var itemIndices: Set<Int> = []
    var issues: [ValidationIssue] = []

    mutating func absorbAnnotations(_ other: Outcome) {
        properties.formUnion(other.properties)
        itemsPrefix = max(itemsPrefix, other.itemsPrefix)
        itemIndices.formUnion(other.itemIndices)
    }

    mutating func fail(_ instancePath: EvalPath, _ keywordPath: EvalPath, _ message: String) {
        valid = false
        issues.append(ValidationIssue(instancePath: instancePath.pointer, keywordPath: keywordPath.pointer, message: message))
    }

    mutating func fail(with child: Outcome) {
        valid = false
        issues.append(contentsOf: child.issues)
    }
}

/// A JSON pointer built one token at a time while evaluating: appending is one small allocation,
/// and the pointer is only spelled out when an issue is reported.
struct EvalPath: Sendable {
    private final class Node: Sendable {
        let parent: Node?
        let token: String
        init(parent: Node?, token: String) {
            self.parent = parent
            self.token = token
        }
    }

    private let node: Node?

    static let root = EvalPath(node: nil)

    private init(node: Node?) { self.node = node }

    func appending(_ token: String) -> EvalPath { EvalPath(node: Node(parent: node, token: token)) }
    func appending(_ index: Int) -> EvalPath { appending(String(index)) }

    var pointer: JSONPointer {
        var tokens: [String] = []
        var current = node
        while let n = current {
            tokens.append(n.token)
            current = n.parent
        }
        return JSONPointer(tokens: tokens.reversed())
    }
}
