import ConfbusCore
import ConfbusSchema
import Testing

/// The suite's optional `format` tests for the formats confbus asserts, with assertion on.
struct OptionalFormatTests {
    static let formats = ["date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6",
                          "uri", "uri-reference", "uuid", "json-pointer", "regex"]

    static let cases: [JSONSchemaTestSuite.Case] = JSONSchemaTestSuite.cases(in: "draft2020-12/optional/format")
        .filter { formats.contains(String($0.file.dropLast(5))) }

    @Test func casesArePresent() {
        #expect(Set(Self.cases.map(\.file)).count == Self.formats.count)
    }

    @Test(arguments: cases)
    func format(_ testCase: JSONSchemaTestSuite.Case) {
        #expect(JSONSchemaTestSuite.passes(testCase, formatAssertion: true), "expected valid=\(testCase.valid)")
    }

    @Test func summary() {
        let failed = Self.cases.filter { !JSONSchemaTestSuite.passes($0, formatAssertion: true) }
        print("formats: \(Self.cases.count - failed.count) passed, \(failed.count) failed")
        #expect(failed.isEmpty)
    }
}
