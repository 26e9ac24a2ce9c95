import ConfbusCore
import ConfbusEngine
import Testing

/// CONTRACT.md §2: the layers, their order, merge-patch semantics, override variables and provenance.
struct ServiceResolverTests {
    static let schema = """
        type: object
        additionalProperties: false
        properties:
          database:
            type: object
            properties:
              host: { type: string }
              port: { type: integer, default: 5432 }
              pool_size: { type: integer, minimum: 1, maximum: 200, default: 10 }
              ssl-mode: { enum: [disable, require], default: require }
          cache:
            type: object
            properties:
              ttl: { type: integer, default: 60 }
          version: { type: string }
          tags: { type: array, items: { type: string } }
          log_level: { enum: [debug, info], default: info }
        """

    private func resolve(_ files: [String: String], variables: [String: String] = [:], environment: String = "production",
                         override: JSONValue? = nil) -> ServiceResolution {
        var all = files
        all["schema.yaml"] = all["schema.yaml"] ?? Self.schema
        let source = InMemoryConfigSource(files: ["billing-api": all])
        let resolver = ServiceResolver(options: .init(environment: environment), overrides: OverrideVariables(environment: variables))
        let name = try! ServiceName(validating: "billing-api")
        return resolver.resolve(source.load(name, environment: environment), source: source, opsOverride: override)
    }

    @Test func layersApplyInOrder() throws {
        let r = resolve([
            "defaults.yaml": "database: {host: localhost, pool_size: 5}\nlog_level: debug",
            "production.yaml": "database: {host: db1}",
        ], variables: ["CONFBUS_OVERRIDE__BILLING_API__DATABASE__POOL_SIZE": "50"],
           override: ["log_level": "info"])
        let config = try #require(r.resolved?.config)
        #expect(config == [
            "database": ["host": "db1", "port": 5432, "pool_size": 50, "ssl-mode": "require"],
            "log_level": "info",
        ])
        let p = try #require(r.resolved?.provenance)
        #expect(p[JSONPointer("/database/host")!]?.layer == .environment)
        #expect(p[JSONPointer("/database/host")!]?.location == SourceLocation(file: "billing-api/production.yaml", line: 1, column: 12))
        #expect(p[JSONPointer("/database/port")!]?.layer == .schemaDefault)
        #expect(p[JSONPointer("/database/pool_size")!]?.layer == .variable)
        #expect(p[JSONPointer("/log_level")!]?.layer == .override)
        #expect(r.resolved?.checksum == config.checksum)
    }

    @Test func schemaDefaultsOnlyWherTheParentIsPresent() throws {
        let r = resolve(["defaults.yaml": "database: {host: h}"])
        let config = try #require(r.resolved?.config)
        #expect(config["cache"] == nil)                       // cache absent and not defaulted: no ttl
        #expect(config["database"]?["port"] == .integer(5432))
        #expect(config["log_level"] == .string("info"))       // root is always present
    }

    @Test func nullInAHigherLayerRemovesADefaultedKey() throws {
        let r = resolve(["defaults.yaml": "database: {host: h, port: null}"])
        #expect(r.resolved?.config["database"]?["port"] == nil)
        let viaVariable = resolve(["defaults.yaml": "database: {host: h}"],
                                  variables: ["CONFBUS_OVERRIDE__BILLING_API__DATABASE__PORT": "null"])
        #expect(viaVariable.resolved?.config["database"]?["port"] == nil)
    }

    @Test func arraysAreReplacedWhole() throws {
        let r = resolve(["defaults.yaml": "tags: [a, b, c]", "production.yaml": "tags: [z]"])
        #expect(r.resolved?.config["tags"] == ["z"])
    }

    @Test func variableSegmentsMatchKeysThenSchemaThenLowerCase() throws {
        // `SSL_MODE` matches the schema's `ssl-mode` (`_` matches `-`), case-insensitively.
        let r = resolve(["defaults.yaml": "database: {host: h}"],
                        variables: ["CONFBUS_OVERRIDE__billing_api__Database__SSL_MODE": "disable"])
        #expect(r.resolved?.config["database"]?["ssl-mode"] == .string("disable"))
        // An unknown key is used lower-cased, and then the schema refuses it.
        let unknown = resolve(["defaults.yaml": "database: {host: h}"],
                              variables: ["CONFBUS_OVERRIDE__BILLING_API__NEW_THING": "1"])
        #expect(unknown.resolved == nil)
        #expect(unknown.errors.first?.issues.first?.instancePath.description == "/new_thing")
        #expect(unknown.errors.first?.message.contains("variable CONFBUS_OVERRIDE__BILLING_API__NEW_THING") == true)
    }

    @Test func variableValuesAreYAMLButStringsStayStrings() throws {
        let r = resolve(["defaults.yaml": "database: {host: h}"], variables: [
            "CONFBUS_OVERRIDE__BILLING_API__VERSION": "1.10",
            "CONFBUS_OVERRIDE__BILLING_API__TAGS": "[blue, green]",
        ])
        #expect(r.resolved?.config["version"] == .string("1.10"))
        #expect(r.resolved?.config["tags"] == ["blue", "green"])
    }

    @Test func badVariableValueFailsThatServiceWithAClearError() throws {
        let r = resolve(["defaults.yaml": "database: {host: h}"],
                        variables: ["CONFBUS_OVERRIDE__BILLING_API__TAGS": "[unclosed"])
        #expect(r.resolved == nil)
        #expect(r.errors.first?.code == .invalidOverride)
        #expect(r.errors.first?.message.contains("CONFBUS_OVERRIDE__BILLING_API__TAGS") == true)
    }

    @Test func variablesForOtherServicesAreIgnored() throws {
        let r = resolve(["defaults.yaml": "database: {host: h}"],
                        variables: ["CONFBUS_OVERRIDE__WORKER__DATABASE__HOST": "x"])
        #expect(r.resolved?.config["database"]?["host"] == .string("h"))
    }

    @Test func invalidResultNamesFileLineAndPointer() throws {
        let r = resolve(["defaults.yaml": "database:\n  host: h\n  pool_size: 500\n"])
        #expect(r.resolved == nil)
        let error = try #require(r.errors.first)
        #expect(error.code == .schemaViolation)
        #expect(error.location == SourceLocation(file: "billing-api/defaults.yaml", line: 3, column: 3))
        #expect(error.issues.first?.instancePath.description == "/database/pool_size")
        #expect(error.message.contains("must be at most 200"))
    }

    @Test func missingSchemaIsAnErrorUnlessAllowed() throws {
        let source = InMemoryConfigSource(files: ["free": ["defaults.yaml": "a: 1"]])
        let name = try ServiceName(validating: "free")
        let strict = ServiceResolver(options: .init(), overrides: OverrideVariables(environment: [:]))
        #expect(strict.resolve(source.load(name, environment: "development"), source: source).errors.first?.code == .missingSchema)
        let lax = ServiceResolver(options: .init(allowSchemaless: true), overrides: OverrideVariables(environment: [:]))
        #expect(lax.resolve(source.load(name, environment: "development"), source: source).resolved?.config == ["a": 1])
    }

    @Test func everyProblemOfATreeIsReported() throws {
        let source = InMemoryConfigSource(files: [
            "good": ["schema.yaml": "type: object", "defaults.yaml": "a: 1"],
            "bad-value": ["schema.yaml": "properties: {a: {maximum: 1}}", "defaults.yaml": "a: 2"],
            "bad-yaml": ["schema.yaml": "type: object", "defaults.yaml": "a: [1"],
            "bad-schema": ["schema.yaml": "type: objekt", "defaults.yaml": "a: 1"],
        ])
        let report = TreeResolver(source: source, resolver: ServiceResolver(options: .init(), overrides: OverrideVariables(environment: [:]))).resolveAll()
        #expect(!report.isValid)
        #expect(Set(report.errors.compactMap(\.service)) == ["bad-value", "bad-yaml", "bad-schema"])
        #expect(report.resolutions.first { $0.service.rawValue == "good" }?.resolved != nil)
    }
}
