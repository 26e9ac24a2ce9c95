import ConfbusCore
import Foundation

/// A document read from the config tree, with where each value was written.
public struct LoadedDocument: Sendable {
    public var file: String
    public var value: JSONValue
    public var locations: SourceLocations
    public var modified: Date?
    /// What identifies this version of the file (device, inode, size, modification and change
    /// times), when the source knows it: equal identities mean equal contents, so a resolution
    /// made from them can be reused.
    public var identity: String?

    public init(file: String, value: JSONValue, locations: SourceLocations = [:], modified: Date? = nil,
                identity: String? = nil) {
        self.file = file
        self.value = value
        self.locations = locations
        self.modified = modified
        self.identity = identity
    }

    /// The place of the value at `pointer`, or of its nearest ancestor that has one.
    public func location(of pointer: JSONPointer) -> SourceLocation? { locations.nearest(to: pointer) }
}

/// What the config tree holds for one service. A file that could not be read or parsed is
/// absent here and its error is in `errors`, so that every problem of a tree is reported at once.
public struct ServiceFiles: Sendable {
    public var name: ServiceName
    public var schema: LoadedDocument?
    public var defaults: LoadedDocument?
    public var environment: LoadedDocument?
    public var errors: [ConfbusError]

    /// Equal for two loads of unchanged files; nil when the source cannot tell (nothing is reused then).
    public var identity: String? {
        guard errors.isEmpty else { return nil }
        var parts: [String] = []
        for document in [schema, defaults, environment] {
            guard let document else { parts.append("-"); continue }
            guard let identity = document.identity else { return nil }
            parts.append(identity)
        }
        return parts.joined(separator: "|")
    }

    public init(name: ServiceName, schema: LoadedDocument? = nil, defaults: LoadedDocument? = nil,
                environment: LoadedDocument? = nil, errors: [ConfbusError] = []) {
        self.name = name
        self.schema = schema
        self.defaults = defaults
        self.environment = environment
        self.errors = errors
    }
}

/// The port through which the engine reads a config tree (the files on disk, in production).
public protocol ConfigSource: Sendable {
    /// Every service folder, valid names and problems (a folder whose name is not a service name).
    func listServices() -> (services: [ServiceName], errors: [ConfbusError])
    /// The files of one service for one environment.
    func load(_ service: ServiceName, environment: String) -> ServiceFiles
    /// Reads one override variable's value (a YAML scalar or flow collection).
    func parseValue(_ text: String, source: String) throws(ConfbusError) -> JSONValue
    /// Whether the tree has a folder for `service` (cheaper than listing every service).
    func hasService(_ service: ServiceName) -> Bool
}

extension ConfigSource {
    public func hasService(_ service: ServiceName) -> Bool { listServices().services.contains(service) }
}
