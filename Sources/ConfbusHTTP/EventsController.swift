import ConfbusCore
import ConfbusEngine
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceLifecycle

/// `GET /v1/events`: a server-sent event stream naming each service that changes on this node —
/// `version` (a version reached it), `instance` (an instance registered, acked or reported health),
/// `rollout` (a rollout started, moved or ended) — limited to the services the caller may read and,
/// with `?service=` (repeatable), to those. An event carries the service's name only; the reader
/// fetches what it shows again. A comment every 15 s keeps proxies from closing an idle stream; a
/// graceful shutdown ends every stream, and a reader reconnects (`retry`).
struct EventsController: Sendable {
    let reads: ConfigReads
    var heartbeat: Duration = .seconds(15)

    func addRoutes(to group: RouterGroup<ConfbusRequestContext>) {
        group.get("/v1/events", use: events)
    }

    @Sendable func events(_ request: Request, context: ConfbusRequestContext) throws -> Response {
        let caller = context.caller
        let named = try request.uri.queryParameters.getAll("service").map { raw -> ServiceName in
            guard let service = try? ServiceName(validating: String(raw)) else {
                throw Problem(.badRequest, code: "invalid_name", detail: "service must be a service name")
            }
            return service
        }
        let wanted: Set<ServiceName>? = named.isEmpty ? nil : Set(named)
        let heartbeat = self.heartbeat
        // Subscribed before the answer starts, so no change after the request is missed.
        let changes = reads.changes.subscribe()
        let headers: HTTPFields = [
            .contentType: "text/event-stream; charset=utf-8",
            .cacheControl: "no-store",
            HTTPField.Name("X-Accel-Buffering")!: "no",
        ]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            let (lines, out) = AsyncStream<String>.makeStream(bufferingPolicy: .bufferingNewest(256))
            try await withGracefulShutdownHandler {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask {
                        for await change in changes {
                            guard wanted?.contains(change.service) ?? true, caller?.mayRead(change.service) ?? true else { continue }
                            out.yield("event: \(change.kind.rawValue)\ndata: {\"service\":\"\(change.service)\"}\n\n")
                        }
                        out.finish()
                    }
                    group.addTask {
                        while !Task.isCancelled {
                            try await Task.sleep(for: heartbeat)
                            out.yield(": keep-alive\n\n")
                        }
                    }
                    try await writer.write(ByteBuffer(string: "retry: 2000\n: confbus events\n\n"))
                    // Ends when the stream is finished (shutdown) or a write fails (the reader left).
                    for await line in lines { try await writer.write(ByteBuffer(string: line)) }
                    group.cancelAll()
                }
            } onGracefulShutdown: {
                out.finish()
            }
            try await writer.finish(nil)
        })
    }
}
