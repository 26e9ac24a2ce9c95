import ConfbusCore
import ConfbusSchema
import Testing

@Suite struct JSONSchemaTestSuiteTests {
    @Test func suiteIsPresent() {
        // 1,299 required cases in 48 files at the pinned commit; fewer means the folder is missing.
        #expect(JSONSchemaTestSuite.required.count == 1299)
    }

    @Test(arguments: JSONSchemaTestSuite.required)
    func required(_ testCase: JSONSchemaTestSuite.Case) {
        #expect(JSONSchemaTestSuite.passes(testCase), "expected valid=\(testCase.valid)")
    }

    /// The whole required suite once more as one figure, printed as `N passed, M failed`.
    @Test func requiredSummary() {
        let failed = JSONSchemaTestSuite.required.filter { !JSONSchemaTestSuite.passes($0) }
        print("draft2020-12: \(JSONSchemaTestSuite.required.count - failed.count) passed, \(failed.count) failed")
        #expect(failed.isEmpty, "\(failed.prefix(20).map(\.testDescription))")
    }
}
