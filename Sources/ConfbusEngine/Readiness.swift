import Synchronization

/// Whether the database and the broker are reachable right now, as `/readyz`, the health topic
/// and `Confbus-Stale` report it. Set by the adapters that notice.
public final class Readiness: Sendable {
    private let state = Mutex((database: false, mqtt: false))

    /// Signalled whenever either state changes (the health topic republishes at once).
    public let changed = WakeSignal()

    public init() {}

    public var database: Bool { state.withLock { $0.database } }
    public var mqtt: Bool { state.withLock { $0.mqtt } }

    public func setDatabase(_ up: Bool) {
        if state.withLock({ s in defer { s.database = up }; return s.database != up }) { changed.signal() }
    }

    public func setMQTT(_ up: Bool) {
        if state.withLock({ s in defer { s.mqtt = up }; return s.mqtt != up }) { changed.signal() }
    }
}
