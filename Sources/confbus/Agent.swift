import ArgumentParser
import ConfbusClient
import ConfbusCore
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals
import Yams

/// `confbus agent` (CONTRACT.md §9): the client as a sidecar for a service in any language. Each
/// version is written to a temporary file, checked by `--check`, moved onto `--output`, followed by
/// `--exec`, and acked; a refused one is acked `rejected` with the check's stderr and FILE keeps the
/// last good config.
struct Agent: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep a service's config file current: pull, follow MQTT, check, write atomically, reload, ack.",
        discussion: "Exit codes: 0 on SIGTERM/SIGINT, 2 usage, 3 with --require-server when no server answers and nothing is cached.")

    enum Format: String, ExpressibleByArgument, CaseIterable { case json, yaml, env }

    @Option(help: "The service whose config this is.") var service: String
    @Option(help: "This instance's id (its MQTT client id).") var instance: String
    @Option(help: "The file the service reads.") var output: String
    @Option(help: "confbus's HTTP address (default CONFBUS_URL).") var url: String?
    @Option(help: "mqtt://… or mqtts://…; several brokers comma-separated, used one at a time (default CONFBUS_MQTT_URL).") var mqttURL: String?
    @Option(help: "For mqtts://: the CAs to trust (PEM).") var mqttCaFile: String?
    @Option(help: "A read token scoped to the service (default CONFBUS_TOKEN).") var token: String?
    @Option(help: "MQTT topic prefix.") var topicPrefix = "config"
    @Option(help: "json, yaml or env.") var format: Format = .json
    @Option(help: "Run before applying, with the new file's path appended; non-zero refuses the version.") var check: String?
    @Option(help: "Run after applying (a reload).") var exec: String?
    @Option(help: "Where the last good document is kept.") var cacheDir = ".confbus-cache"
    @Flag(help: "Exit 3 when no server answers and nothing is cached.") var requireServer = false
    @Option(help: "Answer flag evaluations for local processes on this Unix socket: one JSON request per line, {\"flag\": \"/flags/x\", \"context\": {\"key\": \"...\"}}.")
    var flagsSocket: String?
    @Flag(inversion: .prefixedNo, help: "Take part in progressive rollouts: register with the rollout feature and apply a candidate when in its cohort.")
    var rollouts = true

    func run() async throws {
        guard ServiceName.isValid(service) else { throw ValidationError("\(service) is not a service name") }
        let environment = ProcessInfo.processInfo.environment
        var logger = Logger(label: "confbus.agent")
        logger.logLevel = .info
        var configuration = ConfbusClientService.Configuration(service: service, instance: instance,
                                                               serverURL: url ?? environment["CONFBUS_URL"],
                                                               mqttURL: mqttURL ?? environment["CONFBUS_MQTT_URL"])
        if let brokers = configuration.mqttURL?.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }), brokers.count > 1 {
            configuration.mqttURLs = brokers
        }
        configuration.mqttCAFile = mqttCaFile
        configuration.token = token ?? environment["CONFBUS_TOKEN"]
        configuration.topicPrefix = topicPrefix
        configuration.cacheDirectory = cacheDir
        configuration.takesPartInRollouts = rollouts
        configuration.startup = requireServer ? .lastKnownGood(maxWait: .seconds(5)) : .empty
        let writer = ConfigFileWriter(output: output, format: format, check: check, exec: exec)
        let client = ConfbusClientService(configuration: configuration, logger: logger) { document in
            await writer.apply(document.config)
        }
        do {
            try await client.start()
        } catch let failure as ConfbusClientService.StartupFailure {
            FileHandle.standardError.write(Data("confbus agent: \(failure.description)\n".utf8))
            throw ExitCode(3)
        }
        // Started from the cache (no server): the file holds that config too.
        if let config = client.heldConfig { _ = await writer.apply(config, onlyIfChanged: true) }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = [.init(service: client)]
        if let flagsSocket { services.append(.init(service: FlagSocket(path: flagsSocket, provider: client.provider, logger: logger))) }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [.sigterm, .sigint],
                                                      logger: logger))
        try await group.run()
    }
}

/// Renders a config, checks it and moves it onto the output file, then runs the reload command.
actor ConfigFileWriter {
    let output: String
    let format: Agent.Format
    let check: String?
    let exec: String?

    init(output: String, format: Agent.Format, check: String?, exec: String?) {
        self.output = output
        self.format = format
        self.check = check
        self.exec = exec
    }

    func apply(_ config: JSONValue, onlyIfChanged: Bool = false) -> ConfbusClientService.Verdict {
        let text: String
        do { text = try Self.render(config, as: format) } catch { return .reject("cannot render the config as \(format.rawValue)") }
        if onlyIfChanged, FileManager.default.contents(atPath: output).map({ String(decoding: $0, as: UTF8.self) }) == text { return .accept }
        let temporary = output + ".confbus-new"
        do { try AtomicFile.writeDurably(Array(text.utf8), to: temporary) } catch { return .reject("cannot write \(temporary): \(error)") }
        if let check {
            let (status, stderr) = Self.shell(check + " " + Self.quoted(temporary))
            guard status == 0 else {
                unlink(temporary)
                return .reject(String(stderr.suffix(400)).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty
                    ? "the check exited \(status)" : String(stderr.suffix(400)))
            }
        }
        do { try AtomicFile.replace(output, with: temporary) } catch { return .reject("cannot move the new config onto \(output): \(error)") }
        if let exec { _ = Self.shell(exec) }
        return .accept
    }

    /// `/bin/sh -c command`: its exit status and standard error.
    static func shell(_ command: String) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.standardError
        do { try p.run() } catch { return (127, "cannot run /bin/sh") }
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    static func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    static func render(_ config: JSONValue, as format: Agent.Format) throws -> String {
        switch format {
        case .json:
            return config.serialized(.canonical) + "\n"
        case .yaml:
            return try Yams.serialize(node: yamlNode(config))
        case .env:
            var lines: [String] = []
            func walk(_ value: JSONValue, _ path: [String]) {
                if case .object(let members) = value, !members.isEmpty {
                    for key in members.keys.sorted() { walk(members[key]!, path + [key]) }
                } else {
                    let name = path.map { $0.uppercased().map { $0.isLetter || $0.isNumber ? String($0) : "_" }.joined() }.joined(separator: "_")
                    lines.append("\(name)=\(value.serialized(.canonical))")
                }
            }
            walk(config, [])
            return lines.joined(separator: "\n") + "\n"
        }
    }

    static func yamlNode(_ value: JSONValue) -> Node {
        switch value {
        case .null: Node("null", Tag(.null))
        case .bool(let b): Node(b ? "true" : "false", Tag(.bool))
        case .integer(let i): Node(String(i), Tag(.int))
        case .number: Node(value.serialized(.canonical), Tag(.float))
        case .string(let s): Node(s, Tag(.str), .doubleQuoted)
        case .array(let items): Node(items.map(yamlNode))
        case .object(let members): Node(members.keys.sorted().map { (Node($0, Tag(.str), .doubleQuoted), yamlNode(members[$0]!)) })
        }
    }
}
