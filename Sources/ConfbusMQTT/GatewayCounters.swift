import Metrics

/// The gateway's metrics (swift-metrics; exported by the HTTP module's Prometheus registry).
public struct GatewayCounters: Sendable {
    public let published: Counter
    public let reconciled: Counter
    /// Versions the broker held and the database lost, repaired (CONTRACT.md §11).
    public let diverged: Counter
    /// Refusals past a client's budget (`confbus_rate_limited_total{api="mqtt"}`, beside HTTP's).
    public let rateLimited: Counter
    private let factory: any MetricsFactory

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        published = Counter(label: "confbus_versions_published_total", factory: factory)
        reconciled = Counter(label: "confbus_reconcile_republished_total", factory: factory)
        diverged = Counter(label: "confbus_diverged_repairs_total", factory: factory)
        rateLimited = Counter(label: "confbus_rate_limited_total", dimensions: [("api", "mqtt")], factory: factory)
    }

    public func refused(code: String) {
        Counter(label: "confbus_refusals_total", dimensions: [("code", code)], factory: factory).increment()
    }
}
