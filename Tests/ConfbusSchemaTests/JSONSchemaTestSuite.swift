import ConfbusCore
import ConfbusSchema
import Foundation
import Testing

/// Loads the official JSON-Schema-Test-Suite from `../shared/json-schema-test-suite`
/// (or `CONFBUS_JSON_SCHEMA_TEST_SUITE`), with its `remotes/` registered under
/// `http://localhost:1234/`, as the suite's README asks. Nothing is fetched.
enum JSONSchemaTestSuite {
    struct Case: Sendable, CustomTestStringConvertible {
        var file: String
        var group: String
        var description: String
        var schema: JSONValue
        var data: JSONValue
        var valid: Bool
        var testDescription: String { "\(file) / \(group) / \(description)" }
    }

    static let root: URL = {
        if let dir = ProcessInfo.processInfo.environment["CONFBUS_JSON_SCHEMA_TEST_SUITE"] {
            return URL(fileURLWithPath: dir)
        }
        return URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/json-schema-test-suite")
    }()

    static let registry: SchemaRegistry = {
        var registry = SchemaRegistry.standard
        let remotes = root.appendingPathComponent("remotes")
        let files = FileManager.default.enumerator(at: remotes, includingPropertiesForKeys: nil)?
            .compactMap { $0 as? URL }.filter { $0.pathExtension == "json" } ?? []
        for file in files {
            let relative = file.path.dropFirst(remotes.path.count + 1)
            guard let data = try? Data(contentsOf: file), let document = try? JSONParser().parse([UInt8](data)) else { continue }
            registry.register(document, as: "http://localhost:1234/\(relative)")
        }
        return registry
    }()

    static func cases(in directory: String) -> [Case] {
        let dir = root.appendingPathComponent("tests/\(directory)")
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
            .filter { $0.hasSuffix(".json") }.sorted()
        var cases: [Case] = []
        for name in names {
            guard let data = try? Data(contentsOf: dir.appendingPathComponent(name)),
                  case .array(let groups) = try? JSONParser().parse([UInt8](data)) else { continue }
            for group in groups {
                guard let schema = group["schema"], case .array(let tests) = group["tests"] else { continue }
                for test in tests {
                    cases.append(Case(file: name, group: group["description"]?.stringValue ?? "",
                                      description: test["description"]?.stringValue ?? "",
                                      schema: schema, data: test["data"] ?? .null, valid: test["valid"] == .bool(true)))
                }
            }
        }
        return cases
    }

    static let required = cases(in: "draft2020-12")

    /// Runs one case and says whether the validator agreed with the suite.
    static func passes(_ c: Case, formatAssertion: Bool = false) -> Bool {
        var registry = registry
        let uri = registry.register(c.schema, as: "https://confbus.test/schema.json")
        let validator = SchemaValidator(registry: registry, uri: uri, options: .init(formatAssertion: formatAssertion))
        return validator.isValid(c.data) == c.valid
    }
}
