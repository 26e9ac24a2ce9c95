import ConfbusCore

/// The relay's decisions, as pure state: which services to publish now, which wait out a
/// backoff after a failure, and when to look again. Services are independent: a refusal (a
/// reason code ≥ 0x80, a timeout, a size refusal) backs off only its own service, each service's
/// newest version goes out at most once at a time, and a version older than one already
/// published is never sent after it. Time is a monotonic instant handed in by the caller.
public struct OutboxStateMachine<Instant: Comparable & Sendable>: Sendable {
    public struct Backoff: Sendable {
        public var initial: Duration
        public var maximum: Duration

        public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30)) {
            self.initial = initial
            self.maximum = maximum
        }

        /// Capped exponential: initial, 2×, 4×, … up to `maximum`.
        public func delay(afterFailures failures: Int) -> Duration {
            var delay = initial
            for _ in 1..<max(1, failures) {
                delay *= 2
                if delay >= maximum { return maximum }
            }
            return min(delay, maximum)
        }
    }

    struct ServiceState: Sendable {
        var failures = 0
        var retryAt: Instant?
        var inFlight: Int?
        var published = 0
        var lastFailure: String?
        /// The broker answered the last publish with a refusal (the service's fault, not the relay's).
        var refused = false
    }

    public enum Action: Sendable, Equatable {
        /// Publish this version of its service now.
        case publish(StoredVersion)
        /// The version is older than one already published: mark it done without sending it.
        case markDone(ServiceName, through: Int)
    }

    public let backoff: Backoff
    private var services: [ServiceName: ServiceState] = [:]
    private let advance: @Sendable (Instant, Duration) -> Instant

    /// `advance(now, d)` is `now + d` for the caller's clock.
    public init(backoff: Backoff = Backoff(), advance: @escaping @Sendable (Instant, Duration) -> Instant) {
        self.backoff = backoff
        self.advance = advance
    }

    /// Services to leave out of the next look at the outbox: in flight, or waiting out a backoff.
    public func blocked(at now: Instant) -> [ServiceName] {
        services.compactMap { name, state in
            state.inFlight != nil || (state.retryAt.map { $0 > now } ?? false) ? name : nil
        }.sorted()
    }

    /// What to do with the newest pending version of each service, at `now`.
    public mutating func schedule(_ pending: [StoredVersion], at now: Instant) -> [Action] {
        var actions: [Action] = []
        for version in pending {
            var state = services[version.service] ?? ServiceState()
            if state.inFlight != nil { continue }
            if let retryAt = state.retryAt, retryAt > now { continue }
            if version.version <= state.published {
                actions.append(.markDone(version.service, through: version.version))
                continue
            }
            state.inFlight = version.version
            services[version.service] = state
            actions.append(.publish(version))
        }
        return actions
    }

    /// The broker took the version (and it is marked done).
    public mutating func published(_ service: ServiceName, version: Int) {
        var state = services[service] ?? ServiceState()
        state.inFlight = nil
        state.failures = 0
        state.retryAt = nil
        state.lastFailure = nil
        state.refused = false
        state.published = max(state.published, version)
        services[service] = state
    }

    /// The publish failed: the service waits out a growing backoff; others are untouched.
    /// Returns the delay.
    @discardableResult
    public mutating func failed(_ service: ServiceName, version: Int, reason: String, refused: Bool = false, at now: Instant) -> Duration {
        var state = services[service] ?? ServiceState()
        state.inFlight = nil
        state.failures += 1
        state.lastFailure = reason
        state.refused = refused
        let delay = backoff.delay(afterFailures: state.failures)
        state.retryAt = advance(now, delay)
        services[service] = state
        return delay
    }

    /// Reconcile queued the service again: its next version is sent even if it went out before.
    public mutating func forget(_ service: ServiceName) {
        if services[service]?.inFlight == nil { services[service] = nil }
    }

    /// The lease was lost (or taken over): forget in-flight work; a new holder starts from the outbox.
    public mutating func leadershipLost() {
        services.removeAll()
    }

    /// The earliest moment a backed-off service may be tried again.
    public var nextRetry: Instant? {
        services.values.compactMap(\.retryAt).min()
    }

    /// Services whose last publish failed, with the reason.
    public var failing: [ServiceName: String] {
        services.compactMapValues { $0.lastFailure }
    }

    /// Services whose last publish the broker refused.
    public var refused: Set<ServiceName> {
        Set(services.compactMap { $0.value.refused && $0.value.lastFailure != nil ? $0.key : nil })
    }
}
