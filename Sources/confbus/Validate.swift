import ArgumentParser
import ConfbusCore
import ConfbusEngine
import ConfbusSchema
import ConfbusYAML
import Foundation

/// `confbus validate`: resolve and validate the whole config tree offline, for CI pipelines.
struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resolve and validate every service of a config tree, offline.",
        discussion: """
            Exits 0 when every service resolves to a config that its schema accepts, 1 when anything is \
            invalid (every error is listed, with file:line:column or JSON pointer), 2 on a usage error.
            Settings come from flags, then CONFBUS_* variables, then <config-dir>/confbus.yaml.
            """
    )

    enum OutputFormat: String, ExpressibleByArgument { case text, json }

    @Option(name: .long, help: "The config tree (default: CONFBUS_CONFIG_DIR, else ./config).")
    var configDir: String?

    @Option(name: .long, help: "The environment whose <environment>.yaml applies (default: CONFBUS_ENVIRONMENT, else development).")
    var environment: String?

    @Flag(name: .long, help: "Show, for every value, the layer and file:line:column it came from.")
    var explain = false

    @Option(name: .long, help: "text (default) or json: the resolved documents and the errors as one JSON object.")
    var format: OutputFormat = .text

    @Flag(name: .long, help: "Accept services without a schema.")
    var allowSchemaless = false

    @Option(name: .long, help: "Largest YAML document accepted, in bytes (default 1048576).")
    var maxDocumentBytes: Int?

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        let configDir = configDir ?? env["CONFBUS_CONFIG_DIR"] ?? "config"
        let file = try FileSettings.load(configDir: configDir)
        let environment = environment ?? env["CONFBUS_ENVIRONMENT"] ?? file.environment ?? "development"
        guard ServiceName.isValid(environment) else {
            throw ValidationError("environment \"\(environment)\" is not a valid environment name")
        }
        let maxBytes = try maxDocumentBytes ?? FileSettings.integer(env["CONFBUS_MAX_DOCUMENT_BYTES"], "CONFBUS_MAX_DOCUMENT_BYTES")
            ?? file.maxDocumentBytes ?? (1 << 20)
        let schemaless = try allowSchemaless || FileSettings.boolean(env["CONFBUS_ALLOW_SCHEMALESS"], "CONFBUS_ALLOW_SCHEMALESS")
            ?? file.allowSchemaless ?? false

        let source = FileConfigSource(root: configDir, limits: .init(maxDocumentBytes: maxBytes))
        let resolver = ServiceResolver(
            options: .init(environment: environment, allowSchemaless: schemaless, validator: .init(formatAssertion: true)),
            overrides: OverrideVariables(environment: env))
        let report = TreeResolver(source: source, resolver: resolver).resolveAll()

        switch format {
        case .text: print(ValidateReport.text(report, explain: explain), terminator: "")
        case .json: print(ValidateReport.json(report, explain: explain).serialized(.pretty))
        }
        for warning in report.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        if !report.isValid { throw ExitCode(1) }
    }
}

/// The distributor's own settings that `validate` needs, from `<config-dir>/confbus.yaml`.
struct FileSettings {
    var environment: String?
    var allowSchemaless: Bool?
    var maxDocumentBytes: Int?

    static func load(configDir: String) throws -> FileSettings {
        let path = (configDir as NSString).appendingPathComponent("confbus.yaml")
        guard FileManager.default.fileExists(atPath: path) else { return FileSettings() }
        let document: YAMLDocument
        do { document = try YAMLLoader().load(contentsOf: path) } catch { throw ValidationError(error.description) }
        var settings = FileSettings()
        settings.environment = document.value["environment"]?.stringValue
        settings.allowSchemaless = document.value["allow_schemaless"]?.boolValue
        if case .integer(let n) = document.value["max_document_bytes"] { settings.maxDocumentBytes = n }
        return settings
    }

    static func integer(_ text: String?, _ name: String) throws -> Int? {
        guard let text else { return nil }
        guard let value = Int(text), value > 0 else { throw ValidationError("\(name) must be a positive integer") }
        return value
    }

    static func boolean(_ text: String?, _ name: String) throws -> Bool? {
        guard let text else { return nil }
        switch text.lowercased() {
        case "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw ValidationError("\(name) must be true or false")
        }
    }
}
