// A small service that reads its settings through ConfbusProvider (CONTRACT.md §9): its
// `GET /settings` answers with the pool size and log level of the version it holds, and a PATCH of
// billing-api's override on confbus changes them live, without a restart.
//
//   swift run billing-example --instance web-1     (after `make run`; see README "Use it from a service")
import ConfbusClient
import Configuration
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

@main
struct BillingService {
    static func main() async throws {
        let arguments = CommandLine.arguments
        func option(_ name: String) -> String? { arguments.firstIndex(of: name).flatMap { arguments.indices.contains($0 + 1) ? arguments[$0 + 1] : nil } }
        let environment = ProcessInfo.processInfo.environment
        var logger = Logger(label: "billing-example")
        logger.logLevel = .info

        var client = ConfbusClientService.Configuration(
            service: "billing-api", instance: option("--instance") ?? "example-1",
            serverURL: option("--url") ?? environment["CONFBUS_URL"] ?? "http://127.0.0.1:8080",
            mqttURL: option("--mqtt-url") ?? environment["CONFBUS_MQTT_URL"])
        client.topicPrefix = option("--topic-prefix") ?? "config"
        client.token = environment["CONFBUS_TOKEN"]
        client.cacheDirectory = option("--cache-dir") ?? ".billing-cache"
        client.startup = .lastKnownGood(maxWait: .seconds(10))
        // The application's last word, past what the schema allows: this host takes at most 100
        // database connections, so a larger pool is refused (acked rejected) and the last one kept.
        let confbus = ConfbusClientService(configuration: client, logger: logger) { document in
            (document.config["database"]?["pool_size"]?.integralValue ?? 0) > 100 ? .reject("this host takes at most 100 connections") : .accept
        }
        // confbus first; the defaults under it answer for anything it does not hold.
        let config = ConfigReader(providers: [
            confbus.provider,
            InMemoryProvider(values: ["database.pool_size": 5, "log_level": "info"]),
        ])

        let router = Router()
        router.get("/settings") { _, _ -> String in
            let pool = config.int(forKey: "database.pool_size", default: 5)
            let level = config.string(forKey: "log_level", default: "info")
            return #"{"version": \#(confbus.heldVersion), "pool_size": \#(pool), "log_level": "\#(level)"}"# + "\n"
        }
        let port = Int(option("--port") ?? "") ?? 8090
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [.init(service: confbus), .init(service: app)],
                                                      gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
