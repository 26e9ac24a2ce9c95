import ConfbusCore

/// Builds confbus's topics from validated names and reads incoming ones (CONTRACT.md §4).
/// Nothing else in confbus writes a topic string, so a raw name can never reach the broker.
public struct TopicCodec: Sendable {
    public let prefix: String

    public init(prefix: String = "config") { self.prefix = prefix }

    public enum Incoming: Sendable, Equatable {
        case register(service: String)
        case ack(service: String, instance: String)
        case health(service: String, instance: String)
        case update(service: String)
    }

    public func update(_ service: ServiceName) -> String { "\(prefix)/update/\(service.rawValue)" }
    public func rollout(_ service: ServiceName) -> String { "\(prefix)/rollout/\(service.rawValue)" }
    public func error(_ service: ServiceName) -> String { "\(prefix)/error/\(service.rawValue)" }
    public func nodeHealth(_ node: String) -> String { "\(prefix)/health/_confbus/\(node)" }

    /// The liveness probe's topic: outside every family instances and monitoring subscribe to.
    public func liveness(_ node: String) -> String { "\(prefix)/_confbus/liveness/\(node)" }

    public var subscriptions: [String] {
        ["\(prefix)/register/+", "\(prefix)/ack/+/+", "\(prefix)/health/+/+"]
    }
    public var updates: String { "\(prefix)/update/+" }

    /// The kind of an incoming topic, with its raw segments (validated by the caller).
    public func parse(_ topic: String) -> Incoming? {
        guard topic.hasPrefix(prefix + "/") else { return nil }
        let parts = topic.dropFirst(prefix.count + 1).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        switch (parts.first, parts.count) {
        case ("register", 2): return .register(service: parts[1])
        case ("ack", 3): return .ack(service: parts[1], instance: parts[2])
        case ("health", 3): return .health(service: parts[1], instance: parts[2])
        case ("update", 2): return .update(service: parts[1])
        default: return nil
        }
    }
}
