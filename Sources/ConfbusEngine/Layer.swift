import ConfbusCore

/// The layers of CONTRACT.md §2, lowest precedence first.
public enum Layer: Int, Sendable, Comparable, CaseIterable, CustomStringConvertible {
    case schemaDefault
    case defaults
    case environment
    case variable
    case override

    public var description: String {
        switch self {
        case .schemaDefault: "schema default"
        case .defaults: "defaults"
        case .environment: "environment"
        case .variable: "variable"
        case .override: "override"
        }
    }

    public static func < (lhs: Layer, rhs: Layer) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Where one value of a resolved config came from.
public struct Provenance: Sendable, Hashable {
    public var layer: Layer
    /// The file, the variable's name, or "ops override".
    public var source: String
    public var location: SourceLocation?

    public init(layer: Layer, source: String, location: SourceLocation? = nil) {
        self.layer = layer
        self.source = source
        self.location = location
    }
}

/// One layer's patch as it enters the merge.
public struct LayerPatch: Sendable {
    public var layer: Layer
    public var source: String
    public var patch: JSONValue
    /// Places of values in the patch, for files.
    public var locations: SourceLocations

    public init(layer: Layer, source: String, patch: JSONValue, locations: SourceLocations = [:]) {
        self.layer = layer
        self.source = source
        self.patch = patch
        self.locations = locations
    }
}
