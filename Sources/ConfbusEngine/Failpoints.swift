import Foundation

/// Test-only crash points (`CONFBUS_FAILPOINTS="after_commit=exit,before_publish=sleep(500)"`),
/// modelled on etcd's gofail points: `exit` ends the process at once as a kill -9 would
/// (no clean-up, no Last Will sent by us), `abort` aborts, `sleep(ms)` pauses, `error` throws.
public struct Failpoints: Sendable {
    public enum Action: Sendable, Equatable {
        case exit, abort, sleep(milliseconds: Int), error
    }

    public struct Triggered: Error, CustomStringConvertible {
        public var name: String
        public var description: String { "failpoint \(name) triggered" }
    }

    public let actions: [String: Action]

    public init(_ actions: [String: Action] = [:]) { self.actions = actions }

    /// Parses the variable's value; unknown actions are errors so a typo cannot pass silently.
    public init(parsing text: String) throws {
        var actions: [String: Action] = [:]
        for entry in text.split(separator: ",") {
            let parts = entry.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { throw Triggered(name: "malformed failpoint \(entry)") }
            switch parts[1] {
            case "exit": actions[parts[0]] = .exit
            case "abort": actions[parts[0]] = .abort
            case "error": actions[parts[0]] = .error
            case let s where s.hasPrefix("sleep(") && s.hasSuffix(")"):
                guard let ms = Int(s.dropFirst(6).dropLast()) else { throw Triggered(name: "malformed failpoint \(entry)") }
                actions[parts[0]] = .sleep(milliseconds: ms)
            default: throw Triggered(name: "malformed failpoint \(entry)")
            }
        }
        self.actions = actions
    }

    public func hit(_ name: String) throws {
        guard let action = actions[name] else { return }
        switch action {
        case .exit: _exit(137)
        case .abort: Foundation.abort()
        case .sleep(let ms): usleep(useconds_t(ms * 1000))
        case .error: throw Triggered(name: name)
        }
    }
}
