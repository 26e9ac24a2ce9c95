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

    /// A validator for the schema registered at `uri` (its `$id` or retrieval URI).
    public init(registry: SchemaRegistry, uri: String, options: Options = Options()) {
        self.registry = registry
        self.rootURI = URIReference(uri).withoutFragment.description
        self.options = options
        var patterns: [String: ECMARegex] = [:]
        for (_, resource) in registry.resources {
            Self.collectPatterns(resource.root, into: &patterns)
        }
        self.patterns = patterns
    }

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

    mutating func fail(_ instancePath: JSONPointer, _ keywordPath: JSONPointer, _ message: String) {
        valid = false
        issues.append(ValidationIssue(instancePath: instancePath, keywordPath: keywordPath, message: message))
    }

    mutating func fail(with child: Outcome) {
        valid = false
        issues.append(contentsOf: child.issues)
    }
}
