import ConfbusCore

/// Validates JSON values against one draft 2020-12 schema held in a `SchemaRegistry`.
///
/// The schema is compiled once, when the validator is made, into a `SchemaProgram`: references
/// resolved to their targets, patterns compiled, vocabularies settled. Every keyword of the core,
/// applicator, unevaluated, validation, format and meta-data vocabularies is supported; `format`
/// asserts only when `Options.formatAssertion` is on or the schema's metaschema declares the
/// format-assertion vocabulary.
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

    let rootURI: String
    /// Nil when nothing is registered at the URI.
    let program: SchemaProgram?

    /// A validator for the schema registered at `uri` (its `$id` or retrieval URI).
    public init(registry: SchemaRegistry, uri: String, options: Options = Options()) {
        self.rootURI = URIReference(uri).withoutFragment.description
        self.program = SchemaProgram.compile(registry: registry, rootURI: rootURI, options: options)
    }

    /// Every failed assertion; empty when the instance is valid. A first pass only decides
    /// validity; the failures are gathered by a second one, when there are any.
    public func validate(_ instance: JSONValue) -> [ValidationIssue] {
        guard let program else {
            return [ValidationIssue(instancePath: .root, keywordPath: .root, message: "schema \(rootURI) is not registered")]
        }
        var annotations = Annotations()
        var quick = Evaluator(program: program, collect: false)
        if quick.evaluate(0, instance, &annotations) { return [] }
        var full = Evaluator(program: program, collect: true)
        _ = full.evaluate(0, instance, &annotations)
        return full.issues
    }

    public func isValid(_ instance: JSONValue) -> Bool {
        guard let program else { return false }
        var annotations = Annotations()
        var quick = Evaluator(program: program, collect: false)
        return quick.evaluate(0, instance, &annotations)
    }
}
