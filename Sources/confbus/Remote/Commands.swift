import ArgumentParser
import ConfbusCore
import Foundation

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a service's resolved document.")
    @OptionGroup var remote: RemoteOptions
    @Argument(help: "The service.") var service: String
    @Option(help: "A past version.") var version: Int?
    @Option(help: "A JSON pointer into config, such as /database/port.") var pointer: String?

    func run() async throws {
        guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
        var query: [String] = []
        if let version { query.append("version=\(version)") }
        if let pointer { query.append("pointer=\(pointer.addingPercentEncoding(withAllowedCharacters: .urlQueryAllowed) ?? pointer)") }
        let client = RemoteClient(options: remote)
        let answer = try client.checked(try await client.send("GET", "/v1/config/\(service)" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))))
        let document = answer.json ?? .null
        emit(document, remote) {
            if pointer != nil { return Table.cell(document["value"]) + "\n" }
            return "\(service) version \(Table.cell(document["version"])) \(Table.cell(document["checksum"]))\n" + (document["config"] ?? .null).serialized(.pretty) + "\n"
        }
    }
}

struct History: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a service's versions, newest first.")
    @OptionGroup var remote: RemoteOptions
    @Argument var service: String
    @Option(help: "At most this many.") var limit: Int = 20

    func run() async throws {
        guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
        let client = RemoteClient(options: remote)
        let json = try client.checked(try await client.send("GET", "/v1/config/\(service)/history?limit=\(limit)")).json ?? .null
        emit(json, remote) {
            Table.render(["VERSION", "CREATED", "SOURCE", "AUTHOR", "REASON"], (json["versions"]?.arrayValue ?? []).map { v in
                [Table.cell(v["version"]), Table.cell(v["created_at"]), Table.cell(v["source"]), Table.cell(v["author"]), Table.cell(v["reason"])]
            })
        }
    }
}

struct Diff: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show what changed between two versions.")
    @OptionGroup var remote: RemoteOptions
    @Argument var service: String
    @Option var from: Int
    @Option var to: Int

    func run() async throws {
        guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
        let client = RemoteClient(options: remote)
        let json = try client.checked(try await client.send("GET", "/v1/config/\(service)/diff?from=\(from)&to=\(to)")).json ?? .null
        emit(json, remote) { changesTable(json["changes"]?.arrayValue ?? []) }
    }
}

func changesTable(_ changes: [JSONValue], service: String? = nil) -> String {
    Table.render((service == nil ? [] : ["SERVICE"]) + ["OP", "PATH", "OLD", "NEW"], changes.map { c in
        (service.map { [$0] } ?? []) + [Table.cell(c["op"]), Table.cell(c["path"]), Table.cell(c["old"]), Table.cell(c["new"])]
    })
}

struct Services: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List services with their versions and instances.")
    @OptionGroup var remote: RemoteOptions

    func run() async throws {
        let client = RemoteClient(options: remote)
        let json = try client.checked(try await client.send("GET", "/v1/services")).json ?? .null
        emit(json, remote) {
            Table.render(["SERVICE", "VERSION", "UPDATED", "INSTANCES", "LAGGING"], (json["services"]?.arrayValue ?? []).map { s in
                [Table.cell(s["service"]), Table.cell(s["version"]), Table.cell(s["updated_at"]), Table.cell(s["instances"]), Table.cell(s["lagging"])]
            })
        }
    }
}

struct Apply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply a batch file (YAML or JSON): show the changes, ask, then apply all or nothing.")
    @OptionGroup var remote: RemoteOptions
    @Option(name: .short, help: "The batch file ({reason, updates: [...]}).") var file: String
    @Flag(help: "Apply without asking.") var yes = false
    @Flag(help: "Only show the changes.") var dryRun = false
    @Option(help: "An Idempotency-Key, so a retry cannot apply twice.") var idempotencyKey: String?

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        let yaml = file.hasSuffix(".yaml") || file.hasSuffix(".yml")
        let type = yaml ? "application/yaml" : "application/json"
        let client = RemoteClient(options: remote)
        let preview = try client.checked(try await client.send("POST", "/v1/validate", body: Array(data), contentType: type)).json ?? .null
        let results = preview["results"]?.arrayValue ?? []
        if remote.output == .table {
            var text = ""
            for r in results where r["changed"] == .bool(true) {
                text += changesTable(r["changes"]?.arrayValue ?? [], service: Table.cell(r["service"]))
            }
            print(text.isEmpty ? "no changes" : text, terminator: text.isEmpty ? "\n" : "")
        }
        if dryRun {
            if remote.output == .json { print(preview.serialized(.pretty)) }
            return
        }
        if !yes {
            guard isatty(0) != 0 else {
                FileHandle.standardError.write(Data("confbus: not a terminal; pass --yes to apply\n".utf8))
                throw RemoteExit.usage
            }
            print("Apply these changes? [y/N] ", terminator: "")
            guard let reply = readLine(), ["y", "yes"].contains(reply.lowercased()) else {
                print("nothing applied")
                return
            }
        }
        var headers: [String: String] = [:]
        if let idempotencyKey { headers["Idempotency-Key"] = idempotencyKey }
        let applied = try client.checked(try await client.send("POST", "/v1/batch", body: Array(data), contentType: type, headers: headers)).json ?? .null
        emit(applied, remote) {
            Table.render(["SERVICE", "VERSION", "CHANGED"], (applied["results"]?.arrayValue ?? []).map { r in
                [Table.cell(r["service"]), Table.cell(r["document"]?["version"]), Table.cell(r["changed"])]
            }) + "batch \(Table.cell(applied["batch_id"]))\n"
        }
    }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a new version whose config is an earlier version's.")
    @OptionGroup var remote: RemoteOptions
    @Argument var service: String
    @Option(help: "The version to return to.") var to: Int
    @Option(help: "Why (recorded with the version).") var reason: String?

    func run() async throws {
        guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
        let client = RemoteClient(options: remote)
        var headers: [String: String] = [:]
        if let reason { headers["X-Confbus-Reason"] = reason }
        let json = try client.checked(try await client.send("POST", "/v1/config/\(service)/rollback",
                                                            body: JSONValue.object(["version": .integer(to)]).serializedBytes(),
                                                            headers: headers)).json ?? .null
        emit(json, remote) { "\(service) is at version \(Table.cell(json["version"])) with version \(to)'s config\n" }
    }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write every service's layers and versions as one JSON document.")
    @OptionGroup var remote: RemoteOptions
    @Flag(help: "Every version, not only the latest (needed to import).") var history = false
    @Flag(help: "Secret values in full instead of \"***\" (needed to import).") var secrets = false
    @Option(name: .short, help: "Write to this file instead of standard output.") var outputFile: String?

    func run() async throws {
        let client = RemoteClient(options: remote)
        let answer = try client.checked(try await client.send("GET", "/v1/export?history=\(history)&secrets=\(secrets)"))
        if let outputFile {
            guard FileManager.default.createFile(atPath: outputFile, contents: Data(answer.body)) else {
                throw ValidationError("cannot write \(outputFile)")
            }
        } else {
            FileHandle.standardOutput.write(Data(answer.body))
        }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Store an export (made with --history) in a distributor without those services.")
    @OptionGroup var remote: RemoteOptions
    @Option(name: .short, help: "The export file.") var file: String

    func run() async throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("cannot read \(file)") }
        let client = RemoteClient(options: remote)
        let json = try client.checked(try await client.send("POST", "/v1/import", body: Array(data))).json ?? .null
        emit(json, remote) { "imported \(Table.cell(json["imported_versions"])) versions\n" }
    }
}
