import Synchronization

/// Whether the database and the brokers are reachable right now, as `/readyz`, the health topic
/// and `Confbus-Stale` report it. Set by the adapters that notice. With several brokers
/// (`mqtt_urls`), MQTT is up while any one is: the others are caught up by reconcile.
public final class Readiness: Sendable {
    private let state: Mutex<(database: Bool, brokers: [Bool], loaded: Bool)>
    private let loadedSignal = WakeSignal()

    /// Signalled whenever either state changes (the health topic republishes at once).
    public let changed = WakeSignal()

    public init(brokers: Int = 1) {
        state = Mutex((false, Array(repeating: false, count: max(brokers, 1)), false))
    }

    public var database: Bool { state.withLock { $0.database } }
    /// Some broker is connected and acknowledging.
    public var mqtt: Bool { state.withLock { $0.brokers.contains(true) } }
    /// Each broker's state, in the order of `mqtt_urls`.
    public var brokers: [Bool] { state.withLock { $0.brokers } }

    public func mqtt(broker: Int) -> Bool { state.withLock { $0.brokers[broker] } }

    /// The live cache holds the database's versions and the first reload of the tree is done.
    public var loaded: Bool { state.withLock { $0.loaded } }

    public func setLoaded() {
        state.withLock { $0.loaded = true }
        loadedSignal.signal()
        changed.signal()
    }

    /// Waits until `loaded`, at most `timeout`; returns whether it is.
    public func waitUntilLoaded(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !loaded {
            if Task.isCancelled { return false }
            let left = deadline - ContinuousClock.now
            if left <= .zero { return false }
            await loadedSignal.wait(timeout: min(left, .milliseconds(200)))
        }
        return true
    }

    public func setDatabase(_ up: Bool) {
        if state.withLock({ s in defer { s.database = up }; return s.database != up }) { changed.signal() }
    }

    public func setMQTT(_ up: Bool, broker: Int = 0) {
        if state.withLock({ s in defer { s.brokers[broker] = up }; return s.brokers[broker] != up }) { changed.signal() }
    }
}
