import ConfbusCore
import ConfbusPostgres
import Logging
import PostgresNIO

/// `confbus secrets rotate`: every sealed value sealed again under a new key (or opened for good),
/// in one transaction, against the database at `databaseURL`.
public func rotateSecretKey(databaseURL: String, old: SecretSealer, new: SecretSealer?, logger: Logger) async throws -> PostgresVersionStore.Rotation {
    let database = try DatabaseCluster(url: databaseURL, logger: logger)
    return try await withThrowingTaskGroup(of: PostgresVersionStore.Rotation?.self) { group in
        group.addTask { try await database.run(); return nil }
        defer { group.cancelAll() }
        // Only through the primary (with several hosts, the one out of recovery on the newest timeline).
        try await database.probe(timeout: .seconds(5))
        let client = try database.primary()
        try await Migrations.run(on: client, logger: logger)
        return try await PostgresVersionStore.rotateSecretKey(client: client, old: old, new: new, logger: logger)
    }
}
