import Hummingbird
import Metrics

/// `confbus_http_request_duration_seconds{route,method,status}`: routes, never raw paths, so
/// the label set stays small.
struct RequestMetricsMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let response = try await next(request, context)
        let elapsed = ContinuousClock.now - started
        let route = context.endpointPath ?? "unmatched"
        Timer(label: "confbus_http_request_duration_seconds",
              dimensions: [("route", route), ("method", request.method.rawValue), ("status", String(response.status.code))],
              preferredDisplayUnit: .seconds)
            .recordNanoseconds(Int64(elapsed.components.seconds) * 1_000_000_000 + Int64(elapsed.components.attoseconds / 1_000_000_000))
        return response
    }
}
