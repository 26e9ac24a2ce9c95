import Foundation

/// `mqtt://user:pass@host:port` or `mqtts://…` (CONTRACT.md §6). The password never appears in
/// `description`.
public struct MQTTURL: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var tls: Bool
    public var username: String?
    public var password: String?

    public init(_ text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme?.lowercased(),
              scheme == "mqtt" || scheme == "mqtts", let host = components.host, !host.isEmpty
        else { throw MQTTError.invalidURL }
        self.host = host
        self.tls = scheme == "mqtts"
        self.port = components.port ?? (tls ? 8883 : 1883)
        self.username = components.user?.removingPercentEncoding
        self.password = components.password?.removingPercentEncoding
    }

    public var description: String {
        "\(tls ? "mqtts" : "mqtt")://\(username.map { "\($0):***@" } ?? "")\(host):\(port)"
    }
}

public enum MQTTError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidURL
    case notConnected
    case refused(reasonCode: Int)
    case library(code: Int32, message: String)
    case timedOut
    case shutDown
    /// Larger than the broker's Maximum Packet Size.
    case tooLarge

    /// A short label for metrics: `refused_0x87`, `timeout`, `not_connected`, `too_large`, `error`.
    public var reasonLabel: String {
        switch self {
        case .refused(let code): "refused_0x\(String(code, radix: 16))"
        case .timedOut: "timeout"
        case .notConnected, .shutDown: "not_connected"
        case .tooLarge: "too_large"
        case .invalidURL, .library: "error"
        }
    }

    public var description: String {
        switch self {
        case .invalidURL: "invalid MQTT URL: use mqtt://[user:pass@]host[:port] or mqtts://…"
        case .notConnected: "not connected to the MQTT broker"
        case .refused(let code): "the broker refused the publish (MQTT 5 reason code 0x\(String(code, radix: 16)))"
        case .library(let code, let message): "libmosquitto error \(code): \(message)"
        case .timedOut: "the broker did not acknowledge in time"
        case .shutDown: "the MQTT client is shutting down"
        case .tooLarge: "the message is larger than the broker's maximum packet size"
        }
    }
}
