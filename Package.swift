// swift-tools-version:6.0
import PackageDescription

// Imports point one way: Core ← Schema ← Engine ← YAML ← confbus.
// Core and Schema import nothing but the standard library and Foundation, so
// `confbus validate` and their tests need no running services.
let package = Package(
    name: "confbus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "confbus", targets: ["confbus"]),
        .library(name: "ConfbusCore", targets: ["ConfbusCore"]),
        .library(name: "ConfbusSchema", targets: ["ConfbusSchema"]),
    ],
    dependencies: [
        .package(url: "https://github.com/jpsim/Yams.git", exact: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .target(name: "ConfbusCore"),
        .target(name: "ConfbusSchema", dependencies: ["ConfbusCore"]),
        .target(name: "ConfbusEngine", dependencies: ["ConfbusCore", "ConfbusSchema"]),
        .target(name: "ConfbusYAML", dependencies: [
            "ConfbusCore", "ConfbusEngine",
            .product(name: "Yams", package: "Yams"),
        ]),
        .executableTarget(name: "confbus", dependencies: [
            "ConfbusCore", "ConfbusSchema", "ConfbusEngine", "ConfbusYAML",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "ConfbusBench", dependencies: [
            "ConfbusCore", "ConfbusSchema", "ConfbusEngine", "ConfbusYAML",
        ]),
        .testTarget(name: "ConfbusCoreTests", dependencies: ["ConfbusCore"]),
        .testTarget(name: "ConfbusSchemaTests", dependencies: ["ConfbusCore", "ConfbusSchema"]),
        .testTarget(name: "ConfbusYAMLTests", dependencies: ["ConfbusCore", "ConfbusYAML"]),
        .testTarget(name: "ConfbusEngineTests", dependencies: ["ConfbusCore", "ConfbusSchema", "ConfbusEngine", "ConfbusYAML"]),
        .testTarget(name: "ConfbusCLITests", dependencies: ["ConfbusCore"]),
        .testTarget(name: "ConfbusIntegrationTests", dependencies: ["ConfbusCore"]),
    ],
    swiftLanguageModes: [.v6]
)
