import ConfbusCore
import Testing

struct AccessTokenTests {
    @Test func parsesNamedBareAndLimitedTokens() throws {
        let tokens = try AccessToken.parseList(["ops=s1", "bare-secret", "reader:billing|worker=s3"])
        #expect(tokens.map(\.name) == ["ops", "token-2", "reader"])
        #expect(tokens[2].services == ["billing", "worker"])
        #expect(tokens[0].matches("s1") && !tokens[0].matches("s2") && !tokens[0].matches("s10") && !tokens[0].matches(""))
        #expect(!tokens.description.contains("s1"))
        #expect(try tokens[2].allows(ServiceName(validating: "worker")))
        #expect(try !tokens[2].allows(ServiceName(validating: "billing-api")))
        #expect(throws: ConfbusError.self) { try AccessToken.parseList(["r:Bad/Name=x"]) }
    }
}

struct ConfigDiffTests {
    @Test func leafLevelChanges() {
        let old: JSONValue = ["a": ["b": 1, "c": 2], "list": [1, 2], "gone": "x"]
        let new: JSONValue = ["a": ["b": 1, "c": 3, "d": ["e": true]], "list": [1, 2, 3]]
        let changes = ConfigDiff.changes(from: old, to: new).map(\.json)
        #expect(changes == [
            ["op": "replace", "path": "/a/c", "old": 2, "new": 3],
            ["op": "add", "path": "/a/d/e", "new": true],
            ["op": "remove", "path": "/gone", "old": "x"],
            ["op": "replace", "path": "/list", "old": [1, 2], "new": [1, 2, 3]],
        ])
        #expect(ConfigDiff.changes(from: new, to: new).isEmpty)
    }
}
