import ConfbusCore
import Configuration
import Foundation
import Synchronization

/// confbus as a swift-configuration provider (CONTRACT.md §9): reads come from the snapshot of the
/// version held, and every version the client applies swaps the snapshot and wakes the watchers —
/// a value watcher only when its own key and type changed. The network side (pull, MQTT, long-poll,
/// cache) feeds it through `apply`.
public final class ConfbusProvider: ConfigProvider, Sendable {
    private struct ValueWatcher {
        var key: AbsoluteConfigKey
        var type: ConfigType
        var last: Result<LookupResult, any Error>
        var continuation: AsyncStream<Result<LookupResult, any Error>>.Continuation
    }

    private struct State {
        var snapshot: ConfbusSnapshot
        var values: [UUID: ValueWatcher] = [:]
        var snapshots: [UUID: AsyncStream<any ConfigSnapshot>.Continuation] = [:]
    }

    public let providerName: String
    private let state: Mutex<State>

    public init(service: String, initial: ConfbusSnapshot? = nil) {
        providerName = "ConfbusProvider[\(service)]"
        state = Mutex(State(snapshot: initial ?? .empty(providerName: "ConfbusProvider[\(service)]")))
    }

    /// The version the snapshot is of (0 before any).
    public var version: Int { state.withLock { $0.snapshot.version } }

    /// Makes `snapshot` current and tells the watchers whose answer it changes.
    public func apply(_ snapshot: ConfbusSnapshot) {
        let notify: ([(AsyncStream<Result<LookupResult, any Error>>.Continuation, Result<LookupResult, any Error>)],
                     [AsyncStream<any ConfigSnapshot>.Continuation]) = state.withLock { s in
            s.snapshot = snapshot
            var values: [(AsyncStream<Result<LookupResult, any Error>>.Continuation, Result<LookupResult, any Error>)] = []
            for (id, watcher) in s.values {
                let now = Result { try snapshot.value(forKey: watcher.key, type: watcher.type) }
                guard !Self.same(now, watcher.last) else { continue }
                s.values[id]?.last = now
                values.append((watcher.continuation, now))
            }
            return (values, Array(s.snapshots.values))
        }
        for (continuation, result) in notify.0 { continuation.yield(result) }
        for continuation in notify.1 { continuation.yield(snapshot) }
    }

    private static func same(_ a: Result<LookupResult, any Error>, _ b: Result<LookupResult, any Error>) -> Bool {
        switch (a, b) {
        case (.success(let x), .success(let y)): x == y
        case (.failure(let x), .failure(let y)): String(describing: x) == String(describing: y)
        default: false
        }
    }

    public func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try state.withLock { $0.snapshot }.value(forKey: key, type: type)
    }

    /// The held version's value: the client keeps it current, so fetching asks nothing more.
    public func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try value(forKey: key, type: type)
    }

    public func snapshot() -> any ConfigSnapshot { state.withLock { $0.snapshot } }

    public func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey, type: ConfigType,
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        let (stream, continuation) = AsyncStream<Result<LookupResult, any Error>>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        state.withLock { s in
            let current = Result { try s.snapshot.value(forKey: key, type: type) }
            continuation.yield(current)
            s.values[id] = ValueWatcher(key: key, type: type, last: current, continuation: continuation)
        }
        defer {
            state.withLock { _ = $0.values.removeValue(forKey: id) }
            continuation.finish()
        }
        return try await updatesHandler(ConfigUpdatesAsyncSequence(stream))
    }

    public func watchSnapshot<Return: ~Copyable>(
        updatesHandler: nonisolated(nonsending) (_ updates: ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        let (stream, continuation) = AsyncStream<any ConfigSnapshot>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let id = UUID()
        state.withLock { s in
            continuation.yield(s.snapshot)
            s.snapshots[id] = continuation
        }
        defer {
            state.withLock { _ = $0.snapshots.removeValue(forKey: id) }
            continuation.finish()
        }
        return try await updatesHandler(ConfigUpdatesAsyncSequence(stream))
    }
}
