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
        /// The held version's flags, parsed when first evaluated.
        var flags: [JSONPointer: Result<FeatureFlag, FlagEvaluationError>] = [:]
    }

    public let providerName: String
    /// The service this provider holds the config of (flags are evaluated under its name).
    public let service: String
    private let state: Mutex<State>

    public init(service: String, initial: ConfbusSnapshot? = nil) {
        self.service = service
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
            s.flags = [:]
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

// MARK: Feature flags

/// Why a flag could not be evaluated.
public enum FlagEvaluationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No value at the pointer in the version held (or no version yet).
    case noFlag(String)
    /// The value there is not a flag of CONTRACT.md §12.
    case notAFlag(String, FlagProblem)
    case badPointer(String)

    public var description: String {
        switch self {
        case .noFlag(let pointer): "no flag at \(pointer)"
        case .notAFlag(let pointer, let problem): "\(pointer) is not a flag: \(problem)"
        case .badPointer(let text): "\(text) is not a JSON pointer"
        }
    }
}

extension ConfbusProvider {
    /// The flag at `pointer` (such as `/flags/new_checkout`) for `context`, evaluated here from the
    /// version held — no network call — by the rule of CONTRACT.md §12, the one the server's
    /// `POST /v1/flags/{service}/evaluate` applies: the same version gives the same answer.
    public func evaluateFlag(_ pointer: String, for context: FlagContext) throws(FlagEvaluationError) -> FlagResult {
        guard let parsed = JSONPointer(pointer), pointer.hasPrefix("/") else { throw .badPointer(pointer) }
        let flag = try flag(at: parsed).get()
        return flag.evaluate(context, service: service, pointer: parsed)
    }

    /// Whether the flag is on for `context` (a variant counts as on); false when there is no such
    /// flag, so that a missing or broken flag leaves the feature off.
    public func isEnabled(_ pointer: String, for context: FlagContext) -> Bool {
        (try? evaluateFlag(pointer, for: context))?.value.isOn ?? false
    }

    /// The variant served to `context`, nil when the flag is off for it or has no variants.
    public func variant(_ pointer: String, for context: FlagContext) -> String? {
        guard case .variant(let name)? = (try? evaluateFlag(pointer, for: context))?.value else { return nil }
        return name
    }

    private func flag(at pointer: JSONPointer) -> Result<FeatureFlag, FlagEvaluationError> {
        state.withLock { s in
            if let known = s.flags[pointer] { return known }
            let result: Result<FeatureFlag, FlagEvaluationError>
            if let value = s.snapshot.config.value(at: pointer) {
                do throws(FlagProblem) {
                    result = .success(try FeatureFlag(json: value))
                } catch {
                    result = .failure(.notAFlag(pointer.description, error))
                }
            } else {
                result = .failure(.noFlag(pointer.description))
            }
            s.flags[pointer] = result
            return result
        }
    }
}
