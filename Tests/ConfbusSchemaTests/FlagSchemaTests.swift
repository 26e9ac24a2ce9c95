import ConfbusCore
import ConfbusSchema
import Testing

/// `urn:confbus:flag` resolves from the embedded copy, validates a flag with an exact error per
/// member, and the compiled schema knows where its flags are.
struct FlagSchemaTests {
    let schema = try! CompiledSchema(
        [
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": [
                "flags": ["type": "object", "additionalProperties": ["$ref": "urn:confbus:flag"]],
                "kill_switch": ["$ref": "#/$defs/switch"],
                "limit": ["type": "integer"],
            ],
            "$defs": ["switch": ["$ref": "urn:confbus:flag"]],
        ], uri: "urn:confbus:service:flags-test")

    func messages(_ config: JSONValue) -> [String] { schema.validate(config).map(\.description) }

    @Test func flagsAreFoundThroughRefsAndMaps() {
        #expect(schema.flagPaths.sorted { $0.joined(separator: "/") < $1.joined(separator: "/") } == [["flags", "*"], ["kill_switch"]])
    }

    @Test func aValidFlagPasses() {
        #expect(messages([
            "flags": ["new_checkout": ["enabled": true, "rollout_percentage": 12.5, "salt": "v2", "description": "checkout, by the checkout team",
                                       "variants": ["a": 1, "b": 2],
                                       "rules": [["attribute": "plan", "op": "in", "values": ["pro", "team"], "serve": "b"]]]],
            "kill_switch": ["enabled": false],
        ]) == [])
    }

    @Test func eachMemberHasItsOwnError() {
        func first(_ flag: JSONValue) -> String { messages(["kill_switch": flag]).first ?? "" }
        #expect(first(["rollout_percentage": 5]) == #"/kill_switch/enabled: required property "enabled" is missing"#)
        #expect(first(["enabled": "yes"]).hasPrefix("/kill_switch/enabled: "))
        #expect(first(["enabled": true, "rollout_percentage": 150]).hasPrefix("/kill_switch/rollout_percentage: "))
        #expect(first(["enabled": true, "rollout_percent": 15]).contains("rollout_percent"))
        #expect(first(["enabled": true, "variants": ["a": -2]]).hasPrefix("/kill_switch/variants/a: "))
        #expect(first(["enabled": true, "rules": [["attribute": "a", "op": "like", "values": [1], "serve": true]]]).hasPrefix("/kill_switch/rules/0/op: "))
        #expect(first(["enabled": true, "rules": [["attribute": "a", "op": "eq", "values": [1, 2], "serve": true]]]).hasPrefix("/kill_switch/rules/0/values: "))
        #expect(first(["enabled": true, "rules": [["attribute": "a", "op": "in", "values": [1], "serve": 3]]]).hasPrefix("/kill_switch/rules/0/serve: "))
        #expect(first(["enabled": true, "salt": 1]).hasPrefix("/kill_switch/salt: "))
    }
}
