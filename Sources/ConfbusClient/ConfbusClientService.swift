import AsyncHTTPClient
import ConfbusCore
import ConfbusMosquitto
import ConfbusSchema
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The client of CONTRACT.md §9 as a swift-service-lifecycle `Service`: it starts from the verified
/// cache, pulls, then follows `config/update/<service>` over MQTT (registering with the version it
/// holds, acking every decision, its health retained with a Last Will `offline`), long-polls while
/// MQTT is down, and feeds every version the application accepts to `provider`.
public final class ConfbusClientService: Service, Sendable {
    public enum StartupPolicy: Sendable, Equatable {
        /// Start only with a document from the server: throw when it has not answered within `serverWait`.
        case requireServer
        /// Wait up to `maxWait` for the server, then go on with the cached document (or throw without one).
        case lastKnownGood(maxWait: Duration)
        /// Go on at once with whatever is held, even nothing (lower-priority providers supply defaults).
        case empty
    }

    public enum Verdict: Sendable, Equatable {
        case accept
        /// Not applied; the reason goes back in the `rejected` ack.
        case reject(String)
    }

    public struct Configuration: Sendable {
        public var service: String
        public var instance: String
        /// `http://host:port` of a confbus node; nil for MQTT only.
        public var serverURL: String?
        public var mqttURL: String?
        /// Several brokers that each carry every version (confbus's `mqtt_urls`, CONTRACT.md §11):
        /// the client uses one at a time and moves to the next after `brokerFailover` without a
        /// connection. Empty: `mqttURL` alone.
        public var mqttURLs: [String] = []
        /// How long the broker in use may stay unreachable before the next one is tried.
        public var brokerFailover: Duration = .seconds(5)
        public var mqttCAFile: String?
        /// A read token (scoped to the service, so that its secrets come in full).
        public var token: String?
        public var topicPrefix = "config"
        public var environment: String?
        public var cacheDirectory: String?
        public var startup: StartupPolicy = .lastKnownGood(maxWait: .seconds(10))
        public var healthInterval: Duration = .seconds(30)
        /// While MQTT is up, how often the server is asked whether a push was lost (an ETag check).
        public var recheckInterval: Duration = .seconds(30)
        public var longPollSeconds = 55
        /// How long `requireServer` keeps trying before it gives up.
        public var serverWait: Duration = .seconds(30)
        /// Take part in progressive rollouts (CONTRACT.md §8): register with `"features": ["rollout"]`
        /// and apply a candidate from `config/rollout/<service>` when this instance is in its cohort.
        public var takesPartInRollouts = true

        /// `mqttURLs`, or `mqttURL` alone.
        var brokers: [String] { mqttURLs.isEmpty ? (mqttURL.map { [$0] } ?? []) : mqttURLs }

        public init(service: String, instance: String, serverURL: String? = nil, mqttURL: String? = nil) {
            self.service = service
            self.instance = instance
            self.serverURL = serverURL
            self.mqttURL = mqttURL
        }
    }

    public struct StartupFailure: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    public let configuration: Configuration
    public let provider: ConfbusProvider
    private let applier: Applier
    private let logger: Logger
    private let http: HTTPClient
    private let started = Mutex(false)

    public init(configuration: Configuration, logger: Logger,
                accept: @escaping @Sendable (ClientDocument) async -> Verdict = { _ in .accept }) {
        self.configuration = configuration
        self.logger = logger
        self.provider = ConfbusProvider(service: configuration.service)
        // The process-wide client: it needs no shutdown, so a client that only starts leaks nothing.
        self.http = HTTPClient.shared
        self.applier = Applier(service: configuration.service, cache: configuration.cacheDirectory.map {
            DocumentCache(directory: $0, service: configuration.service)
        }, provider: provider, accept: accept, logger: logger)
    }

    /// The version held (0 before any).
    public var heldVersion: Int { provider.version }

    /// Documents dropped so far, by reason.
    public func dropped() async -> [ClientDocument.Refusal: Int] { await applier.dropped() }

    // MARK: Start

    /// The cache, then the server, as the start-up policy says. `run` calls it unless it was called.
    public func start() async throws {
        guard started.withLock({ was in defer { was = true }; return !was }) else { return }
        let cached = await applier.loadCache()
        guard configuration.serverURL != nil else {
            if configuration.startup == .requireServer || (!cached && configuration.startup != .empty) {
                throw StartupFailure(description: "no server to pull \(configuration.service) from, and nothing cached")
            }
            return
        }
        let deadline: ContinuousClock.Instant? = switch configuration.startup {
        case .requireServer: .now + configuration.serverWait
        case .lastKnownGood(let wait): .now + wait
        case .empty: nil
        }
        guard let deadline else {
            _ = try? await pull(wait: nil, timeout: .seconds(2))
            return
        }
        var backoff: Duration = .milliseconds(200)
        var refusal: StartupFailure?
        while true {
            do {
                try await pull(wait: nil, timeout: max(deadline - .now, .milliseconds(200)))
                return
            } catch let failure as StartupFailure {
                refusal = failure
            } catch {}
            if ContinuousClock.now >= deadline { break }
            try await Task.sleep(for: min(backoff, deadline - .now))
            backoff = min(backoff * 2, .seconds(5))
        }
        if configuration.startup == .requireServer || !cached {
            // What the server said, when it answered (a masked document, a 404), is the reason to show.
            throw refusal ?? StartupFailure(description: "confbus did not answer for \(configuration.service)\(cached ? "" : ", and nothing is cached")")
        }
        logger.warning("confbus did not answer; starting from the cached document", metadata: ["confbus.version": "\(heldVersion)"])
    }

    /// One pull (a long-poll with `wait`): true when the server answered (200 or 304).
    @discardableResult
    func pull(wait: Int?, timeout: Duration? = nil) async throws -> Bool {
        guard let server = configuration.serverURL else { return false }
        var url = "\(server)/v1/config/\(configuration.service)?instance=\(configuration.instance)"
        if let wait { url += "&wait=\(wait)&after=\(heldVersion)" }
        var request = HTTPClientRequest(url: url)
        if let token = configuration.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        // A plain pull is an ETag check: the document held is answered 304, not sent again.
        if wait == nil, let checksum = await applier.heldChecksum() { request.headers.add(name: "If-None-Match", value: "\"\(checksum)\"") }
        // AsyncHTTPClient retries a refused connection until the deadline: the deadline is the caller's.
        let limit = timeout ?? .seconds((wait ?? 0) + 10)
        let response = try await http.execute(request, timeout: TimeAmount(limit))
        let body = try await response.body.collect(upTo: 64 << 20)
        switch response.status.code {
        case 200 where response.headers.first(name: "Confbus-Masked") == "true":
            // Its checksum is of the real secrets: this document can never verify, nor be used.
            await applier.droppedMasked()
            throw StartupFailure(description: "confbus masked the secrets of \(configuration.service): the client needs a read token scoped to it (or an admin token)")
        case 200:
            // The first document from the server comes with the schema's secret members.
            if !(await applier.secretsFetched) { await refreshSecrets() }
            await deliver(Array(buffer: body), via: wait == nil ? "pull" : "long-poll")
            return true
        case 304:
            if !(await applier.secretsFetched) { await refreshSecrets() }
            return true
        default:
            throw StartupFailure(description: "GET \(configuration.service) answered \(response.status.code)")
        }
    }

    // MARK: Run

    public func run() async throws {
        try await start()
        logger.debug("client started", metadata: ["confbus.version": "\(heldVersion)"])
        let brokers = try configuration.brokers.map { try MQTTURL($0) }
        guard !brokers.isEmpty else {
            // HTTP only: long-poll until shutdown.
            await cancelWhenGracefulShutdown { await self.longPollWhile { true } }
            return
        }
        var index = 0
        while true {
            let client = try await connect(to: brokers[index])
            let movedOn = await cancelWhenGracefulShutdown {
                await withTaskGroup(of: Bool.self) { group in
                    group.addTask { await self.follow(client); return false }
                    group.addTask { await self.longPollWhile { !client.isConnected }; return false }
                    group.addTask { await self.recheck(client); return false }
                    group.addTask { await self.reportHealth(client); return false }
                    if brokers.count > 1 { group.addTask { await self.unreachable(client) } }
                    let first = await group.next() ?? false
                    group.cancelAll()
                    return first
                }
            }
            guard movedOn == true, !Task.isCancelled else {
                // Stopping: say so (the Will covers a crash), then leave.
                try? await client.publish(Self.health("offline", version: heldVersion), to: healthTopic, retain: true, timeout: .seconds(2))
                await client.shutdown()
                return
            }
            await client.shutdown()
            index = (index + 1) % brokers.count
            logger.warning("broker unreachable; moving to the next", metadata: ["mqtt.url": "\(brokers[index])"])
        }
    }

    private func connect(to broker: MQTTURL) async throws -> MosquittoClient {
        var mqtt = MosquittoClient.Configuration(url: broker, clientID: configuration.instance)
        mqtt.caFile = configuration.mqttCAFile
        mqtt.will = (healthTopic, Self.health("offline"), true)
        mqtt.maximumBackoff = .seconds(5)
        let client = try MosquittoClient(configuration: mqtt, logger: logger)
        await applier.attach(client, ackTopic: "\(configuration.topicPrefix)/ack/\(configuration.service)/\(configuration.instance)")
        client.start()
        return client
    }

    /// Returns (true) once `client` has been without a connection for `brokerFailover` on end.
    private func unreachable(_ client: MosquittoClient) async -> Bool {
        var since: ContinuousClock.Instant? = .now
        while !Task.isCancelled {
            if client.isConnected {
                since = nil
            } else if let start = since {
                if ContinuousClock.now - start >= configuration.brokerFailover { return true }
            } else {
                since = .now
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return false
    }

    /// The held document's config (nil before any).
    public var heldConfig: JSONValue? {
        guard let snapshot = provider.snapshot() as? ConfbusSnapshot, snapshot.version > 0 else { return nil }
        return snapshot.config
    }

    var updateTopic: String { "\(configuration.topicPrefix)/update/\(configuration.service)" }
    var rolloutTopic: String { "\(configuration.topicPrefix)/rollout/\(configuration.service)" }

    /// The instances a rollout document is for (nil when it is not one).
    static func cohort(of payload: [UInt8]) -> Set<String>? {
        guard !payload.isEmpty, case .array(let members)? = (try? JSONParser().parse(payload))?["cohort"] else { return nil }
        return Set(members.compactMap(\.stringValue))
    }
    var healthTopic: String { "\(configuration.topicPrefix)/health/\(configuration.service)/\(configuration.instance)" }

    /// The retained health message: with the version held, so that confbus learns it even when an
    /// ack was lost (confbus away from the broker when it was sent): retained messages reach it on return.
    static func health(_ status: String, version: Int = 0) -> [UInt8] {
        var body: [String: JSONValue] = ["status": .string(status)]
        if version > 0 { body["version"] = .integer(version) }
        return JSONValue.object(body).serializedBytes()
    }

    /// MQTT: on every (re)connect subscribe, register with the version held and say `online`; then every update.
    private func follow(_ client: MosquittoClient) async {
        for await event in client.events {
            switch event {
            case .connected:
                do {
                    try client.subscribe(configuration.takesPartInRollouts ? [updateTopic, rolloutTopic] : [updateTopic])
                    var registration: [String: JSONValue] = ["instance": .string(configuration.instance)]
                    if configuration.takesPartInRollouts { registration["features"] = ["rollout"] }
                    if heldVersion > 0 { registration["version"] = .integer(heldVersion) }
                    if let environment = configuration.environment { registration["environment"] = .string(environment) }
                    try await client.publish(JSONValue.object(registration).serializedBytes(),
                                             to: "\(configuration.topicPrefix)/register/\(configuration.service)", retain: false)
                    try await client.publish(Self.health("online", version: heldVersion), to: healthTopic, retain: true)
                    // A decision made before MQTT was up (the pull at start) is acked now.
                    await applier.flushPendingAck()
                } catch {
                    logger.debug("registration not sent", metadata: ["error": "\(error)"])
                }
            case .message(let topic, let payload, _) where topic == updateTopic:
                await deliver(payload, via: "mqtt")
            case .message(let topic, let payload, _) where topic == rolloutTopic && configuration.takesPartInRollouts:
                // A candidate is for its cohort only; an empty message is a rollout that ended (the
                // released version, or the rollback, comes on the update topic).
                if Self.cohort(of: payload)?.contains(configuration.instance) == true { await deliver(payload, via: "rollout") }
            case .message, .disconnected:
                break
            }
        }
    }

    /// Long-polls while `condition` holds (MQTT down, or no MQTT at all), with backoff on errors.
    private func longPollWhile(_ condition: @Sendable () -> Bool) async {
        var backoff: Duration = .milliseconds(500)
        while !Task.isCancelled {
            guard condition(), configuration.serverURL != nil else {
                try? await Task.sleep(for: .milliseconds(500))
                continue
            }
            do {
                try await pull(wait: configuration.longPollSeconds)
                backoff = .milliseconds(500)
            } catch {
                try? await Task.sleep(for: backoff)
                backoff = min(backoff * 2, .seconds(30))
            }
        }
    }

    /// While MQTT is up: a pull now and then, in case a push was lost.
    private func recheck(_ client: MosquittoClient) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.recheckInterval)
            if client.isConnected { _ = try? await pull(wait: nil) }
        }
    }

    private func reportHealth(_ client: MosquittoClient) async {
        while !Task.isCancelled {
            try? await Task.sleep(for: configuration.healthInterval)
            if client.isConnected { try? await client.publish(Self.health("online", version: heldVersion), to: healthTopic, retain: true) }
        }
    }

    private func deliver(_ bytes: [UInt8], via source: String) async {
        // A new version may come from a new schema: which members are secret is asked again.
        if await applier.offer(bytes, source: source) && source != "pull" { await refreshSecrets() }
    }

    /// Which members the service's schema marks secret (`writeOnly`, `x-confbus-secret`), from
    /// `GET /v1/schemas/<service>` and found by the same schema code as the server's: their values
    /// come back `isSecret`. Best effort: without an answer the paths known before stay.
    func refreshSecrets() async {
        guard let server = configuration.serverURL else { return }
        var request = HTTPClientRequest(url: "\(server)/v1/schemas/\(configuration.service)")
        if let token = configuration.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        do {
            let response = try await http.execute(request, timeout: .seconds(5))
            let body = try await response.body.collect(upTo: 16 << 20)
            switch response.status.code {
            case 200:
                let schema = try CompiledSchema(try JSONParser().parse(Array(buffer: body)), uri: "urn:confbus:service:\(configuration.service)")
                await applier.useSecrets(Redaction(paths: schema.secretPaths))
            case 404:
                // No schema (or none this token may see): nothing is marked.
                await applier.useSecrets(Redaction(paths: []))
            default:
                logger.debug("the schema was not read", metadata: ["status": "\(response.status.code)"])
            }
        } catch {
            logger.debug("the schema was not read", metadata: ["error": "\(error)"])
        }
    }
}

/// Takes documents one at a time, whatever their source, so versions are applied in order.
actor Applier {
    private var state: ClientState
    private let cache: DocumentCache?
    private let provider: ConfbusProvider
    private let accept: @Sendable (ClientDocument) async -> ConfbusClientService.Verdict
    private let logger: Logger
    private var client: MosquittoClient?
    private var ackTopic = ""
    /// The members the schema marks secret, as last read from the server (or the cache).
    private var secrets = Redaction(paths: [])
    private(set) var secretsFetched = false

    init(service: String, cache: DocumentCache?, provider: ConfbusProvider,
         accept: @escaping @Sendable (ClientDocument) async -> ConfbusClientService.Verdict, logger: Logger) {
        self.state = ClientState(service: service)
        self.cache = cache
        self.provider = provider
        self.accept = accept
        self.logger = logger
    }

    func attach(_ client: MosquittoClient, ackTopic: String) {
        self.client = client
        self.ackTopic = ackTopic
    }

    func dropped() -> [ClientDocument.Refusal: Int] { state.dropped }

    func heldChecksum() -> String? { state.held?.checksum }

    func droppedMasked() {
        if state.dropped[.masked] == nil {
            logger.warning("confbus masks this service's secrets for this client: give it a read token scoped to the service",
                           metadata: ["reason": "masked"])
        }
        state.drop(.masked)
    }

    /// Starts from the cached document when it verifies; true when there was one.
    func loadCache() -> Bool {
        switch cache?.load() {
        case .success(let document)?:
            if let paths = cache?.loadSecrets() { secrets = Redaction(paths: paths) }
            state.applied(document)
            provider.apply(snapshot(document))
            logger.info("loaded the cached document", metadata: ["confbus.version": "\(document.version)"])
            return true
        case .failure(let refusal)?:
            logger.warning("the cached document is not used", metadata: ["reason": "\(refusal.rawValue)"])
            return false
        case nil:
            return false
        }
    }

    /// The offer being handled: the next one waits for it (an actor alone would let a second copy of a
    /// version, from MQTT and a long-poll at once, in while the first waits for the accept hook).

    private var tail: Task<Bool, Never>?

    /// True when the document was applied.
    func offer(_ bytes: [UInt8], source: String) async -> Bool {
        let previous = tail
        let task = Task { _ = await previous?.value; return await self.handle(bytes, source: source) }
        tail = task
        return await task.value
    }

    private func snapshot(_ document: ClientDocument) -> ConfbusSnapshot {
        ConfbusSnapshot(providerName: provider.providerName, version: document.version, config: document.config, secrets: secrets)
    }

    /// From now on the values under `paths` are secret; the snapshot held is made again when that changes.
    func useSecrets(_ redaction: Redaction) {
        secretsFetched = true
        guard redaction != secrets else { return }
        secrets = redaction
        do { try cache?.storeSecrets(redaction.paths) } catch {
            logger.error("the secret paths could not be cached", metadata: ["error": "\(error)"])
        }
        if let held = state.held { provider.apply(snapshot(held)) }
    }

    private func handle(_ bytes: [UInt8], source: String) async -> Bool {
        let document: ClientDocument
        switch state.candidate(bytes) {
        case .success(let d): document = d
        case .failure(.stale): return false
        case .failure(let refusal):
            logger.warning("dropped a document", metadata: ["reason": "\(refusal.rawValue)", "source": "\(source)"])
            return false
        }
        switch await accept(document) {
        case .reject(let reason):
            logger.info("the application refused a version", metadata: ["confbus.version": "\(document.version)"])
            await ack(document.version, "rejected", detail: String(reason.trimmingCharacters(in: .whitespacesAndNewlines).prefix(500)))
            return false
        case .accept:
            if let cache {
                do { try cache.store(document) } catch {
                    logger.error("the document could not be cached", metadata: ["error": "\(error)"])
                }
            }
            state.applied(document)
            provider.apply(snapshot(document))
            logger.info("applied a version", metadata: ["confbus.version": "\(document.version)", "source": "\(source)"])
            await ack(document.version, "applied", detail: nil)
            return true
        }
    }

    /// The last decision not yet acked because MQTT was not up.
    private var pendingAck: (version: Int, status: String, detail: String?)?

    func flushPendingAck() async {
        guard let pending = pendingAck else { return }
        pendingAck = nil
        await ack(pending.version, pending.status, detail: pending.detail)
    }

    private func ack(_ version: Int, _ status: String, detail: String?) async {
        guard let client, client.isConnected else {
            pendingAck = (version, status, detail)
            return
        }
        // An older decision still waiting for the connection is superseded by this one: sent after
        // it (by the reconnect's flush), it would tell confbus the instance went back a version.
        if let pending = pendingAck, pending.version <= version { pendingAck = nil }
        var body: [String: JSONValue] = ["version": .integer(version), "status": .string(status)]
        if let detail { body["detail"] = .string(detail) }
        do { try await client.publish(JSONValue.object(body).serializedBytes(), to: ackTopic, retain: false) } catch {
            pendingAck = (version, status, detail)
            logger.debug("ack not sent", metadata: ["error": "\(error)"])
        }
    }
}
