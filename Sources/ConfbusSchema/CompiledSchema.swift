import ConfbusCore

/// A service's schema after it has been checked against the 2020-12 metaschema, every
/// reference resolved locally and every pattern compiled: ready to validate configs.
public struct CompiledSchema: Sendable {
    public let uri: String
    public let validator: SchemaValidator
    /// The schema's tree and the registry it was compiled in, for `SchemaNavigator` to walk: kept
    /// when asked for (`retainingDocument`) and whenever the defaults could not be laid out
    /// (`defaultsPlan` is nil; the walk then runs per resolution); otherwise dropped once compiled,
    /// since the program, the defaults plan and the secret paths hold all a resolution needs.
    private(set) var source: Source?

    struct Source: Sendable {
        let document: JSONValue
        let registry: SchemaRegistry
    }

    /// Whether the tree was kept (`SchemaNavigator.propertyNames(at:)` and `declaredTypes(at:)`
    /// need it).
    public var retainsDocument: Bool { source != nil }
    /// Where the schema's `default`s are, laid out once (nil: left to a walk per resolution).
    private(set) var defaultsPlan: DefaultsPlan?
    /// Where the schema's secret values are (`SchemaNavigator.secretPaths`), found once.
    public private(set) var secretPaths: [[String]] = []
    /// Where the schema's feature flags are (`SchemaNavigator.flagPaths`), found once.
    public private(set) var flagPaths: [[String]] = []

    public static let metaschemaURI = "https://json-schema.org/draft/2020-12/schema"

    private static let metaValidator = SchemaValidator(registry: .standard, uri: metaschemaURI)

    /// A problem found in a schema, at a JSON pointer into the schema document.
    public struct Problem: Error, Sendable {
        public var pointer: JSONPointer
        public var message: String
    }

    /// Checks and compiles a schema. All problems are returned together.
    /// `retainingDocument`: keep the tree for `SchemaNavigator`'s walks by path (override
    /// variables need them); a schema kept only to validate and lay out defaults drops it.
    public init(_ document: JSONValue, uri: String, registry: SchemaRegistry = .standard,
                options: SchemaValidator.Options = .init(), retainingDocument: Bool = true) throws(CompiledSchemaError) {
        var problems: [Problem] = []
        switch document {
        case .object, .bool: break
        default: throw CompiledSchemaError(problems: [Problem(pointer: .root, message: "a schema must be an object or a boolean")])
        }
        if case .string(let draft) = document["$schema"], !registry.contains(draft) {
            problems.append(Problem(pointer: JSONPointer(tokens: ["$schema"]),
                                    message: "unsupported $schema \"\(draft)\": confbus reads draft 2020-12 (\(Self.metaschemaURI))"))
        }
        if case .string(let draft) = document["$schema"] {
            for vocabulary in registry.unknownRequiredVocabularies(of: draft) {
                problems.append(Problem(pointer: JSONPointer(tokens: ["$schema"]), message: "the metaschema requires unknown vocabulary \(vocabulary)"))
            }
        }
        for issue in Self.metaValidator.validate(document) {
            problems.append(Problem(pointer: issue.instancePath, message: "not a valid draft 2020-12 schema: \(issue.message)"))
        }
        var registry = registry
        let root = registry.register(document, as: uri)
        Self.checkReferences(document, base: URIReference(root), at: .root, registry: registry, problems: &problems)
        guard problems.isEmpty else { throw CompiledSchemaError(problems: problems) }
        self.uri = root
        self.validator = SchemaValidator(registry: registry, uri: root, options: options)
        self.source = Source(document: document, registry: registry)
        let navigator = SchemaNavigator(self)
        self.defaultsPlan = navigator.defaultsPlan()
        self.secretPaths = navigator.secretPaths()
        self.flagPaths = navigator.flagPaths()
        if !retainingDocument && defaultsPlan != nil { self.source = nil }
    }

    /// Every `$ref` must resolve in the local registry and every pattern must compile: a schema
    /// that would fail only when some value reaches a branch is refused up front.
    private static func checkReferences(_ schema: JSONValue, base: URIReference, at pointer: JSONPointer,
                                        registry: SchemaRegistry, problems: inout [Problem]) {
        guard case .object(let object) = schema else { return }
        var base = base
        if case .string(let id) = object["$id"] { base = base.resolving(URIReference(id)).withoutFragment }
        for keyword in ["$ref", "$dynamicRef"] {
            if case .string(let ref) = object[keyword], registry.resolve(base.resolving(URIReference(ref))) == nil {
                problems.append(Problem(pointer: pointer.appending(keyword),
                                        message: "\(keyword) \"\(ref)\" does not resolve to a schema in this file (confbus never fetches schemas)"))
            }
        }
        if case .string(let pattern) = object["pattern"] {
            do { _ = try ECMARegex(pattern) } catch {
                problems.append(Problem(pointer: pointer.appending("pattern"), message: "pattern is not a valid ECMA-262 regular expression: \(error.message)"))
            }
        }
        if case .object(let patterns) = object["patternProperties"] {
            for key in patterns.keys {
                do { _ = try ECMARegex(key) } catch {
                    problems.append(Problem(pointer: pointer.appending("patternProperties").appending(key),
                                            message: "pattern is not a valid ECMA-262 regular expression: \(error.message)"))
                }
            }
        }
        for (keyword, value) in object {
            let at = pointer.appending(keyword)
            switch Keyword.subschemaShape(of: keyword) {
            case .single: checkReferences(value, base: base, at: at, registry: registry, problems: &problems)
            case .array:
                for (i, v) in (value.arrayValue ?? []).enumerated() {
                    checkReferences(v, base: base, at: at.appending(i), registry: registry, problems: &problems)
                }
            case .map:
                for (k, v) in value.objectValue ?? [:] {
                    checkReferences(v, base: base, at: at.appending(k), registry: registry, problems: &problems)
                }
            case .none: break
            }
        }
    }

    public func validate(_ instance: JSONValue) -> [ValidationIssue] { validator.validate(instance) }
}

public struct CompiledSchemaError: Error, Sendable {
    public var problems: [CompiledSchema.Problem]
}
