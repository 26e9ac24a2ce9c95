import ConfbusCore
import Foundation
import Testing

/// `mqtts://` (issue 9, CONTRACT.md §10): a mosquitto TLS listener with a CA and a server
/// certificate made here with openssl; confbus connects, verifies the broker and publishes over it,
/// and refuses a broker its CAs do not vouch for.
@Suite(.requiresPostgres, .requiresMQTT, .serialized)
struct TLSTests {
    /// A CA, and a certificate for 127.0.0.1 and localhost signed by it; returns (ca, cert, key) paths.
    static func makeCertificates(in dir: URL, name: String) throws -> (ca: String, cert: String, key: String) {
        func openssl(_ arguments: [String]) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            p.arguments = arguments
            p.currentDirectoryURL = dir
            p.standardOutput = FileHandle.nullDevice
            let err = Pipe()
            p.standardError = err
            try p.run()
            let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            try #require(p.terminationStatus == 0, "openssl \(arguments.first ?? ""): \(text)")
        }
        let ca = "\(name)-ca.pem", caKey = "\(name)-ca.key", key = "\(name)-server.key", csr = "\(name)-server.csr", cert = "\(name)-server.pem"
        try openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                     "-subj", "/CN=confbus test CA \(name)", "-keyout", caKey, "-out", ca])
        try openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
                     "-keyout", key, "-out", csr])
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(to: dir.appendingPathComponent("\(name)-san.ext"), atomically: true, encoding: .utf8)
        try openssl(["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial", "-days", "2",
                     "-extfile", "\(name)-san.ext", "-out", cert])
        if getuid() == 0 {
            // The broker runs as the mosquitto user and must read its key.
            for file in [key, cert, ca] { chown(dir.appendingPathComponent(file).path, mosquittoUID(), 0) }
        }
        return (dir.appendingPathComponent(ca).path, dir.appendingPathComponent(cert).path, dir.appendingPathComponent(key).path)
    }

    @Test(.timeLimit(.minutes(3)))
    func confbusPublishesOverTLSAndRefusesABrokerItCannotVerify() async throws {
        _ = try #require(TestServers.mqttURL)
        let dir = try Harness.temporaryDirectory("tls")
        if getuid() == 0 { chown(dir.path, mosquittoUID(), 0) }
        let good = try Self.makeCertificates(in: dir, name: "good")
        let other = try Self.makeCertificates(in: dir, name: "other")
        let tlsPort = try Harness.freePort()
        let broker = try Broker(extra: """
            listener \(tlsPort) 127.0.0.1
            cafile \(good.ca)
            certfile \(good.cert)
            keyfile \(good.key)
            tls_version tlsv1.2
            """)
        try await broker.start()
        defer { broker.stop() }
        try await waitForPort(tlsPort)
        let url = "mqtts://127.0.0.1:\(tlsPort)"

        let tree = try Harness.copyOfExampleTree()
        let confbus = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: url,
                                  environment: ["CONFBUS_MQTT_CA_FILE": good.ca])
        try await confbus.start()
        defer { confbus.stop() }
        let ready = try await confbus.get("/readyz")
        #expect(ready.status == 200 && ready.json?["mqtt"] == "connected")
        // A subscriber over TLS receives the retained update confbus published over TLS.
        let probe = try await MQTTProbe(url: url, caFile: good.ca)
        try probe.subscribe(confbus.topic("update", "billing-api"))
        let update = try await probe.waitFor(confbus.topic("update", "billing-api"))
        #expect(update.json?["version"] == .integer(1))
        await probe.shutdown()

        // The same broker, with CAs that do not vouch for its certificate: confbus never connects.
        let untrusting = try Confbus(configDir: tree, databaseURL: try await Harness.createDatabase(), mqttURL: url,
                                     environment: ["CONFBUS_MQTT_CA_FILE": other.ca])
        try await untrusting.start(waitUntilReady: false)
        defer { untrusting.stop() }
        try await Task.sleep(for: .seconds(2))
        let refused = try await untrusting.get("/readyz")
        #expect(refused.status == 503 && refused.json?["mqtt"] != "connected")
    }

    static func curl(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-s", "--max-time", "5"] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return (p.terminationStatus, text)
    }

    @Test(.timeLimit(.minutes(2)))
    func theAPIIsServedOverHTTPSWithTheGivenCertificate() async throws {
        let broker = try #require(TestServers.mqttURL)
        let dir = try Harness.temporaryDirectory("https")
        let certificates = try Self.makeCertificates(in: dir, name: "api")
        let confbus = try Confbus(configDir: try Harness.copyOfExampleTree(), databaseURL: try await Harness.createDatabase(), mqttURL: broker,
                                  environment: ["CONFBUS_TLS_CERT_FILE": certificates.cert, "CONFBUS_TLS_KEY_FILE": certificates.key])
        try await confbus.start(waitUntilReady: false)
        defer { confbus.stop() }
        let url = "https://127.0.0.1:\(confbus.httpPort)"
        var ready = (status: Int32(-1), output: "")
        for _ in 0..<100 {
            ready = try Self.curl(["--cacert", certificates.ca, "\(url)/readyz"])
            if ready.output.contains("\"mqtt\":\"connected\"") && ready.output.contains("\"database\":\"connected\"") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(ready.status == 0 && ready.output.contains("\"database\":\"connected\""), "\(confbus.logTail())")
        let document = try Self.curl(["--cacert", certificates.ca, "\(url)/v1/config/billing-api"])
        #expect(try JSONParser().parse(document.output)["service"] == "billing-api")
        // Without the CA the certificate is not trusted, and plain HTTP gets no answer from the TLS port.
        #expect(try Self.curl(["\(url)/healthz"]).status != 0)
        #expect(try Self.curl(["http://127.0.0.1:\(confbus.httpPort)/healthz"]).output.isEmpty)
    }
}
