import ConfbusCore

/// Resolves every service of a config tree: what `confbus validate` checks and what the
/// distributor commits.
public struct TreeResolver: Sendable {
    public struct Report: Sendable {
        public var resolutions: [ServiceResolution]
        /// Problems that belong to no single service (a bad folder name).
        public var treeErrors: [ConfbusError]
        public var warnings: [String]

        public var isValid: Bool { treeErrors.isEmpty && resolutions.allSatisfy { $0.errors.isEmpty } }
        public var errors: [ConfbusError] { treeErrors + resolutions.flatMap(\.errors) }
    }

    public let source: any ConfigSource
    public let resolver: ServiceResolver

    public init(source: any ConfigSource, resolver: ServiceResolver) {
        self.source = source
        self.resolver = resolver
    }

    /// Resolves every service; `overrides` holds the ops override layer of each service that has one.
    public func resolveAll(overrides: [ServiceName: JSONValue] = [:]) -> Report {
        let (services, treeErrors) = source.listServices()
        var warnings: [String] = []
        for variable in resolver.overrides.unmatched(services: services) {
            warnings.append("\(variable.name) names no service in the tree; it is ignored")
        }
        for name in resolver.overrides.malformed {
            warnings.append("\(name) is not CONFBUS_OVERRIDE__<SERVICE>__<KEY>[__<KEY>...]; it is ignored")
        }
        let resolutions = services.concurrentMap { name in
            resolver.resolve(source.load(name, environment: resolver.options.environment), source: source, opsOverride: overrides[name])
        }
        warnings += resolutions.flatMap(\.warnings)
        return Report(resolutions: resolutions, treeErrors: treeErrors, warnings: warnings)
    }
}
