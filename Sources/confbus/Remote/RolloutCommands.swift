import ArgumentParser
import ConfbusCore
import ConfbusEngine
import ConfbusYAML
import Foundation

/// `confbus rollout start|status|list|promote|abort` (CONTRACT.md §8).
struct Rollout: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Release a change step by step, gated on the instances' acks and health.",
        subcommands: [Start.self, Status.self, List.self, Promote.self, Abort.self])

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Start a rollout of a change (a file holding override, patch or rollback, YAML or JSON).")
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The service.") var service: String
        @Option(name: .short, help: "The change: {patch: {...}}, {override: {...}} or {rollback: N}; a plain mapping is a patch.")
        var file: String
        @Option(help: "Percentages of the rollout-capable instances, rising to 100 (default 10,50,100).") var steps: String?
        @Option(help: "How long each step's cohort must stay healthy (default 30s).") var bake: String?
        @Option(help: "How long a step waits for its cohort's acks (default 60s).") var ackTimeout: String?
        @Option(help: "Rejections a step tolerates (default 0).") var maxRejected: Int?
        @Option(help: "Why (recorded with the candidate and the rollout).") var reason: String?
        @Flag(help: "Follow the rollout until it ends (as status --watch).") var watch = false

        func run() async throws {
            guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
            let loaded: JSONValue
            do { loaded = try YAMLLoader().load(contentsOf: file).value } catch { throw ValidationError(error.description) }
            guard case .object(var body) = loaded else { throw ValidationError("\(file) must hold a mapping") }
            if !["override", "patch", "rollback"].contains(where: { body[$0] != nil }) { body = ["patch": .object(body)] }
            if let steps {
                let numbers = steps.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
                guard !numbers.isEmpty, numbers.allSatisfy({ $0 != nil }) else { throw ValidationError("--steps is a list such as 10,50,100") }
                body["steps"] = .array(numbers.map { .integer($0!) })
            }
            if let bake { body["bake"] = .string(bake) }
            if let ackTimeout { body["ack_timeout"] = .string(ackTimeout) }
            if let maxRejected { body["max_rejected"] = .integer(maxRejected) }
            if let reason { body["reason"] = .string(reason) }
            let client = RemoteClient(options: remote)
            let json = try client.checked(try await client.send("POST", "/v1/config/\(service)/rollouts",
                                                                body: JSONValue.object(body).serializedBytes())).json ?? .null
            if watch, let id = json["id"]?.stringValue {
                try await RolloutView.follow(id, client: client, options: remote)
            } else {
                emit(json, remote) { RolloutView.text(json, now: Date()) }
            }
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show a rollout: step, cohort, acks, time left.")
        @OptionGroup var remote: RemoteOptions
        @Argument(help: "The rollout id.") var id: String
        @Flag(help: "Follow it live until it ends (exit 0 completed, 1 rolled back).") var watch = false

        func run() async throws {
            let client = RemoteClient(options: remote)
            if watch { return try await RolloutView.follow(id, client: client, options: remote) }
            let json = try client.checked(try await client.send("GET", "/v1/rollouts/\(id)")).json ?? .null
            emit(json, remote) { RolloutView.text(json, now: Date()) }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List a service's rollouts, newest first.")
        @OptionGroup var remote: RemoteOptions
        @Argument var service: String

        func run() async throws {
            guard ServiceName.isValid(service) else { throw ValidationError("invalid service name \"\(service)\"") }
            let client = RemoteClient(options: remote)
            let json = try client.checked(try await client.send("GET", "/v1/config/\(service)/rollouts")).json ?? .null
            emit(json, remote) {
                Table.render(["ID", "STATE", "STEP", "VERSIONS", "STARTED", "REASON"], (json["rollouts"]?.arrayValue ?? []).map { r in
                    [Table.cell(r["id"]), Table.cell(r["state"]), "\(Table.cell(r["step"]))/\(r["steps"]?.arrayValue?.count ?? 0)",
                     "\(Table.cell(r["stable_version"]))→\(Table.cell(r["candidate_version"]))", Table.cell(r["started_at"]),
                     Table.cell(r["rollback_reason"] ?? r["reason"])]
                })
            }
        }
    }

    struct Promote: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Release a running rollout's candidate to everyone now.")
        @OptionGroup var remote: RemoteOptions
        @Argument var id: String
        @Option(help: "Why (audited).") var reason: String?

        func run() async throws { try await RolloutView.operate("promote", id, reason: reason, options: remote) }
    }

    struct Abort: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Roll a running rollout back now.")
        @OptionGroup var remote: RemoteOptions
        @Argument var id: String
        @Option(help: "Why (recorded with the rollback).") var reason: String?

        func run() async throws { try await RolloutView.operate("abort", id, reason: reason, options: remote) }
    }
}

/// How a rollout is shown to people: a few lines, redrawn in place by `--watch` on a terminal.
enum RolloutView {
    static func operate(_ verb: String, _ id: String, reason: String?, options: RemoteOptions) async throws {
        let client = RemoteClient(options: options)
        var headers: [String: String] = [:]
        if let reason { headers["X-Confbus-Reason"] = reason }
        let json = try client.checked(try await client.send("POST", "/v1/rollouts/\(id)/\(verb)", headers: headers)).json ?? .null
        emit(json, options) { text(json, now: Date()) }
    }

    /// Polls the rollout every half second until it ends. On a terminal the view is redrawn in
    /// place; otherwise (and with `--output json`) each change is printed once. Exits 1 when it
    /// rolled back, so a script can wait on it.
    static func follow(_ id: String, client: RemoteClient, options: RemoteOptions) async throws {
        let terminal = isatty(1) != 0 && options.output == .table
        var drawn = 0
        var last = ""
        while true {
            let json = try client.checked(try await client.send("GET", "/v1/rollouts/\(id)")).json ?? .null
            let now = Date()
            if options.output == .json {
                let line = json.serialized(.canonical)
                if line != last { print(line); last = line }
            } else {
                let block = text(json, now: now)
                if terminal {
                    // Up over the last drawing, then each line cleared and written again.
                    var out = drawn > 0 ? "\u{1B}[\(drawn)A" : ""
                    for line in block.split(separator: "\n", omittingEmptySubsequences: false).dropLast() { out += "\u{1B}[2K" + line + "\n" }
                    FileHandle.standardOutput.write(Data(out.utf8))
                    drawn = block.filter { $0 == "\n" }.count
                } else if block != last {
                    print(block, terminator: "")
                    last = block
                }
            }
            switch json["state"]?.stringValue {
            case "completed": return
            case "rolled_back": throw RemoteExit.refused
            default: try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// ```
    /// rollout 3f0c…  billing-api  v1 → v2  running
    /// step 2/3 (50%)  cohort 5  baking, 12s left
    /// [██████████████████▒▒▒▒░░░░░░░░]  applied 3  rejected 1  pending 1
    /// ```
    static func text(_ json: JSONValue, now: Date) -> String {
        let steps = json["steps"]?.arrayValue?.compactMap(\.integralValue) ?? []
        let step = json["step"]?.integralValue ?? 0
        let acks = json["acks"]
        let (applied, rejected, pending) = (acks?["applied"]?.integralValue ?? 0, acks?["rejected"]?.integralValue ?? 0,
                                            acks?["pending"]?.integralValue ?? 0)
        let state = json["state"]?.stringValue ?? "?"
        var lines = ["rollout \(Table.cell(json["id"]))  \(Table.cell(json["service"]))  v\(Table.cell(json["stable_version"])) → v\(Table.cell(json["candidate_version"]))  \(state)"]
        let share = step >= 1 && step <= steps.count ? " (\(steps[step - 1])%)" : ""
        var phase = Table.cell(json["phase"]).replacingOccurrences(of: "_", with: " ")
        if state == "running", let deadline = json["deadline"]?.stringValue.flatMap(Timestamp.parse) {
            let left = max(0, Int(deadline.timeIntervalSince(now).rounded(.up)))
            phase += json["phase"] == "baking" ? ", \(left)s left" : ", timeout in \(left)s"
        }
        lines.append("step \(step)/\(steps.count)\(share)  cohort \(json["cohort"]?.arrayValue?.count ?? 0)  \(phase)")
        lines.append("\(bar(applied: applied, rejected: rejected, pending: pending))  applied \(applied)  rejected \(rejected)  pending \(pending)")
        for member in json["instances"]?.arrayValue ?? [] where member["answer"] == "rejected" {
            lines.append("  rejected by \(Table.cell(member["instance"])): \(Table.cell(member["detail"]))")
        }
        if let reason = json["rollback_reason"]?.stringValue { lines.append("rolled back: \(reason)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// 30 cells: applied solid, rejected shaded, pending light.
    static func bar(applied: Int, rejected: Int, pending: Int, width: Int = 30) -> String {
        let total = applied + rejected + pending
        guard total > 0 else { return "[" + String(repeating: " ", count: width) + "]" }
        let a = applied * width / total
        let r = min(width - a, (rejected * width + total - 1) / total)
        return "[" + String(repeating: "█", count: a) + String(repeating: "▒", count: r) + String(repeating: "░", count: width - a - r) + "]"
    }
}
