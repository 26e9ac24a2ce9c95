import ConfbusCore
import Testing

/// The evaluation rule of CONTRACT.md §12, pinned: the buckets of known keys (worked out apart from
/// this code, with Python's hashlib), the spread of 10,000 keys, monotonic percentages, rules,
/// variants, and the refusals of a malformed flag or context.
struct FeatureFlagTests {
    let service = "feature-flags"
    let pointer = JSONPointer("/flags/new_checkout")!

    func flag(_ json: JSONValue) throws -> FeatureFlag { try FeatureFlag(json: json) }

    @Test func theBucketsOfKnownKeysArePinned() {
        // int.from_bytes(sha256(b"feature-flags/flags/new_checkout/<salt>/<key>").digest()[:8], "big") >> 11 / 2**53 * 100
        let pinned: [(salt: String, key: String, bucket: Double)] = [
            ("", "user-1", 89.85710207166495), ("", "user-2", 36.513947190723705), ("", "alice", 58.38744540714088),
            ("", "tenant-42", 33.14366447053234), ("s1", "user-1", 83.80746425287154), ("s1", "user-2", 95.14004128093025),
            ("/variant", "user-1", 4.190430229484921), ("/variant", "tenant-42", 1.1178846637558082),
        ]
        for (salt, key, bucket) in pinned {
            #expect(FeatureFlag.bucket(service: service, pointer: pointer, salt: salt, key: key) == bucket, "\(salt)/\(key)")
        }
    }

    @Test func aRolloutOnTheBucketDecides() throws {
        let at50 = try flag(["enabled": true, "rollout_percentage": 50])
        // user-1 is at 89.9, user-2 at 36.5.
        #expect(at50.evaluate(FlagContext(key: "user-1"), service: service, pointer: pointer) == FlagResult(value: .bool(false), reason: "rollout"))
        #expect(at50.evaluate(FlagContext(key: "user-2"), service: service, pointer: pointer) == FlagResult(value: .bool(true), reason: "rollout"))
        let full = try flag(["enabled": true])
        #expect(full.rolloutPercentage == 100)
        #expect(full.evaluate(FlagContext(key: "user-1"), service: service, pointer: pointer).value == .bool(true))
        let none = try flag(["enabled": true, "rollout_percentage": 0])
        #expect(none.evaluate(FlagContext(key: "user-2"), service: service, pointer: pointer).value == .bool(false))
        // The salt moves a key to another bucket: user-2 is at 95.1 with salt s1.
        let salted = try flag(["enabled": true, "rollout_percentage": 50, "salt": "s1"])
        #expect(salted.evaluate(FlagContext(key: "user-2"), service: service, pointer: pointer).value == .bool(false))
    }

    @Test func aDisabledFlagIsOffWhateverTheRules() throws {
        let off = try flag(["enabled": false, "rules": [["attribute": "plan", "op": "eq", "values": ["pro"], "serve": true]]])
        #expect(off.evaluate(FlagContext(key: "k", attributes: ["plan": "pro"]), service: service, pointer: pointer)
                == FlagResult(value: .bool(false), reason: "disabled"))
    }

    @Test func theFirstMatchingRuleBeatsTheRollout() throws {
        let flag = try flag([
            "enabled": true, "rollout_percentage": 0,
            "rules": [
                ["attribute": "country", "op": "not_in", "values": ["DE", "FR"], "serve": false],
                ["attribute": "email", "op": "starts_with", "values": ["qa-", "staff-"], "serve": true],
                ["attribute": "age", "op": "gte", "values": [18], "serve": true],
                ["attribute": "version", "op": "lte", "values": ["2.0"], "serve": true],
                ["attribute": "plan", "op": "in", "values": ["pro", "team"], "serve": true],
            ],
        ])
        func eval(_ attributes: [String: JSONValue]) -> FlagResult {
            flag.evaluate(FlagContext(key: "user-2", attributes: attributes), service: service, pointer: pointer)
        }
        #expect(eval(["country": "US", "plan": "pro"]) == FlagResult(value: .bool(false), reason: "rule:0"))
        #expect(eval(["country": "DE", "email": "qa-1@example.com"]) == FlagResult(value: .bool(true), reason: "rule:1"))
        #expect(eval(["age": 18.0]) == FlagResult(value: .bool(true), reason: "rule:2"), "1 equals 1.0 and gte includes")
        #expect(eval(["age": 17]) == FlagResult(value: .bool(false), reason: "rollout"))
        #expect(eval(["version": "1.9"]) == FlagResult(value: .bool(true), reason: "rule:3"), "strings by code point")
        #expect(eval(["plan": "team"]) == FlagResult(value: .bool(true), reason: "rule:4"))
        // A missing attribute matches no rule, not_in included; a mismatched type does not compare.
        #expect(eval([:]) == FlagResult(value: .bool(false), reason: "rollout"))
        #expect(eval(["age": "eighteen"]) == FlagResult(value: .bool(false), reason: "rollout"))
        #expect(eval(["plan": ["pro"]]) == FlagResult(value: .bool(false), reason: "rollout"))
    }

    @Test func variantsSplitTheOnContextsByWeight() throws {
        let flag = try flag(["enabled": true, "variants": ["blue": 1, "green": 3, "off-white": 0],
                             "rules": [["attribute": "beta", "op": "eq", "values": [true], "serve": "blue"]]])
        #expect(flag.variants.map(\.name) == ["blue", "green", "off-white"])
        // user-1's variant bucket is 4.19 < 25 (blue's share), tenant-42's 1.12.
        #expect(flag.evaluate(FlagContext(key: "user-1"), service: service, pointer: pointer) == FlagResult(value: .variant("blue"), reason: "rollout"))
        #expect(flag.evaluate(FlagContext(key: "alice", attributes: ["beta": true]), service: service, pointer: pointer)
                == FlagResult(value: .variant("blue"), reason: "rule:0"))
        var counts: [String: Int] = [:]
        for n in 0..<10_000 {
            guard case .variant(let name) = flag.evaluate(FlagContext(key: "user-\(n)"), service: service, pointer: pointer).value else {
                Issue.record("a context without a variant")
                return
            }
            counts[name, default: 0] += 1
        }
        #expect(counts["off-white"] == nil, "a weight of 0 is never served")
        #expect(abs(Double(counts["blue"] ?? 0) / 100 - 25) <= 2, "\(counts)")
    }

    @Test(arguments: [1.0, 10, 25, 50, 75, 99])
    func tenThousandKeysLandWithinTwoPointsOfThePercentage(_ percentage: Double) throws {
        let flag = try flag(["enabled": true, "rollout_percentage": .number(percentage)])
        let on = (0..<10_000).filter { flag.evaluate(FlagContext(key: "key-\($0)"), service: service, pointer: pointer).value.isOn }.count
        #expect(abs(Double(on) / 100 - percentage) <= 2, "\(on) of 10000 at \(percentage) %")
    }

    @Test func raisingThePercentageNeverTurnsAKeyOff() throws {
        var wasOn: Set<Int> = []
        for percentage in stride(from: 0.0, through: 100, by: 2.5) {
            let flag = try flag(["enabled": true, "rollout_percentage": .number(percentage)])
            let on = Set((0..<2_000).filter { flag.evaluate(FlagContext(key: "key-\($0)"), service: service, pointer: pointer).value.isOn })
            #expect(wasOn.isSubset(of: on), "a key turned off at \(percentage) %")
            wasOn = on
        }
        #expect(wasOn.count == 2_000)
    }

    @Test func aMalformedFlagNamesTheMember() {
        let cases: [(JSONValue, String)] = [
            (["rollout_percentage": 10], "/enabled"),
            (["enabled": true, "rollout_percentage": 101], "/rollout_percentage"),
            (["enabled": true, "rollout_percent": 10], "/rollout_percent"),
            (["enabled": true, "variants": [:]], "/variants"),
            (["enabled": true, "variants": ["a": -1]], "/variants/a"),
            (["enabled": true, "variants": ["a": 0, "b": 0]], "/variants"),
            (["enabled": true, "rules": [["attribute": "x", "op": "eq", "values": [1], "serve": "gold"]]], "/rules/0/serve"),
            (["enabled": true, "rules": [["attribute": "x", "op": "like", "values": [1], "serve": true]]], "/rules/0/op"),
            (["enabled": true, "rules": [["attribute": "x", "op": "eq", "values": [1, 2], "serve": true]]], "/rules/0/values"),
            (["enabled": true, "rules": [["attribute": "x", "op": "in", "values": [[1]], "serve": true]]], "/rules/0/values/0"),
            (["enabled": true, "rules": [["attribute": "x", "op": "starts_with", "values": [1], "serve": true]]], "/rules/0/values/0"),
            (["enabled": true, "salt": 5], "/salt"),
        ]
        for (json, path) in cases {
            #expect(throws: FlagProblem.self) { try FeatureFlag(json: json) }
            do {
                _ = try FeatureFlag(json: json)
            } catch {
                #expect(error.path == path, "\(json)")
            }
        }
    }

    @Test func aContextNeedsAKey() throws {
        #expect(try FlagContext(json: ["key": "u", "attributes": ["plan": "pro"]]) == FlagContext(key: "u", attributes: ["plan": "pro"]))
        #expect(throws: FlagProblem("/key", "is required and must be a non-empty string")) { try FlagContext(json: ["attributes": [:]]) }
        #expect(throws: FlagProblem("/attributes", "must be an object")) { try FlagContext(json: ["key": "u", "attributes": [1]]) }
    }

    @Test func theFlagsOfADocumentAreFoundFromTheSchemasPaths() {
        let config: JSONValue = ["flags": ["a": ["enabled": true], "b": ["enabled": false]], "single": ["enabled": true],
                                 "list": [["enabled": true]], "other": 1]
        #expect(FeatureFlag.pointers(in: config, paths: [["flags", "*"], ["single"], ["list", "*"], ["missing"]]).map(\.description)
                == ["/flags/a", "/flags/b", "/list/0", "/single"])
        let broken: JSONValue = ["flags": ["a": ["enabled": true, "variants": ["x": 1], "rules": [["attribute": "p", "op": "eq", "values": [1], "serve": "y"]]]]]
        #expect(FeatureFlag.problems(in: broken, paths: [["flags", "*"]]).map(\.description) == ["/flags/a/rules/0/serve: names no variant of this flag"])
    }
}
