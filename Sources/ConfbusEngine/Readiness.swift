import Synchronization

/// Whether the database and the broker are reachable right now, as `/readyz`, the health topic
/// and `Confbus-Stale` report it. Set by the adapters that notice.
public final class Readiness: Sendable {
    private let state = Mutex((database: false, mqtt: false))

    public init() {}

    public var database: Bool { state.withLock { $0.database } }
    public var mqtt: Bool { state.withLock { $0.mqtt } }

    public func setDatabase(_ up: Bool) { state.withLock { $0.database = up } }
    public func setMQTT(_ up: Bool) { state.withLock { $0.mqtt = up } }
}
