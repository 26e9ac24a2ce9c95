import Hummingbird
import Metrics
import Synchronization

/// `confbus_http_request_duration_seconds{route,method,status}`: routes, never raw paths, so
/// the label set stays small. Each timer is made once and kept: looking one up in the metrics
/// registry on every request cost more than the pull itself.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    let timers = RequestTimers()

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        let elapsed = ContinuousClock.now - started
        timers.timer(route: context.endpointPath ?? "unmatched", method: request.method.rawValue, status: response.status.code)
            .recordNanoseconds(Int64(elapsed.components.seconds) * 1_000_000_000 + Int64(elapsed.components.attoseconds / 1_000_000_000))
        return response
    }
}

final class RequestTimers: Sendable {
    private struct Key: Hashable {
        var route: String
        var method: String
        var status: Int
    }
    private let timers = Mutex<[Key: Timer]>([:])

    func timer(route: String, method: String, status: Int) -> Timer {
        let key = Key(route: route, method: method, status: status)
        if let timer = timers.withLock({ $0[key] }) { return timer }
        let timer = Timer(label: "confbus_http_request_duration_seconds",
                          dimensions: [("route", route), ("method", method), ("status", String(status))], preferredDisplayUnit: .seconds)
        timers.withLock { $0[key] = timer }
        return timer
    }
}
