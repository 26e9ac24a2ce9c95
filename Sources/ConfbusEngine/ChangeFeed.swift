import ConfbusCore
import Synchronization

/// What changed on this node, for readers that follow it live (the console's event stream): a
/// version reached the cache, an instance reported, a rollout moved. A change names its service
/// only; a reader fetches what it shows again. Each subscriber has its own bounded buffer: a slow
/// one loses its oldest changes, never slows a producer.
public final class ChangeFeed: Sendable {
    public enum Kind: String, Sendable {
        case version, instance, rollout
    }

    public struct Change: Sendable, Equatable {
        public var kind: Kind
        public var service: ServiceName

        public init(_ kind: Kind, _ service: ServiceName) {
            self.kind = kind
            self.service = service
        }
    }

    private struct State {
        var subscribers: [UInt64: AsyncStream<Change>.Continuation] = [:]
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())
    private let buffer: Int

    public init(buffer: Int = 256) { self.buffer = buffer }

    public func publish(_ change: Change) {
        let subscribers = state.withLock { Array($0.subscribers.values) }
        for subscriber in subscribers { subscriber.yield(change) }
    }

    /// The changes from now on, until the stream is dropped or `finishAll` ends it.
    public func subscribe() -> AsyncStream<Change> {
        let (stream, continuation) = AsyncStream<Change>.makeStream(bufferingPolicy: .bufferingNewest(buffer))
        let id = state.withLock { state in
            defer { state.nextID += 1 }
            state.subscribers[state.nextID] = continuation
            return state.nextID
        }
        continuation.onTermination = { [weak self] _ in _ = self?.state.withLock { $0.subscribers.removeValue(forKey: id) } }
        return stream
    }

    public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

    /// Ends every stream (a graceful shutdown: the server waits for its requests to end).
    public func finishAll() {
        let subscribers = state.withLock { state in defer { state.subscribers = [:] }; return Array(state.subscribers.values) }
        for subscriber in subscribers { subscriber.finish() }
    }
}
