import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Where `make test` put the private PostgreSQL and mosquitto. Under `CI=true` the gate is always
/// open, so a missing server fails the run instead of skipping it.
enum TestServers {
    static let environment = ProcessInfo.processInfo.environment
    static var isCI: Bool { environment["CI"] == "true" }
    static var databaseURL: String? { environment["CONFBUS_TEST_DATABASE_URL"] }
    static var mqttURL: String? { environment["CONFBUS_TEST_MQTT_URL"] }

    static func hostAndPort(_ url: String, defaultPort: UInt16) throws -> (String, UInt16) {
        let components = try #require(URLComponents(string: url), "not a URL: \(url)")
        return (components.host ?? "127.0.0.1", components.port.map(UInt16.init) ?? defaultPort)
    }
}

extension Trait where Self == ConditionTrait {
    static var requiresPostgres: Self {
        .enabled(if: TestServers.databaseURL != nil || TestServers.isCI, "needs CONFBUS_TEST_DATABASE_URL (make test sets it)")
    }
    static var requiresMQTT: Self {
        .enabled(if: TestServers.mqttURL != nil || TestServers.isCI, "needs CONFBUS_TEST_MQTT_URL (make test sets it)")
    }
}

/// A blocking TCP client, just enough to speak the first bytes of a protocol to a server.
struct TCPClient: ~Copyable {
    let fd: Int32

    init(host: String, port: UInt16) throws {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &result) == 0, let info = result else {
            throw POSIXError(.EHOSTUNREACH)
        }
        defer { freeaddrinfo(result) }
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        guard connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 else {
            close(fd)
            throw POSIXError(.ECONNREFUSED)
        }
        self.fd = fd
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws {
        let sent = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        guard sent == bytes.count else { throw POSIXError(.EPIPE) }
    }

    func receive(atMost count: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, count, 0) }
        guard received > 0 else { throw POSIXError(.ECONNRESET) }
        return Array(buffer.prefix(received))
    }
}
