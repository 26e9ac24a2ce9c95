import ConfbusCore
import Logging
import ServiceLifecycle

/// Drains the outbox: every committed version is published, in commit order, once the bus takes
/// it; when the broker is down the versions wait in PostgreSQL and go out after it returns.
public struct OutboxRelay: Service {
    public let store: any VersionStore
    public let publisher: any UpdatePublisher
    public let signal: WakeSignal
    public let pollInterval: Duration
    public let logger: Logger
    public let onPublished: @Sendable (StoredVersion) -> Void

    public init(store: any VersionStore, publisher: any UpdatePublisher, signal: WakeSignal,
                pollInterval: Duration = .seconds(2), logger: Logger,
                onPublished: @escaping @Sendable (StoredVersion) -> Void = { _ in }) {
        self.store = store
        self.publisher = publisher
        self.signal = signal
        self.pollInterval = pollInterval
        self.logger = logger
        self.onPublished = onPublished
    }

    public func run() async throws {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await drainOnce()
                await signal.wait(timeout: pollInterval)
            }
        }
        // Last chance on a clean shutdown: publish what is committed, if the database and the
        // broker answer within a few seconds (what is left goes out after the next start).
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.drainOnce() }
            group.addTask { try? await Task.sleep(for: .seconds(5)) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Publishes until the outbox is empty or the bus refuses; returns how many went out.
    @discardableResult
    public func drainOnce() async -> Int {
        var total = 0
        do {
            while true {
                let published = try await store.drainOutbox(limit: 100) { version in
                    try await publisher.publishUpdate(version)
                    onPublished(version)
                }
                total += published
                if published < 100 { break }
            }
        } catch {
            logger.debug("outbox not drained; will retry", metadata: ["error.type": "\(type(of: error))", "error": "\(error)"])
        }
        return total
    }
}
