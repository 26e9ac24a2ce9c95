import Foundation
import Testing

/// A PostgreSQL server of the test's own, on a free port, for tests that stop and start it
/// (the shared one serves every other test). Runs as the `confbus-pg` user when the tests run as root.
final class PrivatePostgres: @unchecked Sendable {
    let port: Int
    let directory: URL
    private let bin: String

    /// A new cluster (`initdb`), or with `standbyOf`, a streaming standby of that running server,
    /// copied with `pg_basebackup -R` (it follows the primary asynchronously unless the primary names it synchronous).
    init(standbyOf primary: PrivatePostgres? = nil) throws {
        port = try Harness.freePort()
        directory = try Harness.temporaryDirectory("pg")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        let version = try #require(versions.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.last, "no PostgreSQL server")
        bin = "/usr/lib/postgresql/\(version)/bin"
        if getuid() == 0 {
            chmod(directory.deletingLastPathComponent().path, 0o755)
            chmod(directory.path, 0o777)
        }
        if let primary {
            try run("pg_basebackup", ["-h", "127.0.0.1", "-p", String(primary.port), "-U", "postgres", "-D", data, "-R", "-X", "stream"])
        } else {
            try run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        }
    }

    var data: String { directory.appendingPathComponent("data").path }

    /// Connects as the superuser to the `postgres` database (trust authentication on loopback).
    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    /// Runs a PostgreSQL tool to its end. Spawned and reaped directly (posix_spawn, waitpid):
    /// `pg_ctl start` leaves a server behind, and Foundation's `Process` did not see the tool end.
    private func run(_ tool: String, _ arguments: [String]) throws {
        let argv = (getuid() == 0 ? ["/usr/sbin/runuser", "-u", "confbus-pg", "--", "\(bin)/\(tool)"] : ["\(bin)/\(tool)"]) + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, environ)
        try #require(spawned == 0, "cannot start \(tool)")
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        try #require((status & 0x7F) == 0 && (status >> 8) & 0xFF == 0, "\(tool) \(arguments) failed")
    }

    /// A new cluster, or a standby of `primary`, made off the test pool's threads.
    static func make(standbyOf primary: PrivatePostgres? = nil) async throws -> PrivatePostgres {
        try await offThePool { try PrivatePostgres(standbyOf: primary) }
    }

    /// Runs a blocking step (a PostgreSQL tool to its end) on a thread of its own: the tests share
    /// the cooperative pool's two threads, and a tool holding one for seconds stalls every other
    /// test's timing.
    static func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try body() }) }.start()
        }
    }

    func starting(_ settings: [String] = []) async throws { try await Self.offThePool { try self.start(settings) } }
    func stopping() async { _ = try? await Self.offThePool { self.stop() } }
    func crashing() async { _ = try? await Self.offThePool { self.crash() } }
    func promoting() async throws { try await Self.offThePool { try self.promote() } }

    /// `settings`: more `-c name=value` options (`synchronous_standby_names='*'`).
    func start(_ settings: [String] = []) throws {
        let options = (["listen_addresses=127.0.0.1", "fsync=off"] + settings).map { "-c \($0)" }.joined(separator: " ")
        try run("pg_ctl", ["-D", data, "-l", directory.appendingPathComponent("log").path, "-w", "-t", "30",
                           "-o", "-p \(port) -k \(directory.path) \(options)", "start"])
    }

    /// A crash: `-m immediate`, no shutdown checkpoint, as a power cut leaves it.
    func crash() {
        guard FileManager.default.fileExists(atPath: data + "/postmaster.pid") else { return }
        try? run("pg_ctl", ["-D", data, "-m", "immediate", "-w", "stop"])
    }

    /// A standby made the primary (`pg_ctl promote`): it leaves recovery on a new timeline.
    func promote() throws {
        try run("pg_ctl", ["-D", data, "-w", "-t", "30", "promote"])
    }

    /// A fast shutdown: the server closes every connection at once.
    func stop() {
        guard FileManager.default.fileExists(atPath: data + "/postmaster.pid") else { return }
        try? run("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"])
    }

    deinit { stop() }
}
