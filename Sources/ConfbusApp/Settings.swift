import ConfbusCore
import Configuration
import Foundation
import Logging
import SystemPackage

/// The distributor's settings (CONTRACT.md §6), read once at start-up and passed down.
///
/// ## Configuration keys
/// `database_url` (secret), `mqtt_url` (secret: it may hold a password), `mqtt_ca_file` (for
/// `mqtts://`, the CAs to trust instead of the system's), `tls_cert_file` and `tls_key_file` (PEM: the
/// API is served over HTTPS), `environment`
/// (development), `config_dir` (config), `http_host` (127.0.0.1), `http_port` (8080),
/// `topic_prefix` (config), `node_id` (the host name), `health_interval` (10s),
/// `reconcile_interval` (30s), `admin_tokens`, `read_tokens` (secret lists), `max_document_bytes`
/// (1 MiB), `rate_limit` (1000 requests a second per token, 0 for none), `cache_services` (1000: how
/// many services' parsed files and compiled schemas stay in memory), `allow_schemaless` (false), `instance_ttl` (24h of silence before an instance is
/// forgotten), `secret_key_file` (a file holding 32 random bytes in base64: secret values are
/// stored sealed under it), `log_level` (info), `log_format` (text|json).
/// Precedence: flags, then `CONFBUS_*` variables, then `<config_dir>/confbus.yaml`, then defaults.
public struct Settings: Sendable {
    public var databaseURL: String
    /// Every broker to publish to (`mqtt_urls`, CONTRACT.md §11); `[mqtt_url]` unless set.
    public var mqttURLs: [String]
    /// For `mqtts://`: the CAs to trust (PEM) instead of the system's.
    public var mqttCAFile: String?
    /// HTTPS for the API: a PEM certificate chain and its private key (`tls_cert_file`, `tls_key_file`).
    public var tls: (certificateFile: String, keyFile: String)?
    public var environment: String
    public var configDir: String
    public var httpHost: String
    public var httpPort: Int
    public var topicPrefix: String
    public var nodeID: String
    public var healthInterval: Duration
    public var reconcileInterval: Duration
    public var instanceTTL: Duration
    public var adminTokens: [AccessToken]
    public var readTokens: [AccessToken]
    public var maxDocumentBytes: Int
    /// HTTP requests a second per token (bursts of twice that); 0 turns the limit off.
    public var rateLimit: Int
    /// How many services' parsed files and compiled schemas are kept in memory (`cache_services`):
    /// the least recently used past that are read and compiled again when next written.
    public var cacheServices: Int
    public var allowSchemaless: Bool
    /// The key of `secret_key_file`: with one, every secret value is stored sealed (AES-256-GCM).
    public var sealer: SecretSealer?
    public var logLevel: Logger.Level
    public var logFormat: LogFormat

    public enum LogFormat: String, Sendable { case text, json }

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// The providers in precedence order. `flags` holds the command line's options by key.
    public static func reader(flags: [String: String], environment: [String: String], configDir: String) async throws -> ConfigReader {
        var values: [AbsoluteConfigKey: ConfigValue] = [:]
        for (key, value) in flags {
            values[AbsoluteConfigKey([key])] = ConfigValue(.string(value), isSecret: secretKeys.contains(key))
        }
        let path = (configDir as NSString).appendingPathComponent("confbus.yaml")
        return ConfigReader(providers: [
            InMemoryProvider(name: "flags", values: values),
            EnvironmentVariablesProvider(environmentVariables: environment,
                                         secretsSpecifier: .specific(["CONFBUS_DATABASE_URL", "CONFBUS_MQTT_URL", "CONFBUS_MQTT_URLS", "CONFBUS_ADMIN_TOKENS", "CONFBUS_READ_TOKENS"]))
                .prefixKeys(with: "confbus"),
            try await FileProvider<YAMLSnapshot>(filePath: FilePath(path), allowMissing: true),
        ])
    }

    static let secretKeys: Set<String> = ["database_url", "mqtt_url", "mqtt_urls", "admin_tokens", "read_tokens"]

    public init(config: ConfigReader, configDir: String, hostName: String = ProcessInfo.processInfo.hostName) throws {
        func text(_ key: String) -> String? {
            let secret = Self.secretKeys.contains(key)
            if let s = config.string(forKey: ConfigKey(key), isSecret: secret) { return s }
            if let i = config.int(forKey: ConfigKey(key), isSecret: secret) { return String(i) }
            if let b = config.bool(forKey: ConfigKey(key), isSecret: secret) { return String(b) }
            return nil
        }
        func list(_ key: String) -> [String] {
            if let array = config.stringArray(forKey: ConfigKey(key), isSecret: true) { return array }
            return text(key)?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } ?? []
        }
        func integer(_ key: String, _ defaultValue: Int, range: ClosedRange<Int>) throws -> Int {
            guard let raw = text(key) else { return defaultValue }
            guard let value = Int(raw), range.contains(value) else {
                throw Invalid(description: "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound), not \"\(raw)\"")
            }
            return value
        }
        func duration(_ key: String, _ defaultValue: Duration) throws -> Duration {
            guard let raw = text(key) else { return defaultValue }
            guard let value = Self.parseDuration(raw), value > .zero else {
                throw Invalid(description: "\(key) must be seconds or a number with ms, s or m (\"30s\"), not \"\(raw)\"")
            }
            return value
        }

        databaseURL = text("database_url") ?? "postgres://confbus:confbus@127.0.0.1:5432/confbus"
        let brokers = list("mqtt_urls")
        mqttURLs = brokers.isEmpty ? [text("mqtt_url") ?? "mqtt://127.0.0.1:1883"] : brokers
        guard Set(mqttURLs).count == mqttURLs.count else { throw Invalid(description: "mqtt_urls names a broker twice") }
        mqttCAFile = text("mqtt_ca_file")
        switch (text("tls_cert_file"), text("tls_key_file")) {
        case (nil, nil): tls = nil
        case (let cert?, let key?):
            for file in [cert, key] where !FileManager.default.isReadableFile(atPath: file) {
                throw Invalid(description: "\(file) cannot be read")
            }
            tls = (cert, key)
        default: throw Invalid(description: "tls_cert_file and tls_key_file go together: set both for HTTPS, or neither")
        }
        if let file = mqttCAFile, !FileManager.default.isReadableFile(atPath: file) {
            throw Invalid(description: "mqtt_ca_file \(file) cannot be read")
        }
        environment = text("environment") ?? "development"
        guard ServiceName.isValid(environment) else { throw Invalid(description: "environment \"\(environment)\" is not a valid name") }
        self.configDir = configDir
        httpHost = text("http_host") ?? "127.0.0.1"
        httpPort = try integer("http_port", 8080, range: 0...65535)
        topicPrefix = text("topic_prefix") ?? "config"
        guard !topicPrefix.isEmpty, !topicPrefix.contains(where: { "+#\0".contains($0) }), !topicPrefix.hasPrefix("/"), !topicPrefix.hasSuffix("/") else {
            throw Invalid(description: "topic_prefix must not be empty, start or end with / or hold + # or NUL")
        }
        let defaultNode = String(hostName.lowercased().map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" }.prefix(60))
        nodeID = text("node_id") ?? (defaultNode.isEmpty ? "node" : defaultNode)
        guard ServiceName.isValid(nodeID) || nodeID.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }) else {
            throw Invalid(description: "node_id must use letters, digits, '.', '_' and '-'")
        }
        healthInterval = try duration("health_interval", .seconds(10))
        reconcileInterval = try duration("reconcile_interval", .seconds(30))
        instanceTTL = try duration("instance_ttl", .seconds(86_400))
        do {
            adminTokens = try AccessToken.parseList(list("admin_tokens"))
            readTokens = try AccessToken.parseList(list("read_tokens"))
        } catch {
            throw Invalid(description: error.message)
        }
        maxDocumentBytes = try integer("max_document_bytes", 1 << 20, range: 1024...(64 << 20))
        rateLimit = try integer("rate_limit", 1000, range: 0...1_000_000)
        cacheServices = try integer("cache_services", 1000, range: 1...10_000_000)
        switch text("allow_schemaless")?.lowercased() {
        case nil: allowSchemaless = false
        case "true", "1", "yes": allowSchemaless = true
        case "false", "0", "no": allowSchemaless = false
        case let other?: throw Invalid(description: "allow_schemaless must be true or false, not \"\(other)\"")
        }
        if let keyFile = text("secret_key_file") {
            guard let data = FileManager.default.contents(atPath: keyFile) else {
                throw Invalid(description: "secret_key_file \(keyFile) cannot be read")
            }
            do {
                sealer = try SecretSealer(keyFileContents: String(decoding: data, as: UTF8.self))
            } catch {
                throw Invalid(description: "secret_key_file \(keyFile): \(error.message) (make one with `confbus secrets keygen`)")
            }
        } else {
            sealer = nil
        }
        let level = text("log_level") ?? "info"
        guard let parsedLevel = Logger.Level(rawValue: level.lowercased()) else {
            throw Invalid(description: "log_level must be one of trace, debug, info, notice, warning, error, critical")
        }
        logLevel = parsedLevel
        guard let format = LogFormat(rawValue: (text("log_format") ?? "text").lowercased()) else {
            throw Invalid(description: "log_format must be text or json")
        }
        logFormat = format
    }

    /// `30`, `30s`, `500ms`, `2m`.
    public static func parseDuration(_ text: String) -> Duration? { Duration(settingsText: text) }

    /// The settings as a log line: secrets never appear.
    public var redactedDescription: String {
        "environment=\(environment) config_dir=\(configDir) http=\(httpHost):\(httpPort) topic_prefix=\(topicPrefix) node_id=\(nodeID) "
            + "database_url=\(Self.redactURL(databaseURL)) mqtt_urls=\(mqttURLs.map(Self.redactURL).joined(separator: ",")) "
            + "admin_tokens=\(adminTokens.map(\.name)) read_tokens=\(readTokens.map(\.name))"
            + (sealer.map { " secrets_sealed_under=\($0.keyID)" } ?? "")
    }

    /// The URL with its password as `***`; several hosts (`h1:5432,h2:5432`) are kept as written.
    static func redactURL(_ url: String) -> String {
        guard let scheme = url.range(of: "://") else { return "<invalid>" }
        let rest = url[scheme.upperBound...]
        let authority = rest[..<(rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex)]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return url }
        return String(url[..<authority.index(after: colon)]) + "***" + String(url[at...])
    }
}
