import ArgumentParser
import ConfbusCore
import Foundation

/// `confbus flags list|eval` (CONTRACT.md §12): a service's feature flags and their answer for one
/// context, as the server works it out (the same rule `ConfbusProvider` applies in a service).
struct Flags: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List a service's feature flags, or evaluate them for a context.",
                                                    subcommands: [List.self, Eval.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a service's flags with their pointers.")
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The service.") var service: String
        @Option(help: "A version other than the released one.") var version: Int?

        func run() async throws {
            guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
            let client = RemoteClient(options: remote)
            let json = try client.checked(try await client.send("GET", "/v1/flags/\(service)" + (version.map { "?version=\($0)" } ?? ""))).json ?? .null
            emit(json, remote) {
                Table.render(["FLAG", "ENABLED", "ROLLOUT %", "VARIANTS", "RULES"], (json["flags"]?.arrayValue ?? []).map { entry in
                    let flag = entry["flag"] ?? .null
                    return [Table.cell(entry["pointer"]), Table.cell(flag["enabled"]), Table.cell(flag["rollout_percentage"] ?? 100),
                            (flag["variants"]?.objectValue?.keys.sorted() ?? []).joined(separator: ","), "\(flag["rules"]?.arrayValue?.count ?? 0)"]
                })
            }
        }
    }

    struct Eval: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Evaluate a service's flags for one context.",
            discussion: "An --attr value that reads as JSON (18, 2.5, true, \"x\") is that value; any other is a string.")
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The service.") var service: String
        @Option(help: "The context's stable key (a user's or a tenant's id).") var key: String
        @Option(name: .customLong("attr"), help: "An attribute for the rules, name=value (repeatable).") var attributes: [String] = []
        @Option(name: .customLong("flag"), help: "Only this flag's pointer, such as /flags/new_checkout (repeatable).") var flags: [String] = []
        @Option(help: "A version other than the released one.") var version: Int?

        func run() async throws {
            guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
            var context: [String: JSONValue] = [:]
            for attribute in attributes {
                guard let equals = attribute.firstIndex(of: "="), equals != attribute.startIndex else {
                    throw ValidationError("--attr takes name=value, not \(attribute)")
                }
                let raw = String(attribute[attribute.index(after: equals)...])
                context[String(attribute[..<equals])] = (try? JSONParser().parse(raw)).flatMap { value -> JSONValue? in
                    switch value {
                    case .string, .integer, .number, .bool: value
                    default: nil
                    }
                } ?? .string(raw)
            }
            var body: [String: JSONValue] = ["context": ["key": .string(key), "attributes": .object(context)]]
            if !flags.isEmpty { body["flags"] = .array(flags.map(JSONValue.string)) }
            let client = RemoteClient(options: remote)
            let path = "/v1/flags/\(service)/evaluate" + (version.map { "?version=\($0)" } ?? "")
            let json = try client.checked(try await client.send("POST", path, body: Array(JSONValue.object(body).serialized(.canonical).utf8))).json ?? .null
            emit(json, remote) {
                let results = json["results"]?.objectValue ?? [:]
                return Table.render(["FLAG", "VALUE", "REASON"], results.keys.sorted().map { pointer in
                    [pointer, Table.cell(results[pointer]?["value"]), Table.cell(results[pointer]?["reason"])]
                })
            }
        }
    }
}
