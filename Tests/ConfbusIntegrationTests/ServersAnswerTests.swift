import Foundation
import Testing

/// The servers `make test` starts are real and speak their protocols. Later issues' integration
/// tests (version store, publisher) build on the same gate.
struct ServersAnswerTests {
    @Test(.requiresPostgres, .timeLimit(.minutes(1)))
    func postgresAnswersTheStartupHandshake() throws {
        let url = try #require(TestServers.databaseURL, "CONFBUS_TEST_DATABASE_URL is not set (run make test)")
        let (host, port) = try TestServers.hostAndPort(url, defaultPort: 5432)
        let client = try TCPClient(host: host, port: port)
        // StartupMessage, protocol 3.0, for the confbus role and database.
        var body: [UInt8] = [0, 3, 0, 0]
        for (key, value) in [("user", "confbus"), ("database", "confbus")] {
            body += Array(key.utf8) + [0] + Array(value.utf8) + [0]
        }
        body += [0]
        let length = UInt32(body.count + 4)
        try client.send(withUnsafeBytes(of: length.bigEndian, Array.init) + body)
        let reply = try client.receive(atMost: 64)
        // 'R': an authentication request (SCRAM, as scripts/services sets up), not an error ('E').
        #expect(reply.first == UInt8(ascii: "R"), "PostgreSQL answered \(reply)")
    }

    @Test(.requiresMQTT, .timeLimit(.minutes(1)))
    func mosquittoAcceptsAnMQTT5Connect() throws {
        let url = try #require(TestServers.mqttURL, "CONFBUS_TEST_MQTT_URL is not set (run make test)")
        let (host, port) = try TestServers.hostAndPort(url, defaultPort: 1883)
        let client = try TCPClient(host: host, port: port)
        let clientID = Array("confbus-test-\(UUID().uuidString.prefix(8))".utf8)
        var variable: [UInt8] = [0, 4] + Array("MQTT".utf8) + [5, 0x02, 0, 30, 0]   // v5, clean start, keepalive 30, no properties
        variable += [0, UInt8(clientID.count)] + clientID
        try client.send([0x10, UInt8(variable.count)] + variable)
        let reply = try client.receive(atMost: 64)
        #expect(reply.first == 0x20, "expected CONNACK, got \(reply)")
        #expect(reply.count >= 4 && reply[3] == 0x00, "CONNACK reason code \(reply)")
        try client.send([0xE0, 0])   // DISCONNECT
    }
}
