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

    /// Compiled without keeping its tree, a schema validates, lays out its defaults and knows its
    /// secrets exactly as one that keeps it.
    @Test func aSchemaThatDropsItsTreeResolvesTheSame() throws {
        let text = ##"""
            {"$defs": {"pool": {"type": "object", "properties": {"size": {"type": "integer", "default": 10}}}},
             "type": "object",
             "properties": {"database": {"type": "object", "properties": {"pool": {"$ref": "#/$defs/pool"},
                                                                         "password": {"type": "string", "writeOnly": true}}}}}
            """##
        let kept = try compile(text)
        let dropped = try CompiledSchema(try JSONParser().parse(text), uri: "urn:confbus:service:test", retainingDocument: false)
        #expect(kept.retainsDocument && !dropped.retainsDocument)
        #expect(dropped.secretPaths == kept.secretPaths && dropped.secretPaths == [["database", "password"]])
        for input in [#"{}"#, #"{"database": {"pool": {}}}"#, #"{"database": {"pool": {"size": 3}}}"#] {
            let present = try JSONParser().parse(input)
            #expect(SchemaNavigator(dropped).defaults(present: present) == SchemaNavigator(kept).defaults(present: present))
        }
        let bad = try JSONParser().parse(#"{"database": {"pool": {"size": "x"}}}"#)
        #expect(dropped.validate(bad).map(\.description) == kept.validate(bad).map(\.description))
        #expect(!dropped.validate(bad).isEmpty)
    }

    @Test func aSchemaTooBranchyToLayOutIsWalked() throws {
        // Two recursive branches double the layout at every level (2^32 at the depth bound).
        let schema = try compile(##"{"properties": {"l": {"$ref": "#"}, "r": {"$ref": "#"}, "v": {"default": 1}}}"##)
        #expect(schema.defaultsPlan == nil)
        let walkedAnyway = try CompiledSchema(try JSONParser().parse(##"{"properties": {"l": {"$ref": "#"}, "r": {"$ref": "#"}}}"##),
                                              uri: "urn:confbus:service:test", retainingDocument: false)
        #expect(walkedAnyway.retainsDocument, "without a layout the walk needs the tree, so it is kept")
        let defaults = SchemaNavigator(schema).defaults(present: try JSONParser().parse(#"{"l": {"r": {}}}"#))
        #expect(defaults == ["v": 1, "l": ["v": 1, "r": ["v": 1]]])
    }
}

/// Secrets are found wherever the schema marks them, and masked wherever the config puts them.
struct SecretPathsTests {
    @Test func secretsInArraysMapsAndPatternsAreMasked() throws {
        let schema = try CompiledSchema(try JSONParser().parse(##"""
            {"$defs": {"key": {"type": "string", "x-confbus-secret": true}},
             "properties": {
               "db": {"properties": {"password": {"writeOnly": true}, "host": {"type": "string"}}},
               "upstreams": {"type": "array", "items": {"properties": {"token": {"$ref": "#/$defs/key"}, "url": {}}}},
               "pair": {"prefixItems": [{"type": "string"}, {"writeOnly": true}]},
               "clients": {"additionalProperties": {"properties": {"secret": {"writeOnly": true}}}},
               "keys": {"patternProperties": {"^k": {"x-confbus-secret": true}}},
               "whole": {"writeOnly": true, "type": "object"}}}
            """##), uri: "urn:confbus:service:test")
        let redaction = Redaction(paths: schema.secretPaths)
        let config = try JSONParser().parse(#"""
            {"db": {"password": "p1", "host": "h"}, "upstreams": [{"token": "t1", "url": "u"}, {"token": "t2"}],
             "pair": ["visible", "p2"], "clients": {"a": {"secret": "s1", "name": "n"}}, "keys": {"k1": "v1"},
             "whole": {"nested": "w1"}, "plain": 1}
            """#)
        let masked = redaction.apply(to: config)
        let text = masked.serialized()
        for secret in ["p1", "t1", "t2", "p2", "s1", "v1", "w1"] { #expect(!text.contains("\"\(secret)\""), "\(secret) in \(text)") }
        for visible in ["h", "u", "visible", "n"] { #expect(text.contains("\"\(visible)\""), "\(visible) missing in \(text)") }
        #expect(masked["plain"] == 1)
        #expect(masked["whole"] == "***")
        // A value asked for by pointer, and a changed subtree that holds a secret.
        #expect(redaction.apply(to: config["db"]!, at: JSONPointer("/db")!) == ["password": "***", "host": "h"])
        #expect(redaction.apply(to: "t1", at: JSONPointer("/upstreams/0/token")!) == "***")
        #expect(redaction.touches(JSONPointer("/upstreams")!))
        #expect(redaction.touches(JSONPointer("/upstreams/1/token")!))
        #expect(!redaction.touches(JSONPointer("/plain")!))
        #expect(!redaction.touches(JSONPointer("/db/host")!))
    }

    @Test func aServiceWhoseSchemaIsUnknownHasEveryMemberMasked() {
        let masked = Redaction.everything.apply(to: ["a": 1, "b": ["c": 2]])
        #expect(masked == ["a": "***", "b": "***"])
    }
}
