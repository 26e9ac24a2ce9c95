import Synchronization

/// Whether the database and the broker are reachable right now, as `/readyz`, the health topic
/// and `Confbus-Stale` report it. Set by the adapters that notice.
public final class Readiness: Sendable {
    private let state = Mutex((database: false, mqtt: false, loaded: false))
    private let loadedSignal = WakeSignal()

    /// Signalled whenever either state changes (the health topic republishes at once).
    public let changed = WakeSignal()

    public init() {}

    public var database: Bool { state.withLock { $0.database } }
    public var mqtt: Bool { state.withLock { $0.mqtt } }

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

    public func setMQTT(_ up: Bool) {
        if state.withLock({ s in defer { s.mqtt = up }; return s.mqtt != up }) { changed.signal() }
    }
}
