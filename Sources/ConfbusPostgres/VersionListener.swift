import ConfbusCore
import ConfbusEngine
import Logging
import PostgresNIO
import ServiceLifecycle

/// Listens for other nodes' commits (`pg_notify` in the commit transaction) and loads them into
/// the live cache, so pull is never staler than the last commit this node saw. Notifications
/// are only a wake-up: the supervisor's periodic refresh covers any that are lost.
public struct VersionListener: Service {
    let client: PostgresClient
    let reads: ConfigReads
    let logger: Logger

    public init(client: PostgresClient, reads: ConfigReads, logger: Logger) {
        self.client = client
        self.reads = reads
        self.logger = logger
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
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
                } catch {
                    logger.debug("LISTEN connection lost; reconnecting", metadata: ["error": "\(error)"])
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }
}
