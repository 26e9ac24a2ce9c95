import CMosquitto
import Foundation
import Logging
import Synchronization

public enum MQTTEvent: Sendable {
    case connected
    case disconnected(reason: Int32)
    case message(topic: String, payload: [UInt8], retained: Bool)
}

/// An MQTT 5 client over libmosquitto. One dedicated thread runs the network loop (connect,
/// `mosquitto_loop`, reconnect with capped exponential backoff and jitter); C callbacks run on
/// that thread, copy what they get before returning, and hand it to Swift through `events`
/// and the publish tracker. No callback outlives the client: `shutdown()` joins the thread
/// before the handle is destroyed.
public final class MosquittoClient: Sendable {
    public struct Configuration: Sendable {
        public var url: MQTTURL
        public var clientID: String
        public var keepAlive: Int32 = 10
        public var will: (topic: String, payload: [UInt8], retain: Bool)?
        public var minimumBackoff: Duration = .milliseconds(100)
        public var maximumBackoff: Duration = .seconds(10)
        public var publishTimeout: Duration = .seconds(10)
        /// CA certificates for `mqtts://`.
        public var caPath: String = "/etc/ssl/certs"

        public init(url: MQTTURL, clientID: String) {
            self.url = url
            self.clientID = clientID
        }
    }

    /// `mosquitto_lib_init` must run once per process, before any client exists.
    public static let libraryInitialized: Bool = {
        mosquitto_lib_init()
        return true
    }()

    nonisolated(unsafe) let handle: OpaquePointer
    public let configuration: Configuration
    public let events: AsyncStream<MQTTEvent>
    private let eventSink: AsyncStream<MQTTEvent>.Continuation
    private let tracker = Mutex(PublishTracker<CheckedContinuation<Void, any Error>>())
    private let connectedFlag = Atomic<Bool>(false)
    private let runningFlag = Atomic<Bool>(false)
    private let finished = Mutex<CheckedContinuation<Void, Never>?>(nil)
    private let threadDone = Atomic<Bool>(false)
    private let logger: Logger

    public init(configuration: Configuration, logger: Logger) throws {
        precondition(Self.libraryInitialized)
        guard let handle = mosquitto_new(configuration.clientID, true, nil) else {
            throw MQTTError.library(code: MOSQ_ERR_NOMEM.rawValue, message: "mosquitto_new failed")
        }
        self.handle = handle
        self.configuration = configuration
        self.logger = logger
        (events, eventSink) = AsyncStream.makeStream(of: MQTTEvent.self, bufferingPolicy: .unbounded)

        mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V5))
        mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
        mosquitto_threaded_set(handle, true)
        if let user = configuration.url.username {
            mosquitto_username_pw_set(handle, user, configuration.url.password)
        }
        if configuration.url.tls {
            try Self.check(mosquitto_tls_set(handle, nil, configuration.caPath, nil, nil, nil))
        }
        if let will = configuration.will {
            try will.payload.withUnsafeBytes { buffer in
                try Self.check(mosquitto_will_set_v5(handle, will.topic, Int32(buffer.count), buffer.baseAddress, 1, will.retain, nil))
            }
        }
        mosquitto_user_data_set(handle, Unmanaged.passUnretained(self).toOpaque())
        mosquitto_connect_v5_callback_set(handle, onConnect)
        mosquitto_disconnect_v5_callback_set(handle, onDisconnect)
        mosquitto_publish_v5_callback_set(handle, onPublish)
        mosquitto_message_v5_callback_set(handle, onMessage)
    }

    deinit {
        mosquitto_destroy(handle)
    }

    static func check(_ rc: Int32) throws {
        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
            throw MQTTError.library(code: rc, message: String(cString: mosquitto_strerror(rc)))
        }
    }

    public var isConnected: Bool { connectedFlag.load(ordering: .acquiring) }

    // MARK: - Lifecycle

    /// Starts the network thread; it connects and keeps reconnecting until `shutdown()`.
    public func start() {
        guard !runningFlag.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let thread = Thread { [self] in networkLoop() }
        thread.name = "mqtt-\(configuration.clientID)"
        thread.start()
    }

    /// Sends DISCONNECT (so no Last Will), stops the thread and waits for it, fails pending publishes.
    public func shutdown() async {
        guard runningFlag.exchange(false, ordering: .acquiringAndReleasing) else { return }
        if isConnected { mosquitto_disconnect_v5(handle, 0, nil) }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let alreadyDone = finished.withLock { slot -> Bool in
                if threadDone.load(ordering: .acquiring) { return true }
                slot = continuation
                return false
            }
            if alreadyDone { continuation.resume() }
        }
        failPending(MQTTError.shutDown)
        eventSink.finish()
    }

    private func networkLoop() {
        let url = configuration.url
        var attempt = 0
        var socketOpen = false
        var everConnected = false
        while runningFlag.load(ordering: .acquiring) {
            if !socketOpen {
                let rc = everConnected ? mosquitto_reconnect(handle)
                    : mosquitto_connect_bind_v5(handle, url.host, Int32(url.port), configuration.keepAlive, nil, nil)
                if rc == MOSQ_ERR_SUCCESS.rawValue {
                    socketOpen = true
                    everConnected = true
                } else {
                    if attempt == 0 || attempt % 10 == 0 {
                        logger.info("cannot reach the MQTT broker; retrying", metadata: ["mqtt.url": "\(url)", "error": "\(String(cString: mosquitto_strerror(rc)))"])
                    }
                    pause(attempt)
                    attempt += 1
                    continue
                }
            }
            let rc = mosquitto_loop(handle, 100, 1)
            if isConnected { attempt = 0 }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                socketOpen = false
                connectionLost(reason: rc)
                if runningFlag.load(ordering: .acquiring) {
                    pause(attempt)
                    attempt += 1
                }
            }
        }
        // Let the DISCONNECT that shutdown() queued reach the broker.
        if socketOpen {
            for _ in 0..<10 where mosquitto_loop(handle, 50, 1) == MOSQ_ERR_SUCCESS.rawValue && mosquitto_want_write(handle) {}
        }
        connectionLost(reason: 0)
        let waiter = finished.withLock { slot -> CheckedContinuation<Void, Never>? in
            threadDone.store(true, ordering: .releasing)
            defer { slot = nil }
            return slot
        }
        waiter?.resume()
    }

    /// Capped exponential backoff with jitter (half to all of the capped delay), in small
    /// slices so shutdown is not held up.
    private func pause(_ attempt: Int) {
        let base = Double(configuration.minimumBackoff.components.attoseconds) / 1e18 + Double(configuration.minimumBackoff.components.seconds)
        let cap = Double(configuration.maximumBackoff.components.seconds) + Double(configuration.maximumBackoff.components.attoseconds) / 1e18
        let delay = min(cap, base * pow(2, Double(min(attempt, 20)))) * Double.random(in: 0.5...1.0)
        var slept = 0.0
        while slept < delay && runningFlag.load(ordering: .acquiring) {
            let slice = min(0.05, delay - slept)
            usleep(useconds_t(slice * 1_000_000))
            slept += slice
        }
    }

    private func connectionLost(reason: Int32) {
        if connectedFlag.exchange(false, ordering: .acquiringAndReleasing) {
            failPending(MQTTError.notConnected)
            eventSink.yield(.disconnected(reason: reason))
        }
    }

    private func failPending(_ error: MQTTError) {
        for continuation in tracker.withLock({ $0.removeAll() }) { continuation.resume(throwing: error) }
    }

    // MARK: - Operations

    public func subscribe(_ filters: [String]) throws {
        for filter in filters {
            try Self.check(mosquitto_subscribe_v5(handle, nil, filter, 1, 0, nil))
        }
    }

    public func unsubscribe(_ filters: [String]) throws {
        for filter in filters {
            try Self.check(mosquitto_unsubscribe_v5(handle, nil, filter, nil))
        }
    }

    /// Publishes at QoS 1 and returns once the broker's PUBACK arrives with a success reason code.
    public func publish(_ payload: [UInt8], to topic: String, retain: Bool) async throws {
        guard isConnected else { throw MQTTError.notConnected }
        let mid = MessageIDBox()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                        var messageID: Int32 = 0
                        let rc = payload.withUnsafeBytes { buffer in
                            mosquitto_publish_v5(self.handle, &messageID, topic, Int32(buffer.count), buffer.baseAddress, 1, retain, nil)
                        }
                        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                            continuation.resume(throwing: rc == MOSQ_ERR_NO_CONN.rawValue ? MQTTError.notConnected
                                : MQTTError.library(code: rc, message: String(cString: mosquitto_strerror(rc))))
                            return
                        }
                        mid.value.withLock { $0 = messageID }
                        if let reason = self.tracker.withLock({ $0.register(mid: messageID, continuation) }) {
                            Self.complete(continuation, reason: reason)
                        }
                    }
                } onCancel: {
                    if let id = mid.value.withLock({ $0 }), let continuation = self.tracker.withLock({ $0.remove(mid: id) }) {
                        continuation.resume(throwing: MQTTError.timedOut)
                    }
                }
            }
            group.addTask {
                try await Task.sleep(for: self.configuration.publishTimeout)
                throw MQTTError.timedOut
            }
            defer { group.cancelAll() }
            try await group.next()
        }
    }

    static func complete(_ continuation: CheckedContinuation<Void, any Error>, reason: Int32) {
        if reason >= 0x80 {
            continuation.resume(throwing: MQTTError.refused(reasonCode: Int(reason)))
        } else {
            continuation.resume()
        }
    }

    // MARK: - Callbacks (network thread)

    fileprivate func connected(reason: Int32) {
        if reason == 0 {
            connectedFlag.store(true, ordering: .releasing)
            eventSink.yield(.connected)
        } else {
            logger.warning("the MQTT broker refused the connection", metadata: ["mqtt.reason": "\(reason)"])
        }
    }

    fileprivate func disconnected(reason: Int32) {
        if reason == 0x8E {
            logger.error("MQTT session taken over: another client uses the id \(configuration.clientID)")
        }
        connectionLost(reason: reason)
    }

    fileprivate func published(mid: Int32, reason: Int32) {
        if let continuation = tracker.withLock({ $0.acknowledge(mid: mid, reason: reason) }) {
            Self.complete(continuation, reason: reason)
        }
    }

    fileprivate func received(topic: String, payload: [UInt8], retained: Bool) {
        eventSink.yield(.message(topic: topic, payload: payload, retained: retained))
    }
}

private func client(_ obj: UnsafeMutableRawPointer?) -> MosquittoClient? {
    guard let obj else { return nil }
    return Unmanaged<MosquittoClient>.fromOpaque(obj).takeUnretainedValue()
}

private let onConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = { _, obj, rc, _, _ in
    client(obj)?.connected(reason: rc)
}

private let onDisconnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, OpaquePointer?) -> Void = { _, obj, rc, _ in
    client(obj)?.disconnected(reason: rc)
}

private let onPublish: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = { _, obj, mid, reason, _ in
    client(obj)?.published(mid: mid, reason: reason)
}

private let onMessage: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, UnsafePointer<mosquitto_message>?, OpaquePointer?) -> Void = { _, obj, message, _ in
    guard let client = client(obj), let m = message?.pointee, let topic = m.topic else { return }
    // Copy before returning: libmosquitto frees the message afterwards.
    let payload = m.payloadlen > 0 ? [UInt8](UnsafeRawBufferPointer(start: m.payload, count: Int(m.payloadlen))) : []
    client.received(topic: String(cString: topic), payload: payload, retained: m.retain)
}

/// The message id of one publish, shared between its continuation and its cancellation handler.
private final class MessageIDBox: Sendable {
    let value = Mutex<Int32?>(nil)
}
