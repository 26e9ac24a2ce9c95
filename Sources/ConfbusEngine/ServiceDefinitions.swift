import ConfbusCore

/// The files side of every use case: the config tree behind its async seam and the resolver
/// that turns a service's files and override layer into a validated config.
public struct ServiceDefinitions: Sendable {
    public let tree: ConfigTree
    public let resolver: ServiceResolver

    public init(source: any ConfigSource, resolver: ServiceResolver, environment: String) {
        self.tree = ConfigTree(source: source, environment: environment)
        self.resolver = resolver
    }

    public var environment: String { tree.environment }

    func resolve(_ files: ServiceFiles, layer: JSONValue?) -> ServiceResolution {
        resolver.resolve(files, source: tree.source, opsOverride: layer)
    }

    func validate(_ config: JSONValue, files: ServiceFiles) -> [ConfbusError] {
        resolver.validate(config, files: files)
    }

    /// The service's JSON Schema as its file holds it.
    public func schema(_ service: ServiceName) async -> JSONValue? {
        // Read on the tree's queue: a source may parse the file again here.
        await tree.compute { [tree] in tree.source.load(service, environment: tree.environment).schema?.value }
    }

    /// Which paths the service's schema marks secret: from the schema last compiled for it when
    /// there is one (a pull reads no file), else from its files.
    /// What is secret in `service` as far as it is known without reading files: every member when
    /// its schema has not been read yet.
    public func knownSecrets(_ service: ServiceName) -> Redaction { resolver.knownRedaction(service) ?? .everything }

    /// Where the service's schema puts feature flags (`*`: any member or item): from the schema last
    /// compiled for it when there is one (as for secrets), else from its files.
    public func flagPaths(_ service: ServiceName) async -> [[String]] {
        if let known = resolver.knownFlagPaths(service) { return known }
        let files = await tree.load(service)
        return await tree.compute { [resolver] in resolver.flagPaths(files: files) }
    }

    public func redaction(_ service: ServiceName) async -> Redaction {
        if let known = resolver.knownRedaction(service) { return known }
        let files = await tree.load(service)
        return await tree.compute { [resolver] in resolver.redaction(files: files) }
    }
}

/// Services whose files are invalid right now; their last valid version stays live. Written by
/// reloads and first registrations, read by the API and the health topic.
public final class InvalidServices: Sendable {
    private let state = Mutex<[ServiceName: [ConfbusError]]>([:])

    public init() {}

    public var all: [ServiceName: [ConfbusError]] { state.withLock { $0 } }

    func set(_ service: ServiceName, _ errors: [ConfbusError]?) {
        state.withLock { $0[service] = errors }
    }

    func replace(_ all: [ServiceName: [ConfbusError]]) {
        state.withLock { $0 = all }
    }
}

import Synchronization
