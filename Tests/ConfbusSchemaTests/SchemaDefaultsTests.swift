import ConfbusCore
@testable import ConfbusSchema
import Testing

/// The schema-defaults layer is laid out once per schema; the layout must give what walking the
/// schema gives, and a schema too branchy to lay out is still walked.
struct SchemaDefaultsTests {
    private func compile(_ json: String) throws -> CompiledSchema {
        try CompiledSchema(try JSONParser().parse(json), uri: "urn:confbus:service:test")
    }

    @Test func theLayoutGivesWhatTheWalkGives() throws {
        let schema = try compile(##"""
            {"$defs": {"pool": {"type": "object", "properties": {"size": {"default": 10}, "idle": {"default": 2}}}},
             "properties": {
               "database": {"type": "object", "properties": {"host": {"default": "localhost"}, "pool": {"$ref": "#/$defs/pool"}}},
               "cache": {"default": {"ttl": 5}, "properties": {"ttl": {"default": 60}, "size": {"default": 100}}},
               "flags": {"additionalProperties": {"type": "object", "properties": {"enabled": {"default": false}}}},
               "plain": {"type": "string"}},
             "allOf": [{"properties": {"mode": {"default": "fast"}}}]}
            """##)
        let plan = try #require(schema.defaultsPlan)
        let inputs = [
            #"{}"#, #"{"database": {}}"#, #"{"database": {"pool": {"size": 3}}}"#, #"{"cache": {"size": 1}}"#,
            #"{"flags": {"a": {}, "b": {"enabled": true}, "c": 3}}"#, #"{"database": 1, "cache": null}"#,
        ]
        for text in inputs {
            let present = try JSONParser().parse(text)
            let walked = SchemaNavigator(schema).defaultsByWalking(present: present)
            #expect(JSONValue.object(plan.defaults(present: present.objectValue ?? [:])) == walked, "\(text)")
        }
        let defaults = SchemaNavigator(schema).defaults(present: try JSONParser().parse(#"{"database": {"pool": {}}, "flags": {"x": {}}}"#))
        #expect(defaults["database"]?["pool"] == ["size": 10, "idle": 2])
        #expect(defaults["cache"] == ["ttl": 5, "size": 100])
        #expect(defaults["flags"]?["x"] == ["enabled": false])
        #expect(defaults["mode"] == "fast")
    }

    @Test func aSchemaTooBranchyToLayOutIsWalked() throws {
        // Two recursive branches double the layout at every level (2^32 at the depth bound).
        let schema = try compile(##"{"properties": {"l": {"$ref": "#"}, "r": {"$ref": "#"}, "v": {"default": 1}}}"##)
        #expect(schema.defaultsPlan == nil)
        let defaults = SchemaNavigator(schema).defaults(present: try JSONParser().parse(#"{"l": {"r": {}}}"#))
        #expect(defaults == ["v": 1, "l": ["v": 1, "r": ["v": 1]]])
    }
}
