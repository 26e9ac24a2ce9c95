import ConfbusCore

/// Merges layer patches by RFC 7396 and says, for each leaf of the result, which layer set it.
public enum LayerResolver {
    public struct Result: Sendable {
        public var config: JSONValue
        let patches: [LayerPatch]

        /// Which layer set each leaf: worked out when asked (a commit stores it, an error cites it),
        /// not on every merge; a resolution merges three times and most merges need only the config.
        public var provenance: [JSONPointer: Provenance] {
            var provenance: [JSONPointer: Provenance] = [:]
            for (pointer, _) in config.leaves() {
                // The highest layer that wrote this value, or replaced an ancestor with a non-object, set it.
                for layer in patches.reversed() where LayerResolver.covers(layer.patch, pointer.tokens[...]) {
                    provenance[pointer] = Provenance(layer: layer.layer, source: layer.source,
                                                     location: layer.locations.nearest(to: pointer))
                    break
                }
            }
            return provenance
        }
    }

    /// Applies `patches` in order (lowest precedence first) to an empty object.
    public static func merge(_ patches: [LayerPatch]) -> Result {
        var config: JSONValue = .object([:])
        for layer in patches { config = MergePatch.apply(layer.patch, to: config) }
        return Result(config: config, patches: patches)
    }

    static func covers(_ patch: JSONValue, _ tokens: ArraySlice<String>) -> Bool {
        guard let first = tokens.first else { return !patch.isNull }
        guard case .object(let object) = patch else { return true }
        guard let child = object[first] else { return false }
        return covers(child, tokens.dropFirst())
    }

}
