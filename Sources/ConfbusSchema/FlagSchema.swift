/// `urn:confbus:flag` (CONTRACT.md §12): the shape of one feature flag, embedded like the
/// metaschemas so that `{"$ref": "urn:confbus:flag"}` resolves without fetching anything. What a
/// schema cannot say (a rule serving a variant the flag lacks, weights adding up to 0) is checked by
/// `FeatureFlag(json:)` after validation. `description` is confbus's own addition: a note for
/// people, never read by the evaluation.
enum FlagSchema {
    static let uri = "urn:confbus:flag"

    static let json = ##"""
        {
          "$schema": "https://json-schema.org/draft/2020-12/schema",
          "$id": "urn:confbus:flag",
          "title": "confbus feature flag",
          "type": "object",
          "required": ["enabled"],
          "additionalProperties": false,
          "properties": {
            "enabled": {"type": "boolean"},
            "rollout_percentage": {"type": "number", "minimum": 0, "maximum": 100, "default": 100},
            "variants": {
              "type": "object",
              "minProperties": 1,
              "propertyNames": {"minLength": 1},
              "additionalProperties": {"type": "number", "minimum": 0}
            },
            "rules": {
              "type": "array",
              "items": {
                "type": "object",
                "required": ["attribute", "op", "values", "serve"],
                "additionalProperties": false,
                "properties": {
                  "attribute": {"type": "string", "minLength": 1},
                  "op": {"enum": ["eq", "in", "not_in", "starts_with", "gte", "lte"]},
                  "values": {"type": "array", "minItems": 1, "items": {"type": ["string", "number", "boolean"]}},
                  "serve": {"type": ["boolean", "string"], "minLength": 1}
                },
                "allOf": [
                  {"if": {"properties": {"op": {"enum": ["eq", "gte", "lte"]}}}, "then": {"properties": {"values": {"maxItems": 1}}}},
                  {"if": {"properties": {"op": {"const": "starts_with"}}}, "then": {"properties": {"values": {"items": {"type": "string"}}}}}
                ]
              }
            },
            "salt": {"type": "string"},
            "description": {"type": "string"}
          }
        }
        """##
}
