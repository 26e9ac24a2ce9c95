import ConfbusCore
import Foundation

/// A document read from the config tree, with where each value was written.
///
/// Its contents are either held or read again when asked: a source may keep only the identity
/// of a file whose parsed tree is not needed between reloads (a schema, once compiled, is kept
/// compiled; its tree and the place of each of its keywords are wanted only to compile it again
/// or to serve it), so that a large tree does not keep every schema twice.
public struct LoadedDocument: Sendable {
    public var file: String
    public var modified: Date?
    /// What identifies this version of the file (device, inode, size, modification and change
    /// times), when the source knows it: equal identities mean equal contents, so a resolution
    /// made from them can be reused.
    public var identity: String?
    private var body: Body

    private enum Body: Sendable {
        case held(JSONValue, SourceLocations)
        case deferred(@Sendable () -> (value: JSONValue, locations: SourceLocations))
    }
    /// How to read the contents again, when the source can: what `released` keeps.
    private var reading: (@Sendable () -> (value: JSONValue, locations: SourceLocations))?

    public init(file: String, value: JSONValue, locations: SourceLocations = [:], modified: Date? = nil,
                identity: String? = nil) {
        self.file = file
        self.body = .held(value, locations)
        self.modified = modified
        self.identity = identity
    }

    /// A document whose contents are read (parsed again) each time they are asked for.
    public init(file: String, modified: Date?, identity: String?,
                reading: @escaping @Sendable () -> (value: JSONValue, locations: SourceLocations)) {
        self.file = file
        self.body = .deferred(reading)
        self.reading = reading
        self.modified = modified
        self.identity = identity
    }

    /// A document held now that `reading` reads again once `released`.
    public init(held document: LoadedDocument, reading: @escaping @Sendable () -> (value: JSONValue, locations: SourceLocations)) {
        self = document
        self.reading = reading
    }

    /// The same document without its contents, when they can be read again: what a caller keeps
    /// once it has used the tree (a resolution that compiled the schema).
    public var released: LoadedDocument {
        guard let reading, isHeld else { return self }
        var copy = self
        copy.body = .deferred(reading)
        return copy
    }

    /// Whether the contents are held (false: each read of `value` parses the file again).
    public var isHeld: Bool {
        if case .held = body { return true }
        return false
    }

    /// The same document, holding its contents: read once here when they were deferred.
    public var held: LoadedDocument {
        guard case .deferred(let read) = body else { return self }
        var copy = self
        let (value, locations) = read()
        copy.body = .held(value, locations)
        return copy
    }

    public var value: JSONValue {
        get {
            switch body {
            case .held(let value, _): value
            case .deferred(let read): read().value
            }
        }
        set { body = .held(newValue, locations) }
    }

    public var locations: SourceLocations {
        get {
            switch body {
            case .held(_, let locations): locations
            case .deferred(let read): read().locations
            }
        }
        set { body = .held(value, newValue) }
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

    /// The same files with the schema's tree let go when it can be read again (see
    /// `LoadedDocument.released`): kept once the resolution compiled it.
    public var releasingSchema: ServiceFiles {
        var copy = self
        copy.schema = schema?.released
        return copy
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
    /// What `load(service, environment:).identity` would be, where the source can tell without
    /// reading the files (equal for unchanged files, nil when unknown).
    func identity(of service: ServiceName, environment: String) -> String?
}

extension ConfigSource {
    public func hasService(_ service: ServiceName) -> Bool { listServices().services.contains(service) }
    public func identity(of service: ServiceName, environment: String) -> String? { load(service, environment: environment).identity }
}
