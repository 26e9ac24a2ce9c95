import ArgumentParser
import AsyncHTTPClient
import ConfbusCore
import Foundation
import NIOCore

/// Options every command that talks to a running distributor shares.
struct RemoteOptions: ParsableArguments {
    @Option(help: "The distributor's URL (default: CONFBUS_URL, else http://127.0.0.1:8080).")
    var url: String?

    @Option(help: "A bearer token (default: CONFBUS_TOKEN).")
    var token: String?

    @Option(help: "table (default) or json.")
    var output: Output = .table

    enum Output: String, ExpressibleByArgument { case table, json }

    var baseURL: String {
        (url ?? ProcessInfo.processInfo.environment["CONFBUS_URL"] ?? "http://127.0.0.1:8080").trimmingSuffix("/")
    }

    var bearer: String? { token ?? ProcessInfo.processInfo.environment["CONFBUS_TOKEN"] }
}

/// The command line's exit codes (issue 4): 0 ok, 1 refused, 2 usage, 3 cannot reach.
enum RemoteExit {
    static let refused = ExitCode(1)
    static let usage = ExitCode(2)
    static let unreachable = ExitCode(3)
}

/// A thin client of the HTTP API over async-http-client.
struct RemoteClient {
    let options: RemoteOptions

    struct Answer {
        var status: Int
        var body: [UInt8]
        var headers: [String: String]
        var json: JSONValue? { try? JSONParser().parse(body) }
    }

    func send(_ method: String, _ path: String, body: [UInt8]? = nil, contentType: String = "application/json",
              headers: [String: String] = [:]) async throws -> Answer {
        var request = HTTPClientRequest(url: options.baseURL + path)
        request.method = .init(rawValue: method)
        if let token = options.bearer { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body {
            request.headers.add(name: "Content-Type", value: contentType)
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        // A refused connection is an answer ("cannot reach"), not something to retry until the deadline.
        var configuration = HTTPClient.Configuration(timeout: .init(connect: .seconds(5), read: .seconds(120)))
        configuration.connectionPool.retryConnectionEstablishment = false
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let result: Result<Answer, any Error>
        do {
            let response = try await http.execute(request, timeout: .seconds(120))
            let buffer = try await response.body.collect(upTo: 256 << 20)
            var fields: [String: String] = [:]
            for header in response.headers { fields[header.name.lowercased()] = header.value }
            result = .success(Answer(status: Int(response.status.code), body: Array(buffer.readableBytesView), headers: fields))
        } catch {
            result = .failure(error)
        }
        try? await http.shutdown()
        switch result {
        case .success(let answer): return answer
        case .failure(let error):
            FileHandle.standardError.write(Data("confbus: cannot reach \(options.baseURL): \(error)\n".utf8))
            throw RemoteExit.unreachable
        }
    }

    /// Prints a problem+json answer and maps its status to an exit code; returns the answer if it is a success.
    @discardableResult
    func checked(_ answer: Answer) throws -> Answer {
        guard answer.status >= 300 && answer.status != 304 else { return answer }
        let problem = answer.json
        var message = "confbus: \(answer.status) \(problem?["title"]?.stringValue ?? ""): \(problem?["detail"]?.stringValue ?? String(decoding: answer.body.prefix(500), as: UTF8.self))"
        for error in problem?["errors"]?.arrayValue ?? [] {
            let service = error["service"]?.stringValue.map { "\($0) " } ?? ""
            message += "\n  \(service)\(error["path"]?.stringValue ?? ""): \(error["message"]?.stringValue ?? "")"
        }
        FileHandle.standardError.write(Data((message + "\n").utf8))
        throw answer.status >= 500 ? RemoteExit.unreachable : RemoteExit.refused
    }
}

/// Plain text tables for people.
enum Table {
    static func render(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
                .joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n") + "\n"
    }

    static func cell(_ value: JSONValue?) -> String {
        switch value {
        case nil, .null?: "-"
        case .string(let s)?: s
        case let v?: v.serialized()
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        var s = self
        while s.hasSuffix(suffix) { s.removeLast(suffix.count) }
        return s
    }
}

func emit(_ value: JSONValue, _ options: RemoteOptions, table: () -> String) {
    print(options.output == .json ? value.serialized(.pretty) : table(), terminator: options.output == .json ? "\n" : "")
}
