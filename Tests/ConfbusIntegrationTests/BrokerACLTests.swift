import ConfbusMQTT
import ConfbusMosquitto
import Foundation
import Testing

/// The broker configuration shipped in docker/mosquitto: authentication on (a password file written
/// by `confbus mqtt passwd`), and an ACL in which only confbus may publish updates. Also exercises
/// user/password from the MQTT URL.
@Suite(.requiresMQTT, .serialized)
struct BrokerACLTests {
    @Test(.timeLimit(.minutes(1)))
    func onlyConfbusMayPublishUpdates() async throws {
        _ = try #require(TestServers.mqttURL)
        let dir = try Harness.temporaryDirectory("acl")
        let port = try Harness.freePort()
        let shipped = Harness.repo.appendingPathComponent("docker/mosquitto")
        let conf = try String(contentsOf: shipped.appendingPathComponent("mosquitto.conf"), encoding: .utf8)
            .replacingOccurrences(of: "/mosquitto/config/", with: dir.path + "/")
            .replacingOccurrences(of: "/mosquitto/data/", with: dir.path + "/")
            .replacingOccurrences(of: "listener 1883", with: "listener \(port) 127.0.0.1")
        try conf.write(to: dir.appendingPathComponent("mosquitto.conf"), atomically: true, encoding: .utf8)
        // The ACL is the one `confbus mqtt acl` writes for the example tree (the one shipped in docker/).
        let acl = Process()
        acl.executableURL = try Harness.binary()
        acl.arguments = ["mqtt", "acl", "--config-dir", Harness.repo.appendingPathComponent("config").path,
                         "--output", dir.appendingPathComponent("acl").path]
        try acl.run()
        acl.waitUntilExit()
        #expect(acl.terminationStatus == 0)
        let written = try String(contentsOf: dir.appendingPathComponent("acl"), encoding: .utf8)
        let shippedACL = try String(contentsOf: shipped.appendingPathComponent("acl"), encoding: .utf8)
        #expect(written.split(separator: "\n").dropFirst() == shippedACL.split(separator: "\n").dropFirst(), "docker/mosquitto/acl is out of date")
        let passwd = dir.appendingPathComponent("passwd")
        FileManager.default.createFile(atPath: passwd.path, contents: nil)
        // The password file is written by `confbus mqtt passwd` (mosquitto's $7$ format), which
        // prints each new secret once on its last line; mosquitto itself then accepts or refuses.
        var secrets: [String: String] = [:]
        for user in ["_confbus", "billing-api"] {
            let p = Process()
            p.executableURL = try Harness.binary()
            p.arguments = ["mqtt", "passwd", user, "--password-file", passwd.path]
            let output = Pipe()
            p.standardOutput = output
            try p.run()
            let printed = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
            let secret = try #require(printed.split(separator: "\n").last.map(String.init))
            #expect(secret.count == 43)
            secrets[user] = secret
        }
        // Rotating replaces the line: the old secret no longer works (checked below), the file has one per user.
        let first = try #require(secrets["billing-api"])
        let rotate = Process()
        rotate.executableURL = try Harness.binary()
        rotate.arguments = ["mqtt", "passwd", "billing-api", "--password-file", passwd.path]
        let rotated = Pipe()
        rotate.standardOutput = rotated
        try rotate.run()
        secrets["billing-api"] = String(decoding: rotated.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").last.map(String.init)
        rotate.waitUntilExit()
        let file = try String(contentsOf: passwd, encoding: .utf8)
        #expect(file.split(separator: "\n").count == 2)
        #expect(!file.contains(first) && !file.contains(secrets["billing-api"] ?? "-"))
        let confbusSecret = try #require(secrets["_confbus"])
        let serviceSecret = try #require(secrets["billing-api"])
        if getuid() == 0 {
            for path in [dir.path, passwd.path, dir.appendingPathComponent("acl").path] { chown(path, mosquittoUID(), 0) }
            chmod(passwd.path, 0o600)
        }
        let broker = Process()
        broker.executableURL = URL(fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/sbin/mosquitto") ? "/usr/sbin/mosquitto" : "/usr/bin/mosquitto")
        broker.arguments = ["-c", dir.appendingPathComponent("mosquitto.conf").path]
        broker.standardError = FileHandle.nullDevice
        try broker.run()
        track(broker)
        defer { kill(broker.processIdentifier, SIGKILL); broker.waitUntilExit() }
        try await waitForPort(port)
        // A wrong password is refused by the broker.
        func publishes(_ user: String, _ password: String) throws -> Bool {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/mosquitto_pub")
            p.arguments = ["-h", "127.0.0.1", "-p", String(port), "-u", user, "-P", password, "-q", "1",
                           "-t", "config/register/\(user)", "-m", #"{"instance": "probe"}"#]
            p.standardError = FileHandle.nullDevice
            p.standardOutput = FileHandle.nullDevice
            try p.run()
            p.waitUntilExit()
            return p.terminationStatus == 0
        }
        #expect(try publishes("billing-api", serviceSecret))
        #expect(try !publishes("billing-api", first))

        let confbus = try await MQTTProbe(url: "mqtt://_confbus:\(confbusSecret)@127.0.0.1:\(port)", name: "confbus")
        defer { Task { await confbus.shutdown() } }
        let service = try await MQTTProbe(url: "mqtt://billing-api:\(serviceSecret)@127.0.0.1:\(port)", name: "billing-api")
        defer { Task { await service.shutdown() } }

        try await confbus.publish("config/update/billing-api", #"{"version": 1}"#, retain: true)
        try await service.publish("config/register/billing-api", #"{"instance": "web-1"}"#)
        await #expect(throws: MQTTError.self) {
            try await service.publish("config/update/billing-api", #"{"version": 99}"#, retain: true)
        }
        await #expect(throws: MQTTError.self) {
            try await service.publish("config/register/worker", #"{"instance": "x"}"#)
        }
        // Health and acks only under the instance's own client id.
        let instance = try await MQTTProbe(url: "mqtt://billing-api:\(serviceSecret)@127.0.0.1:\(port)", name: "web", clientID: "web-7")
        defer { Task { await instance.shutdown() } }
        try await instance.publish("config/health/billing-api/web-7", #"{"status": "ok"}"#)
        try await instance.publish("config/ack/billing-api/web-7", #"{"version": 1, "status": "applied"}"#)
        await #expect(throws: MQTTError.self) {
            try await instance.publish("config/health/billing-api/web-8", #"{"status": "ok"}"#)
        }
        await #expect(throws: MQTTError.self) {
            try await instance.publish("config/ack/report-worker/web-7", #"{"version": 1, "status": "applied"}"#)
        }
        // The service reads its own update; the forged one never replaced it.
        try service.subscribe("config/update/billing-api")
        let retained = try await service.waitFor("config/update/billing-api")
        #expect(retained.json?["version"] == .integer(1))
    }
}
