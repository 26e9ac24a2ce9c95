import ConfbusCore
import Foundation

/// The document of `GET /v1/export` and `POST /v1/import`: every service's override layer and
/// versions, verbatim. It carries no export time, so exporting what was imported gives the same
/// document byte for byte.
public enum ExportDocument {
    public static let format = "confbus-export/1"

    /// `secretsMasked` marks a document whose secret values are `"***"`: fit to read, not to import.
    public static func encode(_ services: [ServiceExport], environment: String, history: Bool, secretsMasked: Bool = false) -> JSONValue {
        var document = encodeServices(services, environment: environment, history: history)
        if secretsMasked, case .object(var object) = document {
            object["secrets_masked"] = true
            document = .object(object)
        }
        return document
    }

    private static func encodeServices(_ services: [ServiceExport], environment: String, history: Bool) -> JSONValue {
        .object([
            "format": .string(format),
            "environment": .string(environment),
            "history": .bool(history),
            "services": .array(services.map { s in
                .object([
                    "service": .string(s.service.rawValue),
                    "override_layer": s.overrideLayer ?? .null,
                    "versions": .array(s.versions.map { entry in
                        let v = entry.stored
                        return .object([
                            "version": .integer(v.version), "config": v.config, "checksum": .string(v.checksum),
                            "source": .string(v.source.rawValue), "author": .string(v.author),
                            "reason": v.reason.map(JSONValue.string) ?? .null,
                            "created_at": .string(Timestamp.format(v.createdAt)), "environment": .string(v.environment),
                            "batch_id": v.batchID.map { .string($0.lowercased()) } ?? .null,
                            "override_layer": entry.overrideLayer ?? .null,
                        ])
                    }),
                ])
            }),
        ])
    }

    /// Reads and checks an export: names, full consecutive history from 1, checksums that match.
    public static func decode(_ value: JSONValue) throws(ConfbusError) -> [ServiceExport] {
        func bad(_ message: String) -> ConfbusError { ConfbusError(code: .badRequest, message: message) }
        guard value["format"] == .string(format) else { throw bad("not a \(format) document") }
        switch value["secrets_masked"] {
        case nil, .bool?: break
        default: throw bad("\"secrets_masked\" must be a boolean")
        }
        if let history = value["history"], history.boolValue == nil { throw bad("\"history\" must be a boolean") }
        if let environment = value["environment"], environment.stringValue == nil { throw bad("\"environment\" must be a string") }
        guard value["secrets_masked"] != .bool(true) else {
            throw ConfbusError(code: .schemaViolation,
                               message: "this export has its secret values masked; export with secrets=true to back up and restore")
        }
        guard case .array(let services) = value["services"] else { throw bad("\"services\" must be an array") }
        func layerValue(_ value: JSONValue?, _ owner: String) throws(ConfbusError) -> JSONValue? {
            switch value {
            case nil, .null?: return nil
            case .object?: return value
            default: throw bad("\(owner): \"override_layer\" must be an object or null")
            }
        }
        var out: [ServiceExport] = []
        var seen = Set<ServiceName>()
        for (i, s) in services.enumerated() {
            guard case .string(let raw) = s["service"], let name = try? ServiceName(validating: raw) else {
                throw bad("services[\(i)]: invalid service name")
            }
            guard seen.insert(name).inserted else { throw ConfbusError(code: .invalidValue, message: "services[\(i)]: \(name) appears twice") }
            guard case .array(let versions) = s["versions"] else { throw bad("services[\(i)]: \"versions\" must be an array") }
            var entries: [ServiceExport.Version] = []
            for v in versions {
                // Numbers skip only before a repair (CONTRACT.md §11: a version the broker held and the database lost).
                let previous = entries.last?.stored.version ?? 0
                guard case .integer(let number) = v["version"],
                      number == previous + 1 || (number > previous + 1 && previous > 0 && v["source"] == "repair") else {
                    throw ConfbusError(code: .schemaViolation, service: raw,
                                       message: "\(name): versions must run 1, 2, 3… without gaps but before a repair (export with history=true to import)")
                }
                guard let config = v["config"], case .string(let checksum) = v["checksum"], checksum == config.checksum else {
                    throw ConfbusError(code: .schemaViolation, service: raw, message: "\(name) version \(number): the checksum does not match the config")
                }
                guard case .string(let source) = v["source"], let kind = VersionSource(rawValue: source),
                      case .string(let author) = v["author"], case .string(let at) = v["created_at"], let created = Timestamp.parse(at),
                      case .string(let environment) = v["environment"]
                else { throw bad("\(name) version \(number): missing or malformed fields") }
                let stored = StoredVersion(service: name, version: number, config: config, checksum: checksum, source: kind, author: author,
                                           reason: v["reason"]?.stringValue, createdAt: created, environment: environment,
                                           batchID: v["batch_id"]?.stringValue)
                let layer = try layerValue(v["override_layer"], "\(name) version \(number)")
                entries.append(.init(stored: stored, overrideLayer: layer))
            }
            let layer = try layerValue(s["override_layer"], "\(name)")
            out.append(ServiceExport(service: name, overrideLayer: layer, versions: entries))
        }
        return out
    }
}

extension Timestamp {
    /// Reads what `format` writes (`2026-11-25T17:00:00.000Z`).
    public static func parse(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: text)
    }
}

/// `GET /v1/export` and `POST /v1/import`: every service's layers and versions, verbatim.
public struct Archive: Sendable {
    let pipeline: CommitPipeline
    let definitions: ServiceDefinitions
    let store: any ArchiveStore

    public init(pipeline: CommitPipeline, definitions: ServiceDefinitions, store: any ArchiveStore) {
        self.pipeline = pipeline
        self.definitions = definitions
        self.store = store
    }

    /// Without `secrets`, every value a service's schema marks secret is `"***"`, in its versions and
    /// override layers (the checksums stay those of the real configs, so such a document cannot be
    /// imported).
    /// With `secrets` on a node that seals secrets at rest, they stay sealed in the document, which
    /// only a node with the same key can import.
    public func export(history: Bool, secrets: Bool = true) async throws -> JSONValue {
        var services = try await store.exportAll(history: history)
        let sealer = secrets ? pipeline.options.sealer : nil
        if !secrets || sealer != nil {
            for (i, service) in services.enumerated() {
                let redaction = await definitions.redaction(service.service)
                guard !redaction.isEmpty else { continue }
                let hide: (JSONValue) throws(SealingError) -> JSONValue = if let sealer {
                    { (value) throws(SealingError) in try sealer.seal(value, secrets: redaction, service: service.service.rawValue) }
                } else {
                    { value in redaction.apply(to: value) }
                }
                do {
                    services[i].overrideLayer = try service.overrideLayer.map(hide)
                    for (n, entry) in service.versions.enumerated() {
                        services[i].versions[n].stored.config = try hide(entry.stored.config)
                        services[i].versions[n].overrideLayer = try entry.overrideLayer.map(hide)
                    }
                } catch {
                    throw ConfbusError(code: .sealedValue, service: service.service.rawValue, message: error.message)
                }
            }
        }
        return ExportDocument.encode(services, environment: pipeline.options.environment, history: history, secretsMasked: !secrets)
    }

    /// The export with every sealed value opened by this node's key; checksums are of the plain configs.
    func opened(_ document: JSONValue) throws(ConfbusError) -> JSONValue {
        guard SecretSealer.holdsEnvelopes(document), case .object(var object) = document, case .array(var services)? = object["services"] else {
            return document
        }
        guard let sealer = pipeline.options.sealer else {
            let keys = SecretSealer.keyIDs(in: document).sorted().joined(separator: ", ")
            throw ConfbusError(code: .sealedValue, message: "this export holds secrets sealed under key \(keys); import it on a node with that secret_key_file")
        }
        for (i, entry) in services.enumerated() {
            guard case .object(var service) = entry, case .string(let name)? = service["service"] else { continue }
            func open(_ value: JSONValue?) throws(ConfbusError) -> JSONValue? {
                guard let value else { return nil }
                do { return try sealer.unseal(value, service: name) } catch {
                    throw ConfbusError(code: .sealedValue, service: name, message: "\(name): \(error.message)")
                }
            }
            service["override_layer"] = try open(service["override_layer"])
            if case .array(var versions)? = service["versions"] {
                for (n, version) in versions.enumerated() {
                    guard case .object(var v) = version else { continue }
                    v["config"] = try open(v["config"])
                    v["override_layer"] = try open(v["override_layer"])
                    versions[n] = .object(v)
                }
                service["versions"] = .array(versions)
            }
            services[i] = .object(service)
        }
        object["services"] = .array(services)
        return .object(object)
    }

    /// Stores an export in a database without those services; returns how many versions it held.
    /// Every version must satisfy its service's schema (where the tree has one) and be publishable (§6b).
    public func importDocument(_ value: JSONValue, by context: OperatorContext) async throws -> Int {
        var services = try ExportDocument.decode(try opened(value))
        for (i, export) in services.enumerated() { services[i].secrets = await definitions.redaction(export.service) }
        var issues: [ValidationIssue] = []
        for export in services {
            let files = await definitions.tree.hasService(export.service) ? await definitions.tree.load(export.service) : nil
            for entry in export.versions {
                let stored = entry.stored
                var errors = files.map { definitions.validate(stored.config, files: $0) } ?? []
                do {
                    try pipeline.limits.check(stored.config, service: export.service, version: stored.version, environment: stored.environment)
                } catch {
                    errors.append(error)
                }
                issues += errors.flatMap(\.locatedIssues).map { issue in
                    var i = issue
                    i.service = export.service.rawValue
                    i.message = "\(export.service) version \(stored.version): \(issue.message)"
                    return i
                }
            }
        }
        guard issues.isEmpty else {
            throw ConfbusError(code: .schemaViolation, message: "the import is refused: some versions are invalid; nothing was stored", issues: issues)
        }
        let audit = AuditRecord(actor: context.actor, requestID: context.requestID, action: "import", outcome: "accepted",
                                services: services.map(\.service.rawValue), reason: context.reason)
        try await pipeline.treeLock.withLock { [services] in try await store.importAll(services, audit: audit) }
        pipeline.committed(services.compactMap { $0.versions.last.map { .committed($0.stored) } })
        return services.reduce(0) { $0 + $1.versions.count }
    }
}
