import ConfbusCore
import ConfbusEngine
import ConfbusMosquitto

/// Every version to every broker of `mqtt_urls` (CONTRACT.md §11): the relay and the rollout
/// driver publish through this, each broker's gateway with its own connection and PUBACKs. A
/// publish is done when every connected broker has acknowledged it; a broker that is down is
/// left to its own reconcile when it returns (it compares its retained messages with the database
/// and queues what it lacks), so one broker down never holds the others' deliveries back.
public struct BrokerFanOut: UpdatePublisher, RolloutPublisher {
    let gateways: [MQTTGateway]

    public init(_ gateways: [MQTTGateway]) {
        precondition(!gateways.isEmpty, "at least one broker")
        self.gateways = gateways
    }

    /// The connected brokers' gateways; with none, the publish fails and the outbox keeps it.
    private func connected() throws -> [MQTTGateway] {
        let up = gateways.filter { $0.client.isConnected }
        guard !up.isEmpty else { throw MQTTError.notConnected }
        return up
    }

    public func publishUpdate(_ version: StoredVersion) async throws {
        try await onEachConnected { try await $0.publishUpdate(version) }
    }

    public func publishRollout(_ service: ServiceName, payload: JSONValue?) async throws {
        try await onEachConnected { try await $0.publishRollout(service, payload: payload) }
    }

    /// `publish` on every connected broker at once; done when all of them acknowledged.
    private func onEachConnected(_ publish: @escaping @Sendable (MQTTGateway) async throws -> Void) async throws {
        let targets = try connected()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for gateway in targets { group.addTask { try await publish(gateway) } }
            try await group.waitForAll()
        }
    }

    public func failureReason(_ error: any Error) -> String { gateways[0].failureReason(error) }

    public func isRefusal(_ error: any Error) -> Bool { gateways[0].isRefusal(error) }
}
