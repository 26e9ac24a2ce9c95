import ArgumentParser
import ConfbusApp
import ConfbusEngine
import ConfbusMQTT
import ConfbusMosquitto
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus

/// `confbus serve`: the distributor.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the distributor: resolve, store in PostgreSQL, publish on MQTT, serve HTTP.",
        discussion: "Every option can also be set as a CONFBUS_* variable or in <config-dir>/confbus.yaml (flags win)."
    )

    @Option(help: "postgres://user:password@host:port/database") var databaseURL: String?
    @Option(help: "mqtt://[user:pass@]host:port or mqtts://…") var mqttURL: String?
    @Option(help: "Several brokers, comma-separated: every version is published to each (instead of --mqtt-url).") var mqttUrls: String?
    @Option(help: "For mqtts://: a PEM file of the CAs to trust instead of the system's.") var mqttCaFile: String?
    @Option(help: "The environment whose <environment>.yaml applies.") var environment: String?
    @Option(help: "The config tree.") var configDir: String?
    @Option(help: "HTTP listen address.") var httpHost: String?
    @Option(help: "HTTP port.") var httpPort: Int?
    @Option(help: "PEM certificate chain: the API is served over HTTPS (with --tls-key-file).") var tlsCertFile: String?
    @Option(help: "PEM private key of --tls-cert-file.") var tlsKeyFile: String?
    @Option(help: "MQTT topic prefix.") var topicPrefix: String?
    @Option(help: "This node's id (client id and health topic).") var nodeId: String?
    @Option(help: "Seconds, or a number with ms, s or m.") var healthInterval: String?
    @Option(help: "Seconds, or a number with ms, s or m.") var reconcileInterval: String?
    @Option(help: "How long an instance may stay silent before it is forgotten (default 24h: 86400s).") var instanceTTL: String?
    @Option(help: "Comma-separated name=secret entries.") var adminTokens: String?
    @Option(help: "Comma-separated name[:svc|svc]=secret entries.") var readTokens: String?
    @Option(help: "Largest document, HTTP body or MQTT payload, in bytes.") var maxDocumentBytes: Int?
    @Option(help: "HTTP requests a second per token (bursts of twice that); 0 for no limit.") var rateLimit: Int?
    @Option(help: "How many services' parsed files and compiled schemas stay in memory (default 1000).") var cacheServices: Int?
    @Flag(help: "Distribute services without a schema.") var allowSchemaless = false
    @Option(help: "A file of 32 random bytes in base64 (`confbus secrets keygen`): secret values are stored sealed under it.") var secretKeyFile: String?
    @Option(help: "trace, debug, info, notice, warning, error, critical") var logLevel: String?
    @Option(help: "text or json") var logFormat: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        var flags: [String: String] = [:]
        let options: [(String, String?)] = [
            ("database_url", databaseURL), ("mqtt_url", mqttURL), ("mqtt_urls", mqttUrls), ("mqtt_ca_file", mqttCaFile), ("tls_cert_file", tlsCertFile), ("tls_key_file", tlsKeyFile), ("environment", self.environment), ("http_host", httpHost),
            ("http_port", httpPort.map(String.init)), ("topic_prefix", topicPrefix), ("node_id", nodeId),
            ("health_interval", healthInterval), ("reconcile_interval", reconcileInterval), ("instance_ttl", instanceTTL), ("admin_tokens", adminTokens),
            ("read_tokens", readTokens), ("max_document_bytes", maxDocumentBytes.map(String.init)), ("rate_limit", rateLimit.map(String.init)),
            ("cache_services", cacheServices.map(String.init)),
            ("allow_schemaless", allowSchemaless ? "true" : nil), ("secret_key_file", secretKeyFile), ("log_level", logLevel), ("log_format", logFormat),
        ]
        for case (let key, let value?) in options { flags[key] = value }
        let configDir = configDir ?? environment["CONFBUS_CONFIG_DIR"] ?? "config"
        let settings: Settings
        do {
            settings = try Settings(config: try await Settings.reader(flags: flags, environment: environment, configDir: configDir),
                                    configDir: configDir)
        } catch let error as Settings.Invalid {
            throw ValidationError(error.description)
        }

        // A supervisor may start us with signals blocked (a thread pool's mask is inherited
        // through fork and exec); SIGTERM, SIGINT and SIGHUP must reach the lifecycle.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&unblock, signal) }
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)

        // The process's only globals: logging, metrics and libmosquitto, set up once, here.
        LoggingSystem.bootstrap { label in
            var handler: any LogHandler = settings.logFormat == .json ? JSONLogHandler(label: label) : StreamLogHandler.standardError(label: label)
            handler.logLevel = settings.logLevel
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        _ = MosquittoClient.libraryInitialized

        let logger = Logger(label: "confbus")
        logger.info("starting confbus", metadata: ["settings": "\(settings.redactedDescription)"])
        let app = try buildApplication(settings: settings, processEnvironment: environment, registry: registry, logger: logger)
        try await app.runService()
    }
}

/// One JSON object per line, for log shippers (`log_format: json`).
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var object: [String: Any] = [
            "time": Timestamp.format(Date()), "level": event.level.rawValue,
            "label": label, "message": "\(event.message)",
        ]
        for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }) { object[key] = "\(value)" }
        if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) {
            FileHandle.standardError.write(data + Data([0x0A]))
        }
    }
}
