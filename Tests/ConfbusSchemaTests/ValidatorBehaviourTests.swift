import ConfbusCore
import ConfbusSchema
import Testing

/// What users of the validator see beyond pass/fail: where errors point, bounded patterns,
/// and schemas refused before use.
struct ValidatorBehaviourTests {
    private func compile(_ json: String) throws -> CompiledSchema {
        try CompiledSchema(try JSONParser().parse(json), uri: "urn:confbus:service:test")
    }

    private func problems(_ json: String) -> [CompiledSchema.Problem] {
        do {
            _ = try compile(json)
            return []
        } catch let error as CompiledSchemaError {
            return error.problems
        } catch {
            Issue.record("unexpected \(error)")
            return []
        }
    }

    @Test func issuesCarryInstancePointerKeywordPathAndMessage() throws {
        let schema = try compile(#"""
            {"type": "object", "required": ["database"], "additionalProperties": false,
             "properties": {"database": {"type": "object", "required": ["host"],
               "properties": {"host": {"type": "string"}, "pool_size": {"type": "integer", "maximum": 200}}}}}
            """#)
        let issues = schema.validate(try JSONParser().parse(#"{"database": {"pool_size": 500}, "extra": 1}"#))
        let byPath = Dictionary(grouping: issues, by: { $0.instancePath.description })
        #expect(byPath["/database/pool_size"]?.first?.keywordPath.description == "/properties/database/properties/pool_size/maximum")
        #expect(byPath["/database/pool_size"]?.first?.message == "must be at most 200")
        #expect(byPath["/database/host"]?.first?.message == "required property \"host\" is missing")
        #expect(byPath["/extra"]?.first?.message == "property \"extra\" is not allowed")
        #expect(issues.count == 3)
    }

    @Test func issuesComeInTheSameOrderEveryTime() throws {
        // Dictionary order differs between runs and between equal dictionaries; the compiled
        // program orders keywords (assertions before applicators) and properties by name.
        let schema = try compile(#"""
            {"type": "object", "required": ["z", "a"], "properties": {
               "m": {"type": "integer"}, "b": {"type": "string"}, "y": {"minimum": 5}, "c": {"const": 1}}}
            """#)
        let issues = schema.validate(try JSONParser().parse(#"{"m": "x", "b": 1, "y": 2, "c": 2}"#))
        #expect(issues.map(\.instancePath.description) == ["/z", "/a", "/b", "/c", "/m", "/y"])
        #expect(issues.map(\.keywordPath.description) == ["/required", "/required", "/properties/b/type",
                                                          "/properties/c/const", "/properties/m/type", "/properties/y/minimum"])
        // A value that is valid takes the validity-only pass alone; an invalid one is reported in full.
        #expect(schema.validate(try JSONParser().parse(#"{"z": 1, "a": 2}"#)).isEmpty)
    }

    @Test func aSchemaThatRecursesInManyBranchesCompilesOnce() throws {
        // Each reference target is compiled once, so a tree-shaped recursion stays linear.
        let schema = try compile(#"""
            {"type": "object", "properties": {"left": {"$ref": "#"}, "right": {"$ref": "#"}, "value": {"type": "integer"}}}
            """#)
        let bad: JSONValue = ["left": ["left": ["value": "x"]]]
        let issues = schema.validate(bad)
        #expect(issues.map(\.instancePath.description) == ["/left/left/value"])
        #expect(issues.first?.keywordPath.description == "/properties/left/$ref/properties/left/$ref/properties/value/type")
    }

    @Test func referencesAreFollowedInKeywordPaths() throws {
        let schema = try compile(##"{"$defs": {"port": {"type": "integer", "minimum": 1}}, "properties": {"p": {"$ref": "#/$defs/port"}}}"##)
        let issue = try #require(schema.validate(["p": 0]).first)
        #expect(issue.keywordPath.description == "/properties/p/$ref/minimum")
        #expect(issue.instancePath.description == "/p")
    }

    @Test(.timeLimit(.minutes(1)))
    func catastrophicPatternIsBounded() throws {
        let schema = try compile(#"{"type": "string", "pattern": "^(a+)+$"}"#)
        let clock = ContinuousClock()
        let started = clock.now
        let issues = schema.validate(.string(String(repeating: "a", count: 40) + "!"))
        #expect(clock.now - started < .seconds(2))
        #expect(issues.first?.message.contains("too many steps") == true)
        #expect(schema.validate(.string(String(repeating: "a", count: 40))).isEmpty)
    }

    @Test func regexFollowsECMAScript() throws {
        #expect(try ECMARegex("^\\d{3}$").matches("123"))
        #expect(try !ECMARegex("^\\d$").matches("٣"))            // \d is ASCII only
        #expect(try ECMARegex("^\\w+$").matches("abc_1"))
        #expect(try !ECMARegex("^\\w$").matches("é"))
        #expect(try ECMARegex("^\\p{L}+$").matches("éλ"))
        #expect(try ECMARegex("^.$").matches("😀"))              // one code point
        #expect(try ECMARegex("(a)\\1").matches("xaay"))
        #expect(try ECMARegex("a(?=b)").matches("ab"))
        #expect(try !ECMARegex("a(?!b)").matches("ab"))
        #expect(try ECMARegex("(?<=x)a").matches("xa"))
        #expect(try ECMARegex("es").matches("ness"))             // unanchored
        #expect(throws: ECMARegex.SyntaxError.self) { try ECMARegex("(abc") }
        #expect(throws: ECMARegex.SyntaxError.self) { try ECMARegex("\\a") }
        #expect(throws: ECMARegex.SyntaxError.self) { try ECMARegex("a**") }
    }

    @Test func invalidSchemasAreRefusedWithPointers() {
        let typo = problems(#"{"type": "strnig"}"#)
        #expect(typo.first?.pointer.description == "/type")
        let negative = problems(#"{"properties": {"a": {"minLength": -1}}}"#)
        #expect(negative.first?.pointer.description == "/properties/a/minLength")
        #expect(problems(#"{"type": "object"}"#).isEmpty)
    }

    @Test func nothingIsFetched() {
        for ref in ["http://169.254.169.254/latest/meta-data", "file:///etc/passwd", "other.yaml", "#/$defs/missing"] {
            let found = problems(##"{"$ref": "\##(ref)"}"##)
            #expect(found.first?.pointer.description == "/$ref", "\(ref)")
            #expect(found.first?.message.contains("does not resolve") == true)
        }
    }

    @Test func unsupportedDraftAndBadPatternsAreRefused() {
        #expect(problems(#"{"$schema": "http://json-schema.org/draft-04/schema#"}"#).first?.message.contains("unsupported $schema") == true)
        #expect(problems(#"{"pattern": "(unclosed"}"#).first?.pointer.description == "/pattern")
        #expect(problems(#"{"patternProperties": {"[": {}}}"#).first?.pointer.description == "/patternProperties/[")
    }

    @Test func formatsAreAnnotationsUnlessAsserted() throws {
        let json = try JSONParser().parse(#"{"format": "ipv4"}"#)
        var registry = SchemaRegistry.standard
        let uri = registry.register(json, as: "urn:t")
        #expect(SchemaValidator(registry: registry, uri: uri).isValid("not-an-ip"))
        #expect(!SchemaValidator(registry: registry, uri: uri, options: .init(formatAssertion: true)).isValid("not-an-ip"))
    }
}
