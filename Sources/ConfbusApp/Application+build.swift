import ConfbusCore
import ConfbusEngine
import ConfbusHTTP
import ConfbusMQTT
import ConfbusMosquitto
import ConfbusPostgres
import ConfbusYAML
import Foundation
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL
import Logging
import Metrics
import PostgresNIO
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The composition root: the only place that sees every module. Builds the services in start
/// order (database, listeners, bus, outbox, signals); the HTTP server starts last and stops first.
public func buildApplication(settings: Settings, processEnvironment: [String: String], registry: PrometheusCollectorRegistry,
                             logger: Logger) throws -> some ApplicationProtocol {
    let failpoints = try processEnvironment["CONFBUS_FAILPOINTS"].map(Failpoints.init(parsing:)) ?? Failpoints()
    let database = try DatabaseCluster(url: settings.databaseURL, logger: logger)
    let store = PostgresVersionStore(database: database, logger: logger, failpoints: failpoints, sealer: settings.sealer)
    // A service holds up to three files (schema, defaults, environment).
    let source = FileConfigSource(root: settings.configDir, limits: .init(maxDocumentBytes: settings.maxDocumentBytes),
                                  heldFiles: 3 * settings.cacheServices)
    let resolver = ServiceResolver(
        options: .init(environment: settings.environment, allowSchemaless: settings.allowSchemaless, validator: .init(formatAssertion: true)),
        overrides: OverrideVariables(environment: processEnvironment), compiledSchemas: settings.cacheServices)
    let topics = TopicCodec(prefix: settings.topicPrefix)
    let limits = PublishLimits(maxDocumentBytes: settings.maxDocumentBytes, updateTopicBytes: { topics.update($0).utf8.count })
    let outboxSignal = WakeSignal()
    let distributor = Distributor(options: .init(environment: settings.environment, maxPayloadBytes: settings.maxDocumentBytes, sealer: settings.sealer),
                                  source: source, resolver: resolver, store: store, limits: limits, signal: outboxSignal,
                                  instanceTTL: settings.instanceTTL, logger: logger)
    let readiness = Readiness(brokers: settings.mqttURLs.count)
    let relayStatus = RelayStatus()

    let startedAt = Date()
    // One connection, PUBACK tracking, reconcile and instance inbox per broker (CONTRACT.md §11).
    let gateways = try settings.mqttURLs.enumerated().map { index, url in
        var mqttConfiguration = MosquittoClient.Configuration(url: try MQTTURL(url), clientID: "confbus-\(settings.nodeID)")
        mqttConfiguration.caFile = settings.mqttCAFile
        mqttConfiguration.will = (topics.nodeHealth(settings.nodeID), MQTTGateway.willPayload(node: settings.nodeID, startedAt: startedAt), true)
        // The broker never sends us more than a document may be (CONTRACT.md §6b).
        mqttConfiguration.maximumPacketSize = settings.maxDocumentBytes + 1024
        let mqtt = try MosquittoClient(configuration: mqttConfiguration, logger: logger)
        var options = MQTTGateway.Options(node: settings.nodeID, healthInterval: settings.healthInterval, reconcileInterval: settings.reconcileInterval)
        options.broker = index
        return MQTTGateway(client: mqtt, topics: topics, distributor: distributor, outbox: store, status: readiness, relay: relayStatus,
                           options: options, logger: logger,
                           // A file change lost with the old primary is committed again on top of the repair.
                           afterRepair: { [reloader = distributor.reloader] in _ = try? await reloader.reload(reason: "after a divergence repair") })
    }
    let brokers = BrokerFanOut(gateways)
    let relay = OutboxRelay(store: store, publisher: brokers, signal: outboxSignal, status: relayStatus,
                            readiness: readiness, options: .init(node: settings.nodeID), failpoints: failpoints, logger: logger,
                            handoff: distributor.pipeline.handoff)

    let router = Router(context: ConfbusRequestContext.self, options: .autoGenerateHeadEndpoints)
    ConfbusAPI(distributor: distributor, readiness: readiness, adminTokens: settings.adminTokens, readTokens: settings.readTokens,
               registry: registry, maxBodyBytes: settings.maxDocumentBytes, rateLimit: settings.rateLimit,
               parseYAML: { [limits = YAMLLoader.Limits(maxDocumentBytes: settings.maxDocumentBytes)] bytes in
                   try YAMLLoader(limits: limits).load(bytes: bytes, file: "request body", requireMapping: true).value
               }).addRoutes(to: router)

    let server: HTTPServerBuilder = if let tls = settings.tls {
        try .tls(.http1(), tlsConfiguration: .makeServerConfiguration(
            certificateChain: try NIOSSLCertificate.fromPEMFile(tls.certificateFile).map { .certificate($0) },
            privateKey: .privateKey(try NIOSSLPrivateKey(file: tls.keyFile, format: .pem))))
    } else {
        .http1()
    }
    return Application(
        router: router,
        server: server,
        configuration: .init(address: .hostname(settings.httpHost, port: settings.httpPort), serverName: "confbus"),
        services: [
            database,
            Startup(distributor: distributor, instances: store, readiness: readiness,
                    options: .init(refreshInterval: settings.reconcileInterval, instanceTTL: settings.instanceTTL), logger: logger,
                    // Finds the primary among database_url's hosts (or confirms the one), every second;
                    // each host has less time to answer than the whole probe (Startup's probeTimeout).
                    probe: { try await database.probe(timeout: .milliseconds(1500)) },
                    migrate: {
                        try await Migrations.run(on: try database.primary(), logger: logger)
                        try await store.checkSecretKey()
                    },
                    databaseGeneration: { database.generation }),
            VersionListener(database: database, reads: distributor.reads, logger: logger),
        ] + gateways.map { $0 as any Service } + [
            relay,
            RolloutDriver(rollouts: distributor.rollouts, store: store, publisher: brokers, relay: relayStatus, readiness: readiness,
                          reloader: distributor.reloader, logger: logger),
            HangupReload(reloader: distributor.reloader, logger: logger),
            GaugePoller(store: store, readiness: readiness, relay: relayStatus, reads: distributor.reads, board: distributor.rollouts.board),
        ],
        logger: logger
    )
}

/// SIGHUP reads the config tree again, as `POST /v1/reload` does.
struct HangupReload: Service {
    let reloader: TreeReload
    let logger: Logger

    func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        await cancelWhenGracefulShutdown {
            for await _ in signals {
                do {
                    let report = try await reloader.reload(author: "SIGHUP", reason: "SIGHUP")
                    logger.info("reloaded on SIGHUP", metadata: ["committed": "\(report.committed.count)"])
                } catch {
                    logger.warning("reload on SIGHUP failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }
}

/// Gauges that are read rather than counted: outbox depth and age, connection state; the outbox
/// figures also feed the health payload.
struct GaugePoller: Service {
    let store: any OutboxStore
    let readiness: Readiness
    let relay: RelayStatus
    let reads: ConfigReads
    let board: RolloutBoard

    func run() async throws {
        let outbox = Gauge(label: "confbus_outbox_depth")
        let oldest = Gauge(label: "confbus_outbox_oldest_age_seconds")
        let database = Gauge(label: "confbus_database_connected")
        let mqtt = Gauge(label: "confbus_mqtt_connected")
        let services = Gauge(label: "confbus_services")
        let waiters = Gauge(label: "confbus_long_poll_waiters")
        let rollouts = Gauge(label: "confbus_rollouts_running")
        let lagging = Gauge(label: "confbus_lagging_instances")
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                database.record(readiness.database ? 1 : 0)
                mqtt.record(readiness.mqtt ? 1 : 0)
                services.record(reads.all.count)
                waiters.record(reads.waiterCount)
                rollouts.record(board.all.count)
                if readiness.database, let counts = try? await reads.instanceCounts() {
                    lagging.record(counts.values.reduce(0) { $0 + $1.lagging })
                }
                if readiness.database, let status = try? await store.outboxStatus() {
                    outbox.record(status.backlog)
                    oldest.record(status.oldestAge ?? 0)
                    relay.setOutbox(status)
                }
                if readiness.database, let diverged = try? await reads.divergedServices() {
                    relay.setDiverged(diverged.keys.sorted())
                }
                try? await Task.sleep(for: .seconds(2))
            }
        }
    }
}
