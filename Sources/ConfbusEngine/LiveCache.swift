import ConfbusCore
import Foundation
import ServiceLifecycle
import Synchronization

/// The latest version of every service, in memory: what HTTP pull serves without a database
/// round trip, and what long-poll waiters wait on. Waiters are continuations, not threads, so
/// thousands of them cost a few hundred bytes each.
public final class LiveCache: Sendable {
    private struct Waiter {
        var after: Int
        var deadline: ContinuousClock.Instant
        var continuation: CheckedContinuation<StoredVersion?, Never>
    }

    private struct State {
        var latest: [ServiceName: StoredVersion] = [:]
        var waiters: [ServiceName: [UInt64: Waiter]] = [:]
        /// Names each waiter (a counter, not a UUID: Foundation reads /dev/urandom for every UUID).
        var nextID: UInt64 = 0
        /// Whether the one task that times waiters out is running.
        var sweeping = false
    }

    /// How often waiters past their deadline are answered (a long-poll's timeout is this late at most).
    private static let sweepInterval: Duration = .milliseconds(100)

    private let state = Mutex(State())
    /// Told of every version the cache takes, and shared with the rest of the node (`ChangeFeed`).
    public let changes: ChangeFeed

    public init(changes: ChangeFeed = ChangeFeed()) { self.changes = changes }

    public func latest(_ service: ServiceName) -> StoredVersion? {
        state.withLock { $0.latest[service] }
    }

    public var all: [StoredVersion] {
        state.withLock { Array($0.latest.values) }.sorted { $0.service < $1.service }
    }

    /// Records a version if it is newer than the one held, and wakes the waiters it satisfies.
    @discardableResult
    public func offer(_ version: StoredVersion) -> Bool {
        let woken: [CheckedContinuation<StoredVersion?, Never>]? = state.withLock { state in
            if let held = state.latest[version.service], held.version >= version.version { return nil }
            state.latest[version.service] = version
            guard var waiting = state.waiters[version.service] else { return [] }
            var ready: [CheckedContinuation<StoredVersion?, Never>] = []
            for (id, waiter) in waiting where waiter.after < version.version {
                ready.append(waiter.continuation)
                waiting.removeValue(forKey: id)
            }
            state.waiters[version.service] = waiting.isEmpty ? nil : waiting
            return ready
        }
        guard let woken else { return false }
        for continuation in woken { continuation.resume(returning: version) }
        changes.publish(.init(.version, version.service))
        return true
    }

    /// Waits up to `timeout` for a version of `service` above `after`; nil on timeout. A waiter is
    /// one continuation in a table: no task and no timer of its own (one sweeper times them all out),
    /// so ten thousand of them cost little more than their connections.
    public func wait(for service: ServiceName, after: Int, timeout: Duration) async -> StoredVersion? {
        if let held = latest(service), held.version > after { return held }
        let id = state.withLock { state in defer { state.nextID += 1 }; return state.nextID }
        let deadline = ContinuousClock.now + timeout
        // A graceful shutdown answers every waiter at once ("nothing newer"), so that the server,
        // which waits for its requests to end, stops within its bound and not a long-poll later.
        return await withGracefulShutdownHandler { await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<StoredVersion?, Never>) in
                let (immediate, startSweeper): (StoredVersion??, Bool) = self.state.withLock { state in
                    if let held = state.latest[service], held.version > after { return (.some(held), false) }
                    if Task.isCancelled || Task.isShuttingDownGracefully { return (.some(nil), false) }
                    state.waiters[service, default: [:]][id] = Waiter(after: after, deadline: deadline, continuation: continuation)
                    defer { state.sweeping = true }
                    return (.none, !state.sweeping)
                }
                if case .some(let value) = immediate { continuation.resume(returning: value) }
                if startSweeper { Task.detached { await self.sweep() } }
            }
        } onCancel: {
            self.cancel(id, service: service)
        } } onGracefulShutdown: {
            self.cancel(id, service: service)
        }
    }

    /// Answers nil to every waiter past its deadline, until none is left.
    private func sweep() async {
        while true {
            try? await Task.sleep(for: Self.sweepInterval)
            let now = ContinuousClock.now
            let (expired, done): ([CheckedContinuation<StoredVersion?, Never>], Bool) = state.withLock { state in
                var expired: [CheckedContinuation<StoredVersion?, Never>] = []
                for (service, waiting) in state.waiters {
                    var kept = waiting
                    for (id, waiter) in waiting where waiter.deadline <= now {
                        expired.append(waiter.continuation)
                        kept.removeValue(forKey: id)
                    }
                    state.waiters[service] = kept.isEmpty ? nil : kept
                }
                if state.waiters.isEmpty { state.sweeping = false }
                return (expired, !state.sweeping)
            }
            for continuation in expired { continuation.resume(returning: nil) }
            if done { return }
        }
    }

    private func cancel(_ id: UInt64, service: ServiceName) {
        let waiter = state.withLock { state -> Waiter? in
            let w = state.waiters[service]?.removeValue(forKey: id)
            if state.waiters[service]?.isEmpty == true { state.waiters[service] = nil }
            return w
        }
        waiter?.continuation.resume(returning: nil)
    }

    public var waiterCount: Int { state.withLock { $0.waiters.values.reduce(0) { $0 + $1.count } } }
}
