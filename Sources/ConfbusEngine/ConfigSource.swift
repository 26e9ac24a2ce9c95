import ConfbusCore
import Foundation

/// A document read from the config tree, with where each value was written.
public struct LoadedDocument: Sendable {
    public var file: String
    public var value: JSONValue
    public var locations: [JSONPointer: SourceLocation]
    public var modified: Date?

    public init(file: String, value: JSONValue, locations: [JSONPointer: SourceLocation] = [:], modified: Date? = nil) {
        self.file = file
        self.value = value
        self.locations = locations
        self.modified = modified
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
