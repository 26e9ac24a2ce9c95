import ConfbusCore
import ConfbusSchema
import Foundation
import Synchronization

/// One service resolved and validated: the config a service receives, and where each value came from.
public struct ResolvedService: Sendable {
    public var service: ServiceName
    public var environment: String
    public var config: JSONValue
    public var checksum: String
    /// The layers merged into `config`, from which `provenance` is worked out when asked.
    let merged: LayerResolver.Result
    public var provenance: [JSONPointer: Provenance] { merged.provenance }
    /// The newest modification time of the service's files.
    public var updatedAt: Date?
    /// The members the service's schema marks secret.
    public var secrets: Redaction

    /// The resolved document of CONTRACT.md §3; `version` is added by whoever stores it.
    public func document(version: Int? = nil, updatedAt: Date? = nil) -> JSONValue {
        var object: [String: JSONValue] = [
            "service": .string(service.rawValue),
            "environment": .string(environment),
            "checksum": .string(checksum),
            "config": config,
        ]
        if let version { object["version"] = .integer(version) }
        if let at = updatedAt ?? self.updatedAt { object["updated_at"] = .string(Timestamp.format(at)) }
        return .object(object)
    }
}

/// The outcome of resolving one service: a config, or every error that stopped it.
public struct ServiceResolution: Sendable {
    public var service: ServiceName
    public var resolved: ResolvedService?
    /// The merged config even when it is invalid, for `--explain`.
    public var merged: LayerResolver.Result?
    public var errors: [ConfbusError]
    public var warnings: [String]
}

/// Resolves a service: compile its schema, merge the layers of CONTRACT.md §2, validate.
public struct ServiceResolver: Sendable {
    public struct Options: Sendable {
        public var environment: String
        public var allowSchemaless: Bool
        public var validator: SchemaValidator.Options

        public init(environment: String = "development", allowSchemaless: Bool = false,
                    validator: SchemaValidator.Options = .init()) {
            self.environment = environment
            self.allowSchemaless = allowSchemaless
            self.validator = validator
        }
    }

    public let options: Options
    public let overrides: OverrideVariables
    /// Compiled schemas by service and schema checksum: a resolution whose schema file did not
    /// change skips the metaschema check and compilation.
    private let compiled: SchemaCache

    /// `compiledSchemas`: how many services' compiled schemas are kept at most (the least recently
    /// used are let go and compiled again when next needed).
    public init(options: Options, overrides: OverrideVariables, compiledSchemas: Int = 1_000) {
        self.options = options
        self.overrides = overrides
        self.compiled = SchemaCache(capacity: compiledSchemas)
    }

    public func resolve(_ files: ServiceFiles, source: any ConfigSource,
                        opsOverride: JSONValue? = nil) -> ServiceResolution {
        let name = files.name
        var errors = files.errors.map { error -> ConfbusError in var e = error; e.service = name.rawValue; return e }
        var warnings: [String] = []

        var schema: CompiledSchema?
        if let schemaFile = files.schema {
            do {
                let compiledSchema = try compile(schemaFile, of: name)
                compiled.remember(Redaction(paths: compiledSchema.secretPaths), for: name)
                compiled.remember(flagPaths: compiledSchema.flagPaths, for: name)
                schema = compiledSchema
            } catch {
                let schemaFile = schemaFile.held
                for problem in error.problems {
                    errors.append(ConfbusError(code: .invalidSchema, service: name.rawValue,
                                               message: "\(problem.pointer.tokens.isEmpty ? "" : problem.pointer.description + ": ")\(problem.message)",
                                               location: schemaFile.location(of: problem.pointer) ?? SourceLocation(file: schemaFile.file, line: 1, column: 1)))
                }
            }
        } else if !files.errors.contains(where: { $0.code == .invalidYAML || $0.code == .unreadableFile || $0.code == .invalidJSON || $0.code == .documentTooLarge }) {
            // No schema file at all (not one that failed to read: then the last schema's secrets stand).
            compiled.remember(withoutSchema, for: name)
            compiled.remember(flagPaths: [], for: name)
            if !options.allowSchemaless {
                errors.append(ConfbusError(code: .missingSchema, service: name.rawValue,
                                           message: "no schema.yaml or schema.json: a service without a schema is distributed only with allow_schemaless: true"))
            }
        }
        let navigator = schema.map(SchemaNavigator.init)

        var patches: [LayerPatch] = []
        if let d = files.defaults { patches.append(LayerPatch(layer: .defaults, source: d.file, patch: d.value, locations: d.locations)) }
        if let e = files.environment { patches.append(LayerPatch(layer: .environment, source: e.file, patch: e.value, locations: e.locations)) }
        let lower = LayerResolver.merge(patches).config
        let withDefaults = navigator.map { MergePatch.apply(lower, to: $0.defaults(present: lower)) } ?? lower

        for variable in overrides.variables(for: name) {
            do {
                let patch = try variablePatch(variable, present: withDefaults, navigator: navigator, source: source)
                patches.append(LayerPatch(layer: .variable, source: variable.name, patch: patch))
            } catch {
                var e = error
                e.service = name.rawValue
                errors.append(e)
            }
        }
        if let opsOverride { patches.append(LayerPatch(layer: .override, source: "ops override", patch: opsOverride)) }

        let higher = LayerResolver.merge(patches).config
        if let navigator {
            patches.insert(LayerPatch(layer: .schemaDefault, source: "schema default", patch: navigator.defaults(present: higher)), at: 0)
        }
        let merged = LayerResolver.merge(patches)

        if let schema {
            var issues = schema.validate(merged.config)
            // A flag the schema passed may still serve a variant it lacks (CONTRACT.md §12).
            if issues.isEmpty { issues = FeatureFlag.problems(in: merged.config, paths: schema.flagPaths) }
            let provenances = issues.isEmpty ? [:] : merged.provenance
            for issue in issues {
                let provenance = provenances.nearest(to: issue.instancePath)
                var located = issue
                located.location = provenance?.location
                var message = "\(issue.description)"
                if let provenance, provenance.location == nil { message += " (set by \(provenance.layer) \(provenance.source))" }
                errors.append(ConfbusError(code: .schemaViolation, service: name.rawValue, message: message,
                                           location: provenance?.location, issues: [located]))
            }
        }
        if files.defaults == nil && files.environment == nil && errors.isEmpty {
            warnings.append("\(name): no defaults.yaml or \(options.environment).yaml; the config is built from schema defaults only")
        }
        guard errors.isEmpty else {
            return ServiceResolution(service: name, resolved: nil, merged: merged, errors: errors, warnings: warnings)
        }
        let modified = [files.schema, files.defaults, files.environment].compactMap { $0?.modified }.max()
        let resolved = ResolvedService(service: name, environment: options.environment, config: merged.config,
                                       checksum: merged.config.checksum, merged: merged, updatedAt: modified,
                                       secrets: schema.map { Redaction(paths: $0.secretPaths) } ?? withoutSchema)
        return ServiceResolution(service: name, resolved: resolved, merged: merged, errors: [], warnings: warnings)
    }

    /// The redaction of the service's secret values, from its current schema; a service whose
    /// schema cannot be read (a broken file, no file while schemas are required) has every member
    /// masked, since which of its values are secret is unknown.
    public func redaction(files: ServiceFiles) -> Redaction {
        let redaction: Redaction
        if let schemaFile = files.schema {
            redaction = (try? compile(schemaFile, of: files.name)).map { Redaction(paths: $0.secretPaths) } ?? .everything
        } else {
            redaction = withoutSchema
        }
        compiled.remember(redaction, for: files.name)
        return redaction
    }

    /// Where the service's current schema puts feature flags (CONTRACT.md §12); none without a
    /// schema or with one that does not compile.
    public func flagPaths(files: ServiceFiles) -> [[String]] {
        guard let schemaFile = files.schema else { return [] }
        let paths = (try? compile(schemaFile, of: files.name))?.flagPaths ?? []
        compiled.remember(flagPaths: paths, for: files.name)
        return paths
    }

    /// The flag paths this process last worked out for the service (by resolving it or by
    /// `flagPaths(files:)`), without touching a file: what every flag request asks. Nil before either.
    public func knownFlagPaths(_ service: ServiceName) -> [[String]]? { compiled.flagPaths(for: service) }

    /// The redaction this process last worked out for the service (by resolving it or by
    /// `redaction(files:)`), without touching a file: what every pull asks. Nil before either.
    public func knownRedaction(_ service: ServiceName) -> Redaction? { compiled.redaction(for: service) }

    /// A service without a schema file: nothing is secret where schemas are optional, and where
    /// they are required which values are secret is unknown, so every member is masked.
    private var withoutSchema: Redaction { options.allowSchemaless ? Redaction(paths: []) : .everything }

    /// The service's compiled schema, compiled again only when its file changed.
    private func compile(_ schemaFile: LoadedDocument, of service: ServiceName) throws(CompiledSchemaError) -> CompiledSchema {
        try compiled.schema(for: service, document: schemaFile.value, identity: schemaFile.identity) { () throws(CompiledSchemaError) -> CompiledSchema in
            // The tree is walked by path only for override variables; without any it is dropped once compiled.
            try CompiledSchema(schemaFile.value, uri: "urn:confbus:service:\(service.rawValue)", options: options.validator,
                               retainingDocument: !overrides.variables(for: service).isEmpty)
        }
    }

    /// Validates a config against the service's current schema (for rollbacks).
    public func validate(_ config: JSONValue, files: ServiceFiles) -> [ConfbusError] {
        guard let schemaFile = files.schema else {
            return options.allowSchemaless ? [] : [ConfbusError(code: .missingSchema, service: files.name.rawValue, message: "no schema")]
        }
        do {
            let schema = try compile(schemaFile, of: files.name)
            var issues = schema.validate(config)
            if issues.isEmpty { issues = FeatureFlag.problems(in: config, paths: schema.flagPaths) }
            return issues.map {
                ConfbusError(code: .schemaViolation, service: files.name.rawValue, message: $0.description, issues: [$0])
            }
        } catch {
            return [ConfbusError(code: .invalidSchema, service: files.name.rawValue, message: "the schema is invalid")]
        }
    }

    /// Builds the patch of one override variable: segments matched against the keys already
    /// present (layers 1–3), then the schema's properties, else lower-cased.
    func variablePatch(_ variable: OverrideVariables.Variable, present: JSONValue, navigator: SchemaNavigator?,
                       source: any ConfigSource) throws(ConfbusError) -> JSONValue {
        var path: [String] = []
        var level: JSONValue? = present
        for segment in variable.keySegments {
            let existing = level?.objectValue.map { $0.keys.sorted() } ?? []
            let declared = navigator?.propertyNames(at: path) ?? []
            let key = (existing + declared).first { OverrideVariables.segment(segment, matches: $0) } ?? segment.lowercased()
            path.append(key)
            level = level?[key]
        }
        var value: JSONValue
        do {
            value = try source.parseValue(variable.value, source: variable.name)
        } catch {
            throw ConfbusError(code: .invalidOverride,
                               message: "the value of \(variable.name) is not a YAML scalar or flow collection: \(error.message)",
                               location: error.location)
        }
        if let types = navigator?.declaredTypes(at: path), types == ["string"], value.stringValue == nil, !value.isNull {
            // The schema wants a string: keep what was typed (`VERSION=1.10` stays "1.10").
            value = .string(variable.value)
        }
        for key in path.reversed() { value = .object([key: value]) }
        return value
    }
}

/// RFC 3339 timestamps with milliseconds in UTC, as CONTRACT.md §3 writes `updated_at`.
public enum Timestamp {
    public static func format(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        let seconds = millis / 1000
        let days = Int(seconds / 86400)
        let secondOfDay = Int(seconds % 86400)
        // Civil-from-days (proleptic Gregorian), so no formatter or time zone is involved.
        let z = days + 719468
        let era = (z >= 0 ? z : z - 146096) / 146097
        let doe = z - era * 146097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func pad(_ v: Int, _ width: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, width - s.count)) + s }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2)).\(pad(Int(millis % 1000), 3))Z"
    }
}

/// Compiled schemas kept between resolutions, keyed by service and the schema's checksum, at most
/// `capacity` of them (the least recently used are let go past that).
final class SchemaCache: Sendable {
    private struct Entry: Sendable {
        var checksum: String
        var schema: CompiledSchema
    }

    private let entries: Mutex<LeastRecentlyUsed<ServiceName, Entry>>

    init(capacity: Int) {
        entries = Mutex(LeastRecentlyUsed(capacity: capacity))
    }

    /// `identity` names this version of the schema file when the source knows it; else the
    /// document's checksum does (the whole schema serialized and hashed on every call).
    func schema(for service: ServiceName, document: @autoclosure () -> JSONValue, identity: String? = nil,
                compile: () throws(CompiledSchemaError) -> CompiledSchema) throws(CompiledSchemaError) -> CompiledSchema {
        let checksum = identity ?? document().checksum
        if let hit = entries.withLock({ $0.use(service) }), hit.checksum == checksum { return hit.schema }
        let schema = try compile()
        entries.withLock { $0.keep(Entry(checksum: checksum, schema: schema), for: service) }
        return schema
    }

    /// Which values of each service are secret, as last worked out from its schema (or its lack of
    /// one): kept for every service, since every pull asks.
    private let redactions = Mutex<[ServiceName: Redaction]>([:])

    func remember(_ redaction: Redaction, for service: ServiceName) { redactions.withLock { $0[service] = redaction } }

    func redaction(for service: ServiceName) -> Redaction? { redactions.withLock { $0[service] } }

    /// Where each service's flags are, as last worked out from its schema.
    private let flags = Mutex<[ServiceName: [[String]]]>([:])

    func remember(flagPaths: [[String]], for service: ServiceName) { flags.withLock { $0[service] = flagPaths } }

    func flagPaths(for service: ServiceName) -> [[String]]? { flags.withLock { $0[service] } }
}
