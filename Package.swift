// swift-tools-version:6.2
import PackageDescription

// Imports point one way: Core ← Schema ← Engine ← YAML ← confbus.
// Core and Schema import nothing but the standard library, Foundation and swift-crypto (for the
// checksum), so `confbus validate` and their tests need no running services.
let package = Package(
    name: "confbus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "confbus", targets: ["confbus"]),
        .library(name: "ConfbusCore", targets: ["ConfbusCore"]),
        .library(name: "ConfbusSchema", targets: ["ConfbusSchema"]),
        .library(name: "ConfbusClient", targets: ["ConfbusClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0", traits: ["YAML"]),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        .target(name: "ConfbusCore", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "ConfbusSchema", dependencies: ["ConfbusCore"]),
        .target(name: "ConfbusEngine", dependencies: [
            "ConfbusCore", "ConfbusSchema",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "ConfbusYAML", dependencies: [
            "ConfbusCore", "ConfbusEngine",
            .product(name: "Yams", package: "Yams"),
        ]),
        .systemLibrary(name: "CMosquitto", pkgConfig: "libmosquitto",
                       providers: [.apt(["libmosquitto-dev"]), .brew(["mosquitto"])]),
        // libmosquitto behind a Swift client: all a service needs of MQTT (ConfbusClient), no engine.
        .target(name: "ConfbusMosquitto", dependencies: [
            "CMosquitto",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "ConfbusMQTT", dependencies: [
            "ConfbusMosquitto", "ConfbusCore", "ConfbusEngine",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "ConfbusPostgres", dependencies: [
            "ConfbusCore", "ConfbusEngine",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        .target(name: "ConfbusHTTP", dependencies: [
            "ConfbusCore", "ConfbusEngine", "ConfbusSchema",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Mustache", package: "swift-mustache"),
        ]),
        .target(name: "ConfbusApp", dependencies: [
            "ConfbusCore", "ConfbusSchema", "ConfbusEngine", "ConfbusYAML", "ConfbusMQTT", "ConfbusMosquitto", "ConfbusPostgres", "ConfbusHTTP",
            .product(name: "Configuration", package: "swift-configuration"),
            .product(name: "SystemPackage", package: "swift-system"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
        ]),
        .executableTarget(name: "confbus", dependencies: [
            "ConfbusCore", "ConfbusSchema", "ConfbusEngine", "ConfbusYAML", "ConfbusApp", "ConfbusMQTT", "ConfbusMosquitto", "ConfbusClient",
            .product(name: "Yams", package: "Yams"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "_CryptoExtras", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .executableTarget(name: "ConfbusBench", dependencies: [
            "ConfbusCore", "ConfbusSchema", "ConfbusEngine", "ConfbusYAML", "ConfbusMQTT", "ConfbusMosquitto", "ConfbusClient",
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The client side (CONTRACT.md §9): a swift-configuration provider fed by the document a
        // service receives, verified, cached and applied only when newer.
        .target(name: "ConfbusClient", dependencies: [
            "ConfbusCore", "ConfbusSchema", "ConfbusMosquitto",
            .product(name: "Configuration", package: "swift-configuration"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Examples/: a Hummingbird service that reads its settings through ConfbusProvider.
        .executableTarget(name: "billing-example", dependencies: [
            "ConfbusClient",
            .product(name: "Configuration", package: "swift-configuration"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ], path: "Examples/BillingService"),
        .target(name: "ConfbusTestSupport", dependencies: ["ConfbusCore", "ConfbusEngine"]),
        .testTarget(name: "ConfbusCoreTests", dependencies: ["ConfbusCore"]),
        .testTarget(name: "ConfbusSchemaTests", dependencies: ["ConfbusCore", "ConfbusSchema"]),
        .testTarget(name: "ConfbusYAMLTests", dependencies: ["ConfbusCore", "ConfbusYAML"]),
        .testTarget(name: "ConfbusEngineTests", dependencies: [
            "ConfbusCore", "ConfbusSchema", "ConfbusEngine", "ConfbusYAML", "ConfbusTestSupport",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "ConfbusClientTests", dependencies: [
            "ConfbusCore", "ConfbusClient",
            .product(name: "Configuration", package: "swift-configuration"),
            .product(name: "ConfigurationTesting", package: "swift-configuration"),
        ]),
        .testTarget(name: "ConfbusCLITests", dependencies: ["ConfbusCore", "ConfbusTestSupport"]),
        .testTarget(name: "ConfbusMQTTTests", dependencies: ["ConfbusCore", "ConfbusMQTT", "ConfbusMosquitto"]),
        .testTarget(name: "ConfbusIntegrationTests", dependencies: [
            "ConfbusCore", "ConfbusEngine", "ConfbusYAML", "ConfbusMQTT", "ConfbusMosquitto", "ConfbusPostgres", "ConfbusTestSupport", "ConfbusClient",
            .product(name: "Configuration", package: "swift-configuration"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
