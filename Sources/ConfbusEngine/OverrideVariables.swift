import ConfbusCore

/// `CONFBUS_OVERRIDE__<SERVICE>__<KEY>[__<KEY>...]=<value>` variables (CONTRACT.md §2 layer 4).
/// The engine gets them as a plain dictionary: nothing below the composition root reads the
/// process environment.
public struct OverrideVariables: Sendable {
    public static let prefix = "CONFBUS_OVERRIDE__"

    public struct Variable: Sendable, Hashable {
        public var name: String
        public var serviceSegment: String
        public var keySegments: [String]
        public var value: String
    }

    public let variables: [Variable]
    /// Variables whose name is malformed (no key, an empty segment).
    public let malformed: [String]

    /// Picks the override variables out of an environment; others are ignored.
    public init(environment: [String: String]) {
        var variables: [Variable] = []
        var malformed: [String] = []
        for (name, value) in environment where name.hasPrefix(Self.prefix) {
            let segments = name.dropFirst(Self.prefix.count).split(separator: "__", omittingEmptySubsequences: false).map(String.init)
            guard segments.count >= 2, segments.allSatisfy({ !$0.isEmpty }) else { malformed.append(name); continue }
            variables.append(Variable(name: name, serviceSegment: segments[0], keySegments: Array(segments.dropFirst()), value: value))
        }
        // Sorted by name, so that the order of application never depends on the environment's order.
        self.variables = variables.sorted { $0.name < $1.name }
        self.malformed = malformed.sorted()
    }

    /// Case-insensitive, with `_` also matching `-`.
    public static func segment(_ segment: String, matches name: String) -> Bool {
        func fold(_ s: String) -> String { s.lowercased().replacingOccurrencesOfDash() }
        return fold(segment) == fold(name)
    }

    public func variables(for service: ServiceName) -> [Variable] {
        variables.filter { Self.segment($0.serviceSegment, matches: service.rawValue) }
    }

    /// Variables that name no service of the tree (reported as warnings: they do nothing).
    public func unmatched(services: [ServiceName]) -> [Variable] {
        variables.filter { v in !services.contains { Self.segment(v.serviceSegment, matches: $0.rawValue) } }
    }
}

extension String {
    fileprivate func replacingOccurrencesOfDash() -> String {
        String(map { $0 == "-" ? "_" : $0 })
    }
}
