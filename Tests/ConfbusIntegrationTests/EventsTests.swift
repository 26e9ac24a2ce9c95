import AsyncHTTPClient
import ConfbusCore
import Foundation
import NIOCore
import Synchronization
import Testing

/// `GET /v1/events`: the live stream the console follows, read as any client would.
@Suite(.requiresPostgres, .requiresMQTT)
struct EventsTests {
    /// An open stream as read from the wire, chunk by chunk.
    final class Stream: Sendable {
        final class Received: Sendable {
            let text = Mutex<String>("")
        }

        let received = Received()
        let reader: Task<Void, Never>

        init(_ response: HTTPClientResponse) {
            let received = self.received
            reader = Task {
                do {
                    for try await chunk in response.body { received.text.withLock { $0 += String(buffer: chunk) } }
                } catch {}
            }
        }

        var text: String { received.text.withLock { $0 } }

        func waitFor(_ needle: String, timeout: Duration = .seconds(10)) async throws -> String {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                let seen = text
                if seen.contains(needle) { return seen }
                try await Task.sleep(for: .milliseconds(20))
            }
            Issue.record("no \(needle.debugDescription) within \(timeout); saw \(text.debugDescription)")
            throw POSIXError(.ETIMEDOUT)
        }
    }

    static func open(_ confbus: Confbus, _ query: String = "", token: String?) async throws -> (HTTPClientResponse, Stream?) {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(confbus.httpPort)/v1/events\(query)")
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        return (response, response.status == .ok ? Stream(response) : nil)
    }

    @Test(.timeLimit(.minutes(1)))
    func aStreamNamesEachReadableServiceThatChanges() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker,
                                                             environment: ["CONFBUS_READ_TOKENS": "dash=open-sesame,billing:billing-api=b-secret"])
        defer { confbus.stop() }

        #expect(try await Self.open(confbus, token: nil).0.status == .unauthorized)
        #expect(try await Self.open(confbus, "?service=Bad%20Name", token: "open-sesame").0.status == .badRequest)

        let (answer, opened) = try await Self.open(confbus, token: "b-secret")
        let scoped = try #require(opened)
        #expect(answer.headers.first(name: "content-type")?.hasPrefix("text/event-stream") == true)
        _ = try await scoped.waitFor("retry: 2000\n")
        let (_, narrowed) = try await Self.open(confbus, "?service=report-worker", token: "open-sesame")
        let reportOnly = try #require(narrowed)
        _ = try await reportOnly.waitFor("retry: 2000\n")

        // A change to a service the scoped token may not read comes first; it must not show.
        for (service, body) in [("report-worker", #"{"concurrency": 7}"#), ("billing-api", #"{"http": {"port": 9091}}"#)] {
            let patched = try await confbus.request("PATCH", "/v1/config/\(service)/override", headers: AdminTests.admin(["X-Confbus-Reason": "events"]),
                                                    body: Data(body.utf8))
            try #require(patched.status == 200, "\(patched.text)")
        }
        let seen = try await scoped.waitFor("event: version\ndata: {\"service\":\"billing-api\"}\n\n")
        #expect(!seen.contains("report-worker"))
        let narrow = try await reportOnly.waitFor("event: version\ndata: {\"service\":\"report-worker\"}\n\n")
        #expect(!narrow.contains("billing-api"))

        // An instance's registration and ack, through the broker.
        let instance = try await MQTTProbe(url: broker, name: "events")
        defer { Task { await instance.shutdown() } }
        try await instance.publish("\(confbus.prefix)/register/billing-api", #"{"instance": "web-1"}"#)
        _ = try await scoped.waitFor("event: instance\ndata: {\"service\":\"billing-api\"}\n\n")
        let instances = try await confbus.get("/v1/services/billing-api/instances", headers: ["Authorization": "Bearer b-secret"])
        #expect(instances.text.contains("web-1"))
    }

    /// An open stream does not hold a stopping server: SIGTERM ends it and the process exits well
    /// within the lifecycle's bound.
    @Test(.timeLimit(.minutes(1)))
    func aStoppingServerEndsItsStreams() async throws {
        let broker = try #require(TestServers.mqttURL)
        let (confbus, _) = try await Harness.startedConfbus(broker: broker)
        defer { confbus.stop() }
        let (_, opened) = try await Self.open(confbus, token: nil)
        let stream = try #require(opened)
        _ = try await stream.waitFor("retry: 2000\n")
        let process = try #require(confbus.process)
        let started = ContinuousClock.now
        process.terminate()
        #expect(try await confbus.waitForExit(timeout: .seconds(10)) == 0)
        let took = ContinuousClock.now - started
        _ = await stream.reader.value  // the connection is closed with the process
        #expect(took < .seconds(8), "stopping took \(took)")
    }
}
