/// The 2020-12 vocabularies and which keyword belongs to which.
enum Vocabulary: String, Hashable, Sendable {
    case core = "https://json-schema.org/draft/2020-12/vocab/core"
    case applicator = "https://json-schema.org/draft/2020-12/vocab/applicator"
    case unevaluated = "https://json-schema.org/draft/2020-12/vocab/unevaluated"
    case validation = "https://json-schema.org/draft/2020-12/vocab/validation"
    case metaData = "https://json-schema.org/draft/2020-12/vocab/meta-data"
    case format = "https://json-schema.org/draft/2020-12/vocab/format-annotation"
    case content = "https://json-schema.org/draft/2020-12/vocab/content"

    static let formatAssertionURI = "https://json-schema.org/draft/2020-12/vocab/format-assertion"

    /// One bit per vocabulary: checked for every keyword of every schema object evaluated, where
    /// hashing the URI (as a `Set<Vocabulary>` does) cost a tenth of all validation.
    var bit: VocabularySet {
        switch self {
        case .core: VocabularySet(rawValue: 1 << 0)
        case .applicator: VocabularySet(rawValue: 1 << 1)
        case .unevaluated: VocabularySet(rawValue: 1 << 2)
        case .validation: VocabularySet(rawValue: 1 << 3)
        case .metaData: VocabularySet(rawValue: 1 << 4)
        case .format: VocabularySet(rawValue: 1 << 5)
        case .content: VocabularySet(rawValue: 1 << 6)
        }
    }
}

/// A set of vocabularies as bits.
struct VocabularySet: OptionSet, Sendable {
    let rawValue: UInt8

    func contains(_ vocabulary: Vocabulary) -> Bool { contains(vocabulary.bit) }
    mutating func insert(_ vocabulary: Vocabulary) { insert(vocabulary.bit) }
}

enum Keyword {
    enum Shape { case single, array, map }

    /// Where a keyword holds subschemas; only these are walked for `$id` and anchors.
    static func subschemaShape(of keyword: String) -> Shape? {
        switch keyword {
        case "additionalProperties", "propertyNames", "items", "contains", "not", "if", "then", "else",
             "unevaluatedItems", "unevaluatedProperties", "contentSchema":
            .single
        case "allOf", "anyOf", "oneOf", "prefixItems":
            .array
        case "$defs", "properties", "patternProperties", "dependentSchemas":
            .map
        default:
            nil
        }
    }
}

/// The keywords that do something when evaluated, found by one hash lookup (annotations such
/// as `title` or `default`, and unknown keywords, are not in the table and cost nothing more).
enum KeywordKind: String, CaseIterable, Sendable {
        case ref = "$ref"
        case dynamicRef = "$dynamicRef"
        case allOf = "allOf"
        case anyOf = "anyOf"
        case oneOf = "oneOf"
        case not_ = "not"
        case if_ = "if"
        case then = "then"
        case else_ = "else"
        case dependentSchemas = "dependentSchemas"
        case prefixItems = "prefixItems"
        case items = "items"
        case contains = "contains"
        case properties = "properties"
        case patternProperties = "patternProperties"
        case additionalProperties = "additionalProperties"
        case propertyNames = "propertyNames"
        case unevaluatedItems = "unevaluatedItems"
        case unevaluatedProperties = "unevaluatedProperties"
        case type = "type"
        case enum_ = "enum"
        case const = "const"
        case multipleOf = "multipleOf"
        case maximum = "maximum"
        case exclusiveMaximum = "exclusiveMaximum"
        case minimum = "minimum"
        case exclusiveMinimum = "exclusiveMinimum"
        case maxLength = "maxLength"
        case minLength = "minLength"
        case pattern = "pattern"
        case maxItems = "maxItems"
        case minItems = "minItems"
        case uniqueItems = "uniqueItems"
        case maxContains = "maxContains"
        case minContains = "minContains"
        case maxProperties = "maxProperties"
        case minProperties = "minProperties"
        case required = "required"
        case dependentRequired = "dependentRequired"
        case format = "format"

    static let table: [String: KeywordKind] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.rawValue, $0) })

    /// The vocabulary each keyword belongs to (core keywords belong to none that can be turned off).
    var vocabulary: Vocabulary? {
        switch self {
        case .ref, .dynamicRef: nil
        case .unevaluatedItems, .unevaluatedProperties: .unevaluated
        case .format: .format
        case .allOf, .anyOf, .oneOf, .not_, .if_, .then, .else_, .dependentSchemas, .prefixItems, .items, .contains,
             .properties, .patternProperties, .additionalProperties, .propertyNames: .applicator
        default: .validation
        }
    }
}
