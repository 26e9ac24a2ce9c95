/// JSON Merge Patch (RFC 7396): objects merge key by key, `null` removes a key,
/// any other value replaces the target whole.
public enum MergePatch {
    public static func apply(_ patch: JSONValue, to target: JSONValue) -> JSONValue {
        guard case .object(let patchObject) = patch else { return patch }
        var result: [String: JSONValue]
        if case .object(let o) = target { result = o } else { result = [:] }
        for (key, value) in patchObject {
            if value.isNull {
                result.removeValue(forKey: key)
            } else {
                result[key] = apply(value, to: result[key] ?? .null)
            }
        }
        return .object(result)
    }
}
