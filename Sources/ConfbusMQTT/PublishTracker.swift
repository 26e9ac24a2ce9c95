/// Matches QoS 1 publishes to their PUBACKs by message id. Pure state: the client holds it in a
/// mutex because acks arrive on the network thread. Acks that come before the publisher has
/// registered (the ack raced the return of `mosquitto_publish`) are kept until it does.
struct PublishTracker<Continuation> {
    private var waiting: [Int32: Continuation] = [:]
    private var early: [Int32: Int32] = [:]

    /// Registers a waiter; returns the reason code if the ack is already here.
    mutating func register(mid: Int32, _ continuation: Continuation) -> Int32? {
        if let reason = early.removeValue(forKey: mid) { return reason }
        waiting[mid] = continuation
        return nil
    }

    /// Records an ack; returns the waiter to resume, if one is registered.
    mutating func acknowledge(mid: Int32, reason: Int32) -> Continuation? {
        if let continuation = waiting.removeValue(forKey: mid) { return continuation }
        early[mid] = reason
        return nil
    }

    mutating func remove(mid: Int32) -> Continuation? { waiting.removeValue(forKey: mid) }

    /// Every waiter, for failing them all when the connection drops.
    mutating func removeAll() -> [Continuation] {
        defer { waiting.removeAll(); early.removeAll() }
        return Array(waiting.values)
    }

    var count: Int { waiting.count }
}
