import ConfbusCore
import ConfbusEngine
import Logging
import PostgresNIO
import ServiceLifecycle

/// Listens for other nodes' commits (`pg_notify` in the commit transaction) and loads them into
/// the live cache, so pull is never staler than the last commit this node saw. Notifications
/// are only a wake-up: the supervisor's periodic refresh covers any that are lost.
public struct VersionListener: Service {
    let database: DatabaseCluster
    let reads: ConfigReads
    let logger: Logger

    public init(database: DatabaseCluster, reads: ConfigReads, logger: Logger) {
        self.database = database
        self.reads = reads
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    // Listens on the primary of the moment; a new primary (a promotion) ends this
                    // connection and the next one listens there.
                    let generation = database.generation
                    let client = try database.primary()
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        group.addTask { try await listen(on: client) }
                        group.addTask {
                            while database.generation == generation { try await Task.sleep(for: .milliseconds(250)) }
                        }
                        try await group.next()
                        group.cancelAll()
                    }
                } catch {
                    logger.debug("LISTEN connection lost; reconnecting", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func listen(on client: PostgresClient) async throws {
        try await client.withConnection { connection in
            for try await notification in try await connection.listen(PostgresVersionStore.notificationChannel) {
                guard let colon = notification.payload.lastIndex(of: ":"),
                      let service = try? ServiceName(validating: String(notification.payload[..<colon]))
                else { continue }
                // This node's own commits (and anything older) are held already, or
                // will be once its commit's answer is in.
                if let version = Int(notification.payload[notification.payload.index(after: colon)...]) {
                    try await reads.refresh(service, notified: version)
                } else {
                    try await reads.refresh(service)
                }
            }
        }
    }
}
