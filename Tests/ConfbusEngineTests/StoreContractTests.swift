import ConfbusEngine
import ConfbusTestSupport
import Testing

/// The in-memory store keeps the same contract as PostgreSQL (the same checks run against a
/// real server in the integration tests), so the component tests below lean on a faithful fake.
struct InMemoryStoreContractTests {
    @Test(arguments: ConfbusStoreContract.checks)
    func inMemoryStoreKeepsTheContract(_ check: ConfbusStoreContract.Check) async throws {
        try await ConfbusStoreContract.run(check) { body in try await body(InMemoryConfbusStore()) }
    }
}
