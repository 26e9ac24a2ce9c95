import ConfbusCore

/// Every schema resource that references may reach, indexed by `$id`, `$anchor` and
/// `$dynamicAnchor`. Nothing is ever fetched: a reference to a URI that is not registered is an
/// error, so `$ref: "http://169.254.169.254/…"` or `file:///etc/passwd` can never be followed.
public struct SchemaRegistry: Sendable {
    struct Resource: Sendable {
        var root: JSONValue
        var anchors: [String: JSONValue] = [:]
        var dynamicAnchors: Set<String> = []
        /// Vocabularies this resource's `$schema` turns on; nil means all of 2020-12.
        var vocabularies: VocabularySet? = nil
        var formatAssertion = false
    }

    private(set) var resources: [String: Resource] = [:]

    public init() {}

    /// Whether the embedded metaschemas stand behind `resources`: every registry made from
    /// `standard` shares one copy of them instead of holding its own.
    private var includesStandard = false

    private static let metaschemas: [String: Resource] = {
        var registry = SchemaRegistry()
        for (uri, text) in Metaschema.documents + [(uri: FlagSchema.uri, json: FlagSchema.json)] {
            // The embedded documents are fixed text; a parse failure would be a build defect.
            guard let document = try? JSONParser().parse(text) else { preconditionFailure("bad metaschema \(uri)") }
            registry.register(document, as: uri)
        }
        return registry.resources
    }()

    /// A registry holding the draft 2020-12 metaschema, its vocabulary metaschemas and confbus's
    /// embedded `urn:confbus:flag`.
    public static let standard: SchemaRegistry = {
        var registry = SchemaRegistry()
        registry.includesStandard = true
        return registry
    }()

    /// Registers a document under a retrieval URI (its `$id`, if any, takes precedence) and
    /// returns the URI a validator for it is made with.
    @discardableResult
    public mutating func register(_ document: JSONValue, as uri: String) -> String {
        let retrieval = URIReference(uri).withoutFragment
        index(document, base: retrieval, isResourceRoot: true)
        refreshVocabularies()
        if case .string(let id) = document["$id"] { return retrieval.resolving(URIReference(id)).withoutFragment.description }
        return retrieval.description
    }

    public func contains(_ uri: String) -> Bool { resource(URIReference(uri).withoutFragment.description) != nil }

    private mutating func index(_ schema: JSONValue, base: URIReference, isResourceRoot: Bool) {
        if isResourceRoot {
            // The retrieval URI always names the document, even when its `$id` says otherwise.
            resources[base.description] = Resource(root: schema)
        }
        guard case .object(let object) = schema else { return }
        var base = base
        if case .string(let id) = object["$id"] {
            base = base.resolving(URIReference(id)).withoutFragment
            resources[base.description] = Resource(root: schema)
        }
        let key = base.description
        if case .string(let anchor) = object["$anchor"] { resources[key]?.anchors[anchor] = schema }
        if case .string(let anchor) = object["$dynamicAnchor"] {
            resources[key]?.anchors[anchor] = schema
            resources[key]?.dynamicAnchors.insert(anchor)
        }
        for (keyword, value) in object {
            switch Keyword.subschemaShape(of: keyword) {
            case .single: index(value, base: base, isResourceRoot: false)
            case .array: for element in value.arrayValue ?? [] { index(element, base: base, isResourceRoot: false) }
            case .map: for (_, element) in value.objectValue ?? [:] { index(element, base: base, isResourceRoot: false) }
            case .none: break
            }
        }
    }

    /// Sets each resource's vocabularies from the `$vocabulary` of the metaschema its `$schema` names.
    private mutating func refreshVocabularies() {
        for (key, own) in resources {
            guard case .string(let metaURI) = own.root["$schema"],
                  let meta = resource(URIReference(metaURI).withoutFragment.description),
                  case .object(let declared) = meta.root["$vocabulary"]
            else { continue }
            var vocabularies: VocabularySet = []
            var assertFormat = false
            for (uri, _) in declared {
                if let v = Vocabulary(rawValue: uri) { vocabularies.insert(v) }
                if uri == Vocabulary.formatAssertionURI { assertFormat = true; vocabularies.insert(.format) }
            }
            resources[key]?.vocabularies = vocabularies
            resources[key]?.formatAssertion = assertFormat
        }
    }

    /// Required vocabularies (`true` in `$vocabulary`) that confbus does not know.
    func unknownRequiredVocabularies(of metaURI: String) -> [String] {
        guard case .object(let declared) = resource(URIReference(metaURI).withoutFragment.description)?.root["$vocabulary"]
        else { return [] }
        return declared.compactMap { uri, required in
            required == .bool(true) && Vocabulary(rawValue: uri) == nil && uri != Vocabulary.formatAssertionURI ? uri : nil
        }.sorted()
    }

    func resource(_ uri: String) -> Resource? { resources[uri] ?? (includesStandard ? Self.metaschemas[uri] : nil) }

    /// Resolves an absolute URI (with fragment) to a schema and the base URI it is evaluated with.
    func resolve(_ uri: URIReference) -> (schema: JSONValue, base: String)? {
        let key = uri.withoutFragment.description
        guard let resource = resource(key) else { return nil }
        let fragment = URIReference.percentDecoded(uri.fragment ?? "")
        if fragment.isEmpty { return (resource.root, key) }
        if fragment.hasPrefix("/") {
            guard let pointer = JSONPointer(fragment) else { return nil }
            var current = resource.root
            var base = URIReference(key)
            for token in pointer.tokens {
                switch current {
                case .object(let o):
                    guard let next = o[token] else { return nil }
                    current = next
                case .array(let a):
                    guard let i = Int(token), a.indices.contains(i) else { return nil }
                    current = a[i]
                default:
                    return nil
                }
                if case .string(let id) = current["$id"] { base = base.resolving(URIReference(id)).withoutFragment }
            }
            return (current, base.description)
        }
        guard let anchored = resource.anchors[fragment] else { return nil }
        return (anchored, key)
    }
}
