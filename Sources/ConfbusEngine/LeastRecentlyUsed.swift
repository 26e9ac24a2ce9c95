/// A table of at most `capacity` entries: past it, the least recently used tenth is let go at once
/// (one sort per capacity / 10 insertions instead of an order kept up to date on every hit). A
/// value: its owner keeps it under its own lock.
public struct LeastRecentlyUsed<Key: Hashable, Value> {
    private var entries: [Key: (value: Value, lastUse: UInt64)] = [:]
    /// Counts uses: an entry's `lastUse` is the count at its last use.
    private var clock: UInt64 = 0
    public let capacity: Int

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
    }

    public var count: Int { entries.count }

    /// The value kept for `key`, which counts as a use.
    public mutating func use(_ key: Key) -> Value? {
        guard let entry = entries[key] else { return nil }
        clock += 1
        entries[key]?.lastUse = clock
        return entry.value
    }

    public mutating func keep(_ value: Value, for key: Key) {
        clock += 1
        entries[key] = (value, clock)
        guard entries.count > capacity else { return }
        let drop = entries.count - capacity + capacity / 10
        for (victim, _) in entries.sorted(by: { $0.value.lastUse < $1.value.lastUse }).prefix(drop) {
            entries.removeValue(forKey: victim)
        }
    }

    public mutating func forget(_ key: Key) {
        entries.removeValue(forKey: key)
    }

    public mutating func forgetAll(where drop: (Key) -> Bool) {
        entries = entries.filter { !drop($0.key) }
    }
}

extension LeastRecentlyUsed: Sendable where Key: Sendable, Value: Sendable {}
