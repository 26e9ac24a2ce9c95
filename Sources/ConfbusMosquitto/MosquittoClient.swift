import CMosquitto
import Foundation
import Logging
import Synchronization

public enum MQTTEvent: Sendable {
    /// `maximumPacketSize` is what the broker announced in CONNACK (nil: no limit announced).
    case connected(maximumPacketSize: Int?)
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
        /// Seconds (libmosquitto's minimum is 5); a silent broker is noticed after about 1.5 × this.
        public var keepAlive: Int32 = 5
        /// Announced in CONNECT as our Maximum Packet Size (nil: none), so the broker never sends more.
        public var maximumPacketSize: Int?
        public var will: (topic: String, payload: [UInt8], retain: Bool)?
        public var minimumBackoff: Duration = .milliseconds(100)
        public var maximumBackoff: Duration = .seconds(10)
        public var publishTimeout: Duration = .seconds(10)
        /// CA certificates for `mqtts://`.
        public var caPath: String = "/etc/ssl/certs"
        /// For `mqtts://`: a PEM file of the CAs to trust instead of the system's (`mqtt_ca_file`).
        public var caFile: String?

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
    /// Held around every call that uses the handle from outside the network thread, and around
    /// the re-initialisation between connections, so no publish sees a handle being reset.
    private let handleLock = Mutex(())
    /// Which connection this is: a PUBACK belongs to the connection its publish went out on.
    private let generation = Atomic<Int>(0)
    private let brokerMaximum = Atomic<Int>(0)
    private let takeoverCount = Atomic<Int>(0)
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

        try configure()
    }

    /// Options, credentials, the Last Will and the callbacks: after `mosquitto_new` and after
    /// every `mosquitto_reinitialise` (which clears them all).
    private func configure() throws {
        mosquitto_int_option(handle, MOSQ_OPT_PROTOCOL_VERSION, Int32(MQTT_PROTOCOL_V5))
        mosquitto_int_option(handle, MOSQ_OPT_TCP_NODELAY, 1)
        mosquitto_threaded_set(handle, true)
        if let user = configuration.url.username {
            mosquitto_username_pw_set(handle, user, configuration.url.password)
        }
        if configuration.url.tls {
            // The broker's certificate is verified against the CAs, and its name against the URL's host.
            try Self.check(mosquitto_tls_set(handle, configuration.caFile, configuration.caFile == nil ? configuration.caPath : nil, nil, nil, nil))
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

    /// A fresh session state for the next connection: libmosquitto would otherwise send its own
    /// in-flight messages again after a reconnect, and an older version could land over a newer
    /// retained one. Only the relay decides what is sent again.
    private func resetForNextConnection() {
        handleLock.withLock { _ in
            _ = mosquitto_reinitialise(handle, configuration.clientID, true, nil)
            do {
                try configure()
            } catch {
                logger.error("cannot configure the MQTT client", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The Maximum Packet Size the broker announced on the current connection.
    public var brokerMaximumPacketSize: Int? {
        let n = brokerMaximum.load(ordering: .acquiring)
        return n > 0 ? n : nil
    }

    /// How often another client with our id took the session over: reason 0x8E, or (as mosquitto
    /// 2.0 shows it) a connection closed within seconds, again.
    public var sessionTakeovers: Int { takeoverCount.load(ordering: .relaxed) }

    private func connectProperties() -> OpaquePointer? {
        guard let maximum = configuration.maximumPacketSize, maximum > 0 else { return nil }
        var properties: OpaquePointer?
        mosquitto_property_add_int32(&properties, Int32(MQTT_PROP_MAXIMUM_PACKET_SIZE.rawValue), UInt32(min(maximum, Int(UInt32.max))))
        return properties
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
        var connectedSince: ContinuousClock.Instant?
        var shortLived = 0
        while runningFlag.load(ordering: .acquiring) {
            if !socketOpen {
                if everConnected { resetForNextConnection() }
                var properties = connectProperties()
                let rc = mosquitto_connect_bind_v5(handle, url.host, Int32(url.port), configuration.keepAlive, nil, properties)
                mosquitto_property_free_all(&properties)
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
            if isConnected {
                if connectedSince == nil { connectedSince = .now }
                // The backoff starts over only after a connection that lasted: a session taken over
                // again and again (two nodes with one client id) keeps backing off.
                if let since = connectedSince, ContinuousClock.now - since > .seconds(10) { attempt = 0 }
            }
            if rc != MOSQ_ERR_SUCCESS.rawValue {
                socketOpen = false
                if let since = connectedSince, ContinuousClock.now - since < .seconds(10) {
                    // mosquitto 2.0 closes a taken-over connection before its DISCONNECT 0x8E is
                    // sent, so the client sees only "connection lost": two short-lived connections
                    // in a row are the same takeover loop, and are counted and logged as one.
                    shortLived += 1
                    if shortLived >= 2 { tookOver("connections closed again and again soon after connecting") }
                } else {
                    shortLived = 0
                }
                connectedSince = nil
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
            // Nothing of this connection can be acknowledged any more.
            handleLock.withLock { _ in _ = generation.wrappingAdd(1, ordering: .acquiringAndReleasing) }
            failPending(MQTTError.notConnected)
            eventSink.yield(.disconnected(reason: reason))
        }
    }

    private func failPending(_ error: MQTTError) {
        for continuation in tracker.withLock({ $0.removeAll() }) { continuation.resume(throwing: error) }
    }

    // MARK: - Operations

    public func subscribe(_ filters: [String]) throws {
        try handleLock.withLock { _ in
            for filter in filters {
                try Self.check(mosquitto_subscribe_v5(handle, nil, filter, 1, 0, nil))
            }
        }
    }

    public func unsubscribe(_ filters: [String]) throws {
        try handleLock.withLock { _ in
            for filter in filters {
                try Self.check(mosquitto_unsubscribe_v5(handle, nil, filter, nil))
            }
        }
    }

    /// Publishes at QoS 1 and returns once the broker's PUBACK arrives with a success reason code;
    /// `timeout` (default `publishTimeout`) bounds the wait.
    public func publish(_ payload: [UInt8], to topic: String, retain: Bool, timeout: Duration? = nil) async throws {
        guard isConnected else { throw MQTTError.notConnected }
        let mid = MessageIDBox()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                        var messageID: Int32 = 0
                        // Publish and register under the handle lock, so the generation is the one the
                        // message went out on: an ack of an earlier connection can never complete it.
                        let (rc, connection) = self.handleLock.withLock { _ -> (Int32, Int) in
                            guard self.isConnected else { return (MOSQ_ERR_NO_CONN.rawValue, 0) }
                            let rc = payload.withUnsafeBytes { buffer in
                                mosquitto_publish_v5(self.handle, &messageID, topic, Int32(buffer.count), buffer.baseAddress, 1, retain, nil)
                            }
                            return (rc, self.generation.load(ordering: .acquiring))
                        }
                        guard rc == MOSQ_ERR_SUCCESS.rawValue else {
                            continuation.resume(throwing: rc == MOSQ_ERR_NO_CONN.rawValue ? MQTTError.notConnected
                                : rc == MOSQ_ERR_OVERSIZE_PACKET.rawValue ? MQTTError.tooLarge
                                : MQTTError.library(code: rc, message: String(cString: mosquitto_strerror(rc))))
                            return
                        }
                        mid.value.withLock { $0 = messageID }
                        if let reason = self.tracker.withLock({ $0.register(mid: messageID, generation: connection, continuation) }) {
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
                try await Task.sleep(for: timeout ?? self.configuration.publishTimeout)
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

    fileprivate func connected(reason: Int32, maximumPacketSize: Int?) {
        if reason == 0 {
            brokerMaximum.store(maximumPacketSize ?? 0, ordering: .releasing)
            connectedFlag.store(true, ordering: .releasing)
            eventSink.yield(.connected(maximumPacketSize: maximumPacketSize))
        } else {
            logger.warning("the MQTT broker refused the connection", metadata: ["mqtt.reason": "\(reason)"])
        }
    }

    fileprivate func disconnected(reason: Int32) {
        if reason == 0x8E { tookOver("DISCONNECT 0x8E") }
        connectionLost(reason: reason)
    }

    private func tookOver(_ evidence: String) {
        takeoverCount.wrappingAdd(1, ordering: .relaxed)
        logger.error("MQTT session taken over: another client may use the id \(configuration.clientID); backing off",
                     metadata: ["mqtt.evidence": "\(evidence)"])
    }

    fileprivate func published(mid: Int32, reason: Int32) {
        let connection = generation.load(ordering: .acquiring)
        if let continuation = tracker.withLock({ $0.acknowledge(mid: mid, generation: connection, reason: reason) }) {
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

private let onConnect: @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32, Int32, OpaquePointer?) -> Void = { _, obj, rc, _, properties in
    var maximum: UInt32 = 0
    let announced = properties.flatMap { mosquitto_property_read_int32($0, Int32(MQTT_PROP_MAXIMUM_PACKET_SIZE.rawValue), &maximum, false) } != nil
    client(obj)?.connected(reason: rc, maximumPacketSize: announced && maximum > 0 ? Int(maximum) : nil)
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
