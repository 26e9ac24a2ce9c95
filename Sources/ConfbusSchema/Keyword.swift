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

    static func vocabulary(of keyword: String) -> Vocabulary? {
        switch keyword {
        case "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items",
             "contains", "properties", "patternProperties", "additionalProperties", "propertyNames":
            .applicator
        case "unevaluatedItems", "unevaluatedProperties":
            .unevaluated
        case "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
             "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "maxContains", "minContains",
             "maxProperties", "minProperties", "required", "dependentRequired":
            .validation
        case "format":
            .format
        default:
            nil
        }
    }
}
