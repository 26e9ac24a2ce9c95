import ConfbusCore
import Testing

struct JSONParserTests {
    @Test func integersAndDecimalsStayApart() throws {
        let value = try JSONParser().parse(#"{"i": 8080, "d": 1.5, "e": 1e2, "big": 123456789012345678901}"#)
        #expect(value["i"] == .integer(8080))
        if case .integer = value["i"]! {} else { Issue.record("8080 should be an integer") }
        if case .number = value["e"]! {} else { Issue.record("1e2 should be a decimal") }
        #expect(value["d"] == .number(1.5))
        #expect(value["big"]?.doubleValue == 123456789012345678901.0)
        #expect(JSONValue.integer(1) == .number(1.0))
    }

    @Test(arguments: [
        (#"{"a": 1, "a": 2}"#, "duplicate key"),
        ("[NaN]", "unexpected character"),
        ("[Infinity]", "unexpected character"),
        ("[01]", "leading zeros"),
        (#"["\ud800"]"#, "lone surrogate"),
        ("[1,]", "unexpected character"),
        ("{} x", "unexpected data"),
        ("[1e999]", "out of range"),
        ("\"a\u{01}\"", "control character"),
    ])
    func refuses(input: String, message: String) {
        #expect {
            _ = try JSONParser().parse(input)
        } throws: { error in
            (error as? JSONParser.Failure)?.message.contains(message) == true
        }
    }

    @Test func errorsHaveLineAndColumn() {
        do {
            _ = try JSONParser().parse("{\n  \"a\": 1,\n  \"a\": 2\n}")
            Issue.record("expected a failure")
        } catch {
            #expect(error.line == 3)
            #expect(error.column == 3)
        }
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "[", count: 200) + String(repeating: "]", count: 200)
        #expect(throws: JSONParser.Failure.self) { _ = try JSONParser(maxDepth: 128).parse(deep) }
        #expect(throws: Never.self) { _ = try JSONParser(maxDepth: 256).parse(deep) }
    }

    @Test func stringsRoundTrip() throws {
        let value = try JSONParser().parse(#""tab\there \u00e9 \ud83d\ude00 \"q\" \\""#)
        #expect(value == .string("tab\there é 😀 \"q\" \\"))
        #expect(try JSONParser().parse(value.serialized()) == value)
    }
}

struct ServiceNameTests {
    @Test(arguments: ["billing", "billing-api", "a", "a.b_c-d", "0x", String(repeating: "a", count: 64)])
    func accepts(_ name: String) throws {
        #expect(try ServiceName(validating: name).rawValue == name)
    }

    @Test(arguments: ["", "Billing", "a/b", "a+b", "a#b", "a\u{0}b", "-a", "a-", "_confbus", "a..b",
                      String(repeating: "a", count: 65), "a b", "é"])
    func refuses(_ name: String) {
        #expect(throws: ConfbusError.self) { try ServiceName(validating: name) }
    }
}

struct JSONPointerTests {
    @Test func escapesRoundTrip() {
        let pointer = JSONPointer(tokens: ["a/b", "c~d", ""])
        #expect(pointer.description == "/a~1b/c~0d/")
        #expect(JSONPointer(pointer.description) == pointer)
        #expect(JSONPointer("nope") == nil)
        // "~0" then a modifier is one Swift Character but still the escape, then that scalar.
        #expect(JSONPointer("/~0\u{1F3FB}x")?.tokens == ["~\u{1F3FB}x"])
        #expect(JSONPointer("/a~2") == nil && JSONPointer("/a~") == nil)
        #expect(JSONPointer("/a~2") == nil)
    }

    @Test func lookup() throws {
        let doc = try JSONParser().parse(#"{"a": {"b": [10, 20]}, "x/y": 1}"#)
        #expect(doc.value(at: JSONPointer("/a/b/1")!) == .integer(20))
        #expect(doc.value(at: JSONPointer("/x~1y")!) == .integer(1))
        #expect(doc.value(at: JSONPointer("/a/b/01")!) == nil)
        #expect(doc.value(at: JSONPointer("/a/c")!) == nil)
    }

    @Test func namedMembersAreReadAndTheRestSteppedOver() throws {
        let payload = Array(#"""
            {"config": {"a": ["}", "\"]", {"b": [1, 2, {"c": "{["}]}], "d": "\\"}, "version": 7,
             "list": [[], {}], "checksum": "sha256:ab", "n": -1.5e3, "t": true}
            """#.utf8)
        let found = try JSONParser().members(["version", "checksum"], of: payload)
        #expect(found == ["version": 7, "checksum": "sha256:ab"])
        #expect(try JSONParser().members(["x"], of: Array(#"{}"#.utf8)).isEmpty)
        // A truncated or mistyped document is refused, not half read.
        #expect(throws: JSONParser.Failure.self) { try JSONParser().members(["version"], of: Array(#"{"config": {"a": [1, 2}, "version": 1"#.utf8)) }
        #expect(throws: JSONParser.Failure.self) { try JSONParser().members(["version"], of: Array(#"[1]"#.utf8)) }
        #expect(throws: JSONParser.Failure.self) { try JSONParser().members(["version"], of: Array(#"{"s": "unterminated}"#.utf8)) }
    }
}
