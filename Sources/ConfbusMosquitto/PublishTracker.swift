/// Matches QoS 1 publishes to their PUBACKs by connection and message id. Pure state: the
/// client holds it in a mutex because acks arrive on the network thread. Acks that come before
/// the publisher has registered (the ack raced the return of `mosquitto_publish`) are kept until
/// it does. Message ids wrap at 65,535 and start again on every connection, so an ack counts
/// only for a publish of the same connection (`generation`): an earlier connection's PUBACK can
/// never complete a later publish.
struct PublishTracker<Continuation> {
    private struct Key: Hashable {
        var generation: Int
        var mid: Int32
    }

    private var waiting: [Key: Continuation] = [:]
    private var early: [Key: Int32] = [:]

    /// Registers a waiter; returns the reason code if the ack is already here.
    mutating func register(mid: Int32, generation: Int, _ continuation: Continuation) -> Int32? {
        let key = Key(generation: generation, mid: mid)
        if let reason = early.removeValue(forKey: key) { return reason }
        waiting[key] = continuation
        return nil
    }

    /// Records an ack; returns the waiter to resume, if one is registered.
    mutating func acknowledge(mid: Int32, generation: Int, reason: Int32) -> Continuation? {
        let key = Key(generation: generation, mid: mid)
        if let continuation = waiting.removeValue(forKey: key) { return continuation }
        early[key] = reason
        return nil
    }

    mutating func remove(mid: Int32) -> Continuation? {
        guard let key = waiting.keys.first(where: { $0.mid == mid }) else { return nil }
        return waiting.removeValue(forKey: key)
    }

    /// Every waiter, for failing them all when the connection drops.
    mutating func removeAll() -> [Continuation] {
        defer { waiting.removeAll(); early.removeAll() }
        return Array(waiting.values)
    }

    var count: Int { waiting.count }
}
