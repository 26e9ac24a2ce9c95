import ConfbusCore
import ConfbusPostgres
import Logging
import PostgresNIO

/// `confbus secrets rotate`: every sealed value sealed again under a new key (or opened for good),
/// in one transaction, against the database at `databaseURL`.
public func rotateSecretKey(databaseURL: String, old: SecretSealer, new: SecretSealer?, logger: Logger) async throws -> PostgresVersionStore.Rotation {
    let client = PostgresClient(configuration: try .init(url: databaseURL), backgroundLogger: logger)
    return try await withThrowingTaskGroup(of: PostgresVersionStore.Rotation?.self) { group in
        group.addTask { await client.run(); return nil }
        defer { group.cancelAll() }
        try await Migrations.run(on: client, logger: logger)
        return try await PostgresVersionStore.rotateSecretKey(client: client, old: old, new: new, logger: logger)
    }
}
