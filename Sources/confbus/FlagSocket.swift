import ConfbusClient
import ConfbusCore
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle

/// `confbus agent --flags-socket PATH`: answers flag evaluations for a local process on a Unix
/// socket, from the version the agent holds (no network call per evaluation). One JSON request per
/// line, `{"flag": "/flags/new_checkout", "context": {"key": "user-1", "attributes": {...}}}`, one
/// JSON answer per line, `{"flag", "value", "reason", "version"}` or `{"error": "..."}`. A line
/// longer than 64 KiB is refused and the connection closed.
struct FlagSocket: Service {
    let path: String
    let provider: ConfbusProvider
    let logger: Logger
    static let maxLine = 64 * 1024

    func run() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        // The socket is for this host's processes of the same user.
        chmod(path, 0o600)
        logger.info("answering flag evaluations", metadata: ["path": "\(path)"])
        defer { unlink(path) }
        try await cancelWhenGracefulShutdown {
            try await withThrowingDiscardingTaskGroup { group in
                try await server.executeThenClose { connections in
                    for try await connection in connections {
                        group.addTask { await serve(connection) }
                    }
                }
            }
        }
    }

    private func serve(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        try? await connection.executeThenClose { inbound, outbound in
            var pending: [UInt8] = []
            for try await chunk in inbound {
                pending += chunk.readableBytesView
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(pending[..<newline])
                    pending.removeSubrange(...newline)
                    try await outbound.write(ByteBuffer(string: Self.answer(line, provider: provider) + "\n"))
                }
                if pending.count > Self.maxLine {
                    try await outbound.write(ByteBuffer(string: Self.error("a request line is longer than 64 KiB") + "\n"))
                    return
                }
            }
        }
    }

    /// One request line's answer.
    static func answer(_ line: [UInt8], provider: ConfbusProvider) -> String {
        guard case .object(let request)? = try? JSONParser().parse(line) else { return error(#"a request is one JSON object per line: {"flag": ..., "context": {...}}"#) }
        guard case .string(let pointer)? = request["flag"] else { return error("flag must be the flag's JSON pointer, such as /flags/new_checkout") }
        let context: FlagContext
        do {
            context = try FlagContext(json: request["context"] ?? .null)
        } catch {
            return Self.error("context\(error.path): \(error.message)")
        }
        let version = provider.version
        do {
            let result = try provider.evaluateFlag(pointer, for: context)
            return JSONValue.object(["flag": .string(pointer), "value": result.value.json, "reason": .string(result.reason),
                                     "version": .integer(version)]).serialized(.canonical)
        } catch {
            return Self.error(error.description)
        }
    }

    static func error(_ message: String) -> String { JSONValue.object(["error": .string(message)]).serialized(.canonical) }
}
