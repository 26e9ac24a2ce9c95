import ConfbusCore
import ConfbusEngine
import Hummingbird
import Prometheus

/// The HTTP API of CONTRACT.md §5, as three controllers on route groups: the operational
/// endpoints (open), the reads (behind `ReadAccessMiddleware`) and the admin calls (behind
/// `AdminAccessMiddleware`). A route belongs to a group, so none can forget its access check.
public struct ConfbusAPI: Sendable {
    let distributor: Distributor
    let readiness: Readiness
    let policy: AccessPolicy
    let registry: PrometheusCollectorRegistry
    let body: BodyReader
    let limiter: RateLimiter

    /// `rateLimit`: requests a second per token (0: none).
    public init(distributor: Distributor, readiness: Readiness, adminTokens: [AccessToken], readTokens: [AccessToken],
                registry: PrometheusCollectorRegistry, maxBodyBytes: Int = 1 << 20, rateLimit: Int = 0,
                parseYAML: @escaping @Sendable ([UInt8]) throws -> JSONValue = { _ in
                    throw ConfbusError(code: .badRequest, message: "YAML bodies are not supported here")
                }) {
        self.distributor = distributor
        self.readiness = readiness
        self.policy = AccessPolicy(adminTokens: adminTokens, readTokens: readTokens)
        self.registry = registry
        self.body = BodyReader(maxBytes: maxBodyBytes, parseYAML: parseYAML)
        self.limiter = RateLimiter(rate: rateLimit)
    }

    public func addRoutes(to router: Router<ConfbusRequestContext>) {
        router.addMiddleware {
            RequestMetricsMiddleware<ConfbusRequestContext>()
            ProblemMiddleware<ConfbusRequestContext>()
        }
        OperationsController(readiness: readiness, registry: registry).addRoutes(to: router.group())
        let reads = router.group().add(middleware: ReadAccessMiddleware(policy: policy, limiter: limiter))
        let admin = router.group().add(middleware: AdminAccessMiddleware(policy: policy, readiness: readiness, limiter: limiter))
        let rollouts = RolloutController(rollouts: distributor.rollouts, reads: distributor.reads, body: body)
        let readController = ReadController(allReads: distributor.reads, readiness: readiness, rollouts: distributor.rollouts)
        readController.addRoutes(to: reads)
        EventsController(reads: distributor.reads).addRoutes(to: reads)
        FlagsController(reads: distributor.reads, body: body).addRoutes(to: reads)
        let console = ConsoleController(reads: distributor.reads, rollouts: distributor.rollouts, api: readController, policy: policy)
        console.addOpenRoutes(to: router.group())
        console.addReadRoutes(to: reads)
        console.addAdminRoutes(to: admin)
        rollouts.addReadRoutes(to: reads)
        AdminController(distributor: distributor, body: body).addRoutes(to: admin)
        rollouts.addAdminRoutes(to: admin)
    }
}

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json`: open, for probes and scrapers.
struct OperationsController: Sendable {
    let readiness: Readiness
    let registry: PrometheusCollectorRegistry

    func addRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.get("/healthz") { _, _ in Response.json(["status": "ok"]) }
        group.get("/readyz") { _, _ in try readyz() }
        group.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                     body: .init(byteBuffer: .init(bytes: registry.emitToBuffer())))
        }
        group.get("/openapi.json") { _, _ in Response.json(OpenAPIDocument.document) }
    }

    func readyz() throws -> Response {
        let database = readiness.database
        let mqtt = readiness.mqtt
        let loaded = readiness.loaded
        guard database && mqtt && loaded else {
            let down = [database ? nil : "database", mqtt ? nil : "mqtt", (database && !loaded) ? "start-up (loading versions)" : nil].compactMap { $0 }
            throw Problem(.serviceUnavailable, code: "not_ready", detail: "not ready: \(down.joined(separator: " and ")) down")
        }
        var body: [String: JSONValue] = ["database": "connected", "mqtt": "connected"]
        // With several brokers, ready while one is up; each one's state is shown.
        let brokers = readiness.brokers
        if brokers.count > 1 { body["brokers"] = .array(brokers.map { $0 ? "connected" : "disconnected" }) }
        return Response.json(.object(body))
    }
}
