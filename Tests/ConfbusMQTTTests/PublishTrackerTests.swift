@testable import ConfbusMosquitto
import ConfbusMQTT
import ConfbusCore
import Testing

struct PublishTrackerTests {
    @Test func ackAfterRegistrationResumesTheWaiter() {
        var tracker = PublishTracker<String>()
        #expect(tracker.register(mid: 1, generation: 0, "waiter-1") == nil)
        #expect(tracker.acknowledge(mid: 1, generation: 0, reason: 0) == "waiter-1")
        #expect(tracker.count == 0)
    }

    @Test func anAckThatRacesAheadIsKeptForItsPublisher() {
        var tracker = PublishTracker<String>()
        #expect(tracker.acknowledge(mid: 7, generation: 3, reason: 0x87) == nil)
        #expect(tracker.register(mid: 7, generation: 3, "late") == 0x87)
        #expect(tracker.count == 0)
    }

    @Test func disconnectFailsEveryWaiter() {
        var tracker = PublishTracker<String>()
        _ = tracker.register(mid: 1, generation: 0, "a")
        _ = tracker.register(mid: 2, generation: 0, "b")
        #expect(Set(tracker.removeAll()) == ["a", "b"])
        #expect(tracker.acknowledge(mid: 1, generation: 0, reason: 0) == nil)
    }

    /// Message ids start again on every connection (and wrap at 65,535): an ack that belongs to an
    /// earlier connection must not complete a later publish that happens to have the same id.
    @Test func anEarlierConnectionsAckNeverCompletesALaterPublish() {
        var tracker = PublishTracker<String>()
        #expect(tracker.acknowledge(mid: 1, generation: 1, reason: 0) == nil)   // a stale ack, kept as early for generation 1
        #expect(tracker.register(mid: 1, generation: 2, "new") == nil)          // generation 2's publish is not completed by it
        #expect(tracker.acknowledge(mid: 1, generation: 1, reason: 0) == nil)
        #expect(tracker.acknowledge(mid: 1, generation: 2, reason: 0x10) == "new")
    }
}

struct TopicCodecTests {
    let codec = TopicCodec(prefix: "config")

    @Test func parsesIncomingTopics() {
        #expect(codec.parse("config/register/billing") == .register(service: "billing"))
        #expect(codec.parse("config/ack/billing/web-1") == .ack(service: "billing", instance: "web-1"))
        #expect(codec.parse("config/health/billing/web-1") == .health(service: "billing", instance: "web-1"))
        #expect(codec.parse("config/update/billing") == .update(service: "billing"))
        #expect(codec.parse("config/register/a/b") == nil)
        #expect(codec.parse("config/ack/billing") == nil)
        #expect(codec.parse("other/register/billing") == nil)
        #expect(codec.parse("config/unknown/x") == nil)
    }

    @Test func buildsTopicsFromValidatedNames() throws {
        let name = try ConfbusCore.ServiceName(validating: "billing-api")
        #expect(codec.update(name) == "config/update/billing-api")
        #expect(codec.error(name) == "config/error/billing-api")
        #expect(codec.nodeHealth("n1") == "config/health/_confbus/n1")
    }

    @Test func urlsKeepPasswordsOutOfDescriptions() throws {
        let url = try MQTTURL("mqtts://user:p%40ss@broker.example:8883")
        #expect(url.tls && url.port == 8883 && url.username == "user" && url.password == "p@ss")
        #expect(!url.description.contains("p@ss"))
        #expect(try MQTTURL("mqtt://localhost").port == 1883)
        #expect(throws: MQTTError.self) { try MQTTURL("http://localhost") }
    }
}
