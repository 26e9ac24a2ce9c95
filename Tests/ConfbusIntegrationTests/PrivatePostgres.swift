import Foundation
import Testing

/// A PostgreSQL server of the test's own, on a free port, for tests that stop and start it
/// (the shared one serves every other test). Runs as the `confbus-pg` user when the tests run as root.
final class PrivatePostgres: @unchecked Sendable {
    let port: Int
    let directory: URL
    private let bin: String

    init() throws {
        port = try Harness.freePort()
        directory = try Harness.temporaryDirectory("pg")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        let version = try #require(versions.sorted { $0.compare($1, options: .numeric) == .orderedAscending }.last, "no PostgreSQL server")
        bin = "/usr/lib/postgresql/\(version)/bin"
        if getuid() == 0 {
            chmod(directory.deletingLastPathComponent().path, 0o755)
            chmod(directory.path, 0o777)
        }
        try run("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
    }

    var data: String { directory.appendingPathComponent("data").path }

    /// Connects as the superuser to the `postgres` database (trust authentication on loopback).
    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    private func run(_ tool: String, _ arguments: [String]) throws {
        let p = Process()
        if getuid() == 0 {
            p.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
            p.arguments = ["-u", "confbus-pg", "--", "\(bin)/\(tool)"] + arguments
        } else {
            p.executableURL = URL(fileURLWithPath: "\(bin)/\(tool)")
            p.arguments = arguments
        }
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // pg_ctl leaves a server running that inherited nothing of ours; reap the tool itself
        // directly (Foundation's own wait does not notice its end here).
        var status: Int32 = 0
        let reaped = waitpid(p.processIdentifier, &status, 0)
        let exitCode = reaped == p.processIdentifier ? (status >> 8) & 0xFF : p.terminationStatus
        try #require(exitCode == 0, "\(tool) \(arguments) failed")
    }

    func start() throws {
        try run("pg_ctl", ["-D", data, "-l", directory.appendingPathComponent("log").path, "-w", "-t", "30",
                           "-o", "-c listen_addresses=127.0.0.1 -p \(port) -k \(directory.path) -c fsync=off", "start"])
    }

    /// A fast shutdown: the server closes every connection at once.
    func stop() {
        guard FileManager.default.fileExists(atPath: data + "/postmaster.pid") else { return }
        try? run("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"])
    }

    deinit { stop() }
}
