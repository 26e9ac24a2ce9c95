import Synchronization

/// A level-triggered wake-up: `signal()` from anywhere, `wait(timeout:)` in one consumer loop.
/// A signal that arrives while nobody waits is kept, so no wake-up is lost.
public final class WakeSignal: Sendable {
    private struct State {
        var pending = false
        var continuation: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    public init() {}

    public func signal() {
        let continuation = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let c = state.continuation {
                state.continuation = nil
                return c
            }
            state.pending = true
            return nil
        }
        continuation?.resume()
    }

    /// Returns when signalled or after `timeout`, whichever comes first.
    public func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let resumeNow = self.state.withLock { state -> Bool in
                            if state.pending || Task.isCancelled {
                                state.pending = false
                                return true
                            }
                            state.continuation = continuation
                            return false
                        }
                        if resumeNow { continuation.resume() }
                    }
                } onCancel: {
                    let c = self.state.withLock { state -> CheckedContinuation<Void, Never>? in
                        defer { state.continuation = nil }
                        return state.continuation
                    }
                    c?.resume()
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
    }
}
