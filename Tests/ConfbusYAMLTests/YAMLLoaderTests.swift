import ConfbusCore
import ConfbusYAML
import Foundation
import Testing

struct YAMLLoaderTests {
    private func load(_ text: String, limits: YAMLLoader.Limits = .init()) throws -> JSONValue {
        try YAMLLoader(limits: limits).load(bytes: Array(text.utf8), file: "t.yaml").value
    }

    private func failure(_ text: String, limits: YAMLLoader.Limits = .init()) -> ConfbusError? {
        do {
            _ = try YAMLLoader(limits: limits).load(bytes: Array(text.utf8), file: "t.yaml")
            return nil
        } catch {
            return error
        }
    }

    @Test func yaml12CoreScalars() throws {
        let doc = try load("""
            yes: yes
            no: no
            on: on
            off: off
            octal_like: 0755
            octal: 0o17
            hex: 0x1F
            int: -42
            plus: +7
            float: 1.5
            exp: 1e3
            dot: .5
            t: true
            f: False
            n: null
            tilde: ~
            empty:
            quoted_int: "8080"
            single: '0x10'
            date: 2027-03-31
            version: 1.10
            """)
        #expect(doc["yes"] == .string("yes"))
        #expect(doc["no"] == .string("no"))
        #expect(doc["on"] == .string("on"))
        #expect(doc["off"] == .string("off"))
        #expect(doc["octal_like"] == .integer(755))
        #expect(doc["octal"] == .integer(15))
        #expect(doc["hex"] == .integer(31))
        #expect(doc["int"] == .integer(-42))
        #expect(doc["plus"] == .integer(7))
        #expect(doc["float"] == .number(1.5))
        if case .number = doc["exp"]! {} else { Issue.record("1e3 must stay a decimal") }
        if case .integer = doc["octal_like"]! {} else { Issue.record("0755 must be an integer") }
        #expect(doc["dot"] == .number(0.5))
        #expect(doc["t"] == .bool(true))
        #expect(doc["f"] == .bool(false))
        #expect(doc["n"] == .null)
        #expect(doc["tilde"] == .null)
        #expect(doc["empty"] == .null)
        #expect(doc["quoted_int"] == .string("8080"))
        #expect(doc["single"] == .string("0x10"))
        #expect(doc["date"] == .string("2027-03-31"))
        #expect(doc["version"] == .number(1.1))
    }

    @Test func coreTagsAreAllowed() throws {
        let doc = try load("a: !!str 12\nb: !!int \"7\"\nc: !!float 3\nd: !!map {x: 1}\ne: !!seq [1]\nf: ! 12")
        #expect(doc["a"] == .string("12"))
        #expect(doc["b"] == .integer(7))
        #expect(doc["c"] == .number(3))
        #expect(doc["d"] == ["x": 1])
        #expect(doc["e"] == [1])
        #expect(doc["f"] == .string("12"))
    }

    @Test func emptyFileIsAnEmptyMapping() throws {
        #expect(try load("") == .object([:]))
        #expect(try load("# only a comment\n") == .object([:]))
    }

    @Test func locationsPointAtKeys() throws {
        let doc = try YAMLLoader().load(bytes: Array("a:\n  b: 1\n  c:\n    - x\n".utf8), file: "t.yaml")
        #expect(doc.locations[JSONPointer("/a/b")!] == SourceLocation(file: "t.yaml", line: 2, column: 3))
        #expect(doc.locations[JSONPointer("/a/c/0")!] == SourceLocation(file: "t.yaml", line: 4, column: 7))
    }

    /// A config value may be a secret: a refusal says what is wrong and where, never what was written.
    @Test(arguments: [
        ("a: !!int s3cret-value\n", "s3cret"), ("a: !!bool s3cret-value\n", "s3cret"), ("a: !!null s3cret-value\n", "s3cret"),
        ("a: !!float s3cret-value\n", "s3cret"), ("a: 0x1FFFFFFFFFFFFFFFFFFFFFFFF\n", "1FFFF"), ("a: 0o777777777777777777777777777\n", "77777"),
        ("a: -.inf\n", ".inf"), ("a: .NaN\n", ".NaN"), ("a: 31415926e999\n", "31415926"),
    ])
    func refusalsNeverQuoteTheValue(yaml: String, fragment: String) throws {
        let error = try #require(failure(yaml))
        #expect(error.location?.line == 1)
        #expect(!error.message.contains(fragment), "\(error.message)")
        #expect(!error.description.contains(fragment), "\(error.description)")
    }

    /// Each bad input names the file, line and column, with a message that says what is wrong.
    @Test(arguments: [
        ("a: [1, 2\n", 2, "did not find expected"),
        ("a: 1\nb: 2\na: 3\n", 3, "duplicate key \"a\""),
        ("outer:\n  x: 1\n  y:\n    x: 2\n  x: 3\n", 5, "duplicate key \"x\""),
        ("[1, 2]: x\n", 1, "mapping keys must be strings"),
        ("1: x\n", 1, "mapping keys must be strings"),
        ("? {a: 1}\n: x\n", 1, "mapping keys must be strings"),
        ("- 1\n- 2\n", 1, "top level must be a mapping"),
        ("just a string\n", 1, "top level must be a mapping"),
        ("a: .nan\n", 1, "NaN"),
        ("a: -.inf\n", 1, "infinity"),
        ("a: !custom 1\n", 1, "not allowed"),
        ("a: !!binary aGVsbG8=\n", 1, "not allowed"),
        ("a: !!timestamp 2001-12-14\n", 1, "not allowed"),
        ("a: !!python/object:os.system x\n", 1, "not allowed"),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", 3, "merge keys"),
        ("a: 1\n---\nb: 2\n", 2, "single document"),
        ("a: *missing\n", 1, "undefined alias"),
        ("a: 99999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999999e99\n", 1, "out of range"),
    ])
    func refuses(yaml: String, line: Int, message: String) throws {
        let error = try #require(failure(yaml))
        #expect(error.code == .invalidYAML)
        #expect(error.location?.file == "t.yaml")
        #expect(error.location?.line == line)
        #expect((error.location?.column ?? 0) >= 1)
        #expect(error.message.contains(message), "\(error.message)")
    }

    @Test func documentSizeIsBounded() throws {
        let big = "a: \"" + String(repeating: "x", count: 2000) + "\"\n"
        let error = try #require(failure(big, limits: .init(maxDocumentBytes: 1000)))
        #expect(error.code == .documentTooLarge)
        #expect(error.message.contains("max_document_bytes"))
    }

    @Test func nestingIsBounded() throws {
        var yaml = ""
        for depth in 0..<80 { yaml += String(repeating: "  ", count: depth) + "k\(depth):\n" }
        yaml += String(repeating: "  ", count: 80) + "leaf: 1\n"
        let error = try #require(failure(yaml))
        #expect(error.message.contains("nesting deeper than 64"))
        let flow = "a: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)
        #expect(failure(flow) != nil)
    }

    @Test func invalidUTF8IsLocated() throws {
        var caught: ConfbusError?
        do { _ = try YAMLLoader().load(bytes: Array("a: 1\nb: ".utf8) + [0xFF, 0x0A], file: "t.yaml") } catch { caught = error }
        let error = try #require(caught)
        #expect(error.message.contains("UTF-8"))
        #expect(error.location?.line == 2)
        #expect(error.location?.column == 4)
    }

    /// The "billion laughs" document: nine levels of ten aliases each would expand to 10^9 values.
    @Test(.timeLimit(.minutes(1)))
    func billionLaughsFailsFastAndSmall() throws {
        var yaml = "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        for level in 1...9 {
            let refs = Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ",")
            yaml += "a\(level): &a\(level) [\(refs)]\n"
        }
        let clock = ContinuousClock()
        let started = clock.now
        let error = try #require(failure(yaml, limits: .init(maxNodes: 100_000)))
        #expect(clock.now - started < .seconds(5))
        #expect(error.message.contains("aliases expand past the limit"))
    }

    /// The same document with the default limits: refused on the node graph before any JSON is
    /// built, so it costs neither time nor memory (the bound the issue sets is 0.5 s and 64 MB).
    @Test(.timeLimit(.minutes(1)))
    func billionLaughsWithDefaultLimitsIsCheap() throws {
        var yaml = "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        for level in 1...9 {
            yaml += "a\(level): &a\(level) [\(Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ","))]\n"
        }
        let clock = ContinuousClock()
        let started = clock.now
        let residentBefore = Self.residentKilobytes()
        let error = try #require(failure(yaml))
        let elapsed = clock.now - started
        #expect(elapsed < .milliseconds(500), "took \(elapsed)")
        #expect(Self.residentKilobytes() - residentBefore < 64 * 1024)
        #expect(error.message.contains("aliases expand past the limit"))
    }

    /// VmRSS of this process, from /proc.
    static func residentKilobytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return 0 }
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    @Test func smallAliasesStillWork() throws {
        let doc = try load("base: &b {x: 1}\ncopy: *b\n")
        #expect(doc["copy"] == ["x": 1])
    }

    @Test func overrideValuesAreYAMLScalars() throws {
        let loader = YAMLLoader()
        #expect(try loader.loadValue("50", source: "V") == .integer(50))
        #expect(try loader.loadValue("true", source: "V") == .bool(true))
        #expect(try loader.loadValue("null", source: "V") == .null)
        #expect(try loader.loadValue("[a, b]", source: "V") == ["a", "b"])
        #expect(try loader.loadValue("{x: 1}", source: "V") == ["x": 1])
        #expect(try loader.loadValue("hello world", source: "V") == .string("hello world"))
        #expect(throws: ConfbusError.self) { try loader.loadValue("[unclosed", source: "V") }
    }
}
