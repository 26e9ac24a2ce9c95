import ConfbusEngine
import ConfbusPostgres
import ConfbusTestSupport
import ConfbusCore
import Foundation
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

/// A node plans a one-service edit on the row as it last saw it and writes it in one guarded
/// statement (no transaction, no lock first). Two nodes on one database, and a change made in SQL
/// behind both, must still never lose an edit: a guard that missed a moved row would.
struct OptimisticCommitTests {
    static func increment(_ store: PostgresVersionStore, _ service: ServiceName) async throws -> CommitOutcome {
        try await store.commit(CommitRequest(services: [service], audit: AuditRecord(
            actor: "test", requestID: UUID().uuidString, action: "test", outcome: "accepted", services: [service.rawValue])) { bases in
            guard case .integer(let n)? = bases[0].overrideLayer?["count"] ?? .integer(0) else { return [] }
            let layer: JSONValue = ["count": .integer(n + 1)]
            return [PlannedChange(version: NewVersion(service: service, config: layer, source: .override, author: "test", reason: nil,
                                                      environment: "test"), overrideLayer: layer)]
        })[0]
    }

    @Test(.requiresPostgres)
    func twoNodesAndAnSQLEditNeverLoseAnEdit() async throws {
        let url = try await Harness.createDatabase()
        let client = PostgresClient(configuration: try .init(url: url), backgroundLogger: Harness.logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            _ = try await Migrations.run(on: client, logger: Harness.logger)
            let (nodeA, nodeB) = (PostgresVersionStore(client: client, logger: Harness.logger),
                                  PostgresVersionStore(client: client, logger: Harness.logger))
            let service = try ServiceName(validating: "alpha")
            // A twice (the second on what it remembers), then B, then A again on a row B moved.
            for (step, store) in [nodeA, nodeA, nodeB, nodeA, nodeB, nodeB, nodeA].enumerated() {
                let outcome = try await Self.increment(store, service)
                #expect(outcome.version.version == step + 1 && outcome.version.config == ["count": .integer(step + 1)])
            }
            // Behind both nodes: the layer rewritten in SQL without a new version (as a key rotation does).
            try await client.query("UPDATE services SET override_layer = '{\"count\":100}' WHERE name = 'alpha'", logger: Harness.logger)
            #expect(try await Self.increment(nodeA, service).version.config == ["count": 101])
            #expect(try await Self.increment(nodeB, service).version.config == ["count": 102])
            #expect(try await nodeA.latest(service)?.version == 9)
            let audited = try await nodeA.auditLog(service: service, limit: 100)
            #expect(audited.count == 9, "one audit row per version, none for a guarded write that did not happen")
            #expect(try await nodeA.outboxStatus().backlog == 9, "every version queued once")
        }
    }
}
