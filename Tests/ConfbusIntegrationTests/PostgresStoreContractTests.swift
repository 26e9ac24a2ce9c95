import ConfbusEngine
import ConfbusPostgres
import ConfbusTestSupport
import PostgresNIO
import Testing

/// The store contract the in-memory fake keeps, against PostgreSQL: each check on a new,
/// migrated database of its own, with a pool wide enough that commits really run concurrently.
struct PostgresStoreContractTests {
    @Test(arguments: ConfbusStoreContract.checks)
    func postgresStoreKeepsTheContract(_ check: ConfbusStoreContract.Check) async throws {
        try await ConfbusStoreContract.run(check) { body in
            let url = try await Harness.createDatabase()
            var configuration = try PostgresClient.Configuration(url: url)
            configuration.options.maximumConnections = 8
            let client = PostgresClient(configuration: configuration, backgroundLogger: Harness.logger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                _ = try await Migrations.run(on: client, logger: Harness.logger)
                try await body(PostgresVersionStore(client: client, logger: Harness.logger))
            }
        }
    }
}
