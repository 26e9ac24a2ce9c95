/// Leaf-level differences between two configs (CONTRACT.md §6a), as JSON pointers with the old
/// and new values. Objects are compared member by member; anything else (arrays included, which
/// merge patches replace whole) is a leaf.
public struct ConfigChange: Sendable, Equatable {
    public enum Operation: String, Sendable { case add, remove, replace }
    public var op: Operation
    public var path: JSONPointer
    public var old: JSONValue?
    public var new: JSONValue?

    public var json: JSONValue {
        var object: [String: JSONValue] = ["op": .string(op.rawValue), "path": .string(path.description)]
        if let old { object["old"] = old }
        if let new { object["new"] = new }
        return .object(object)
    }
}

public enum ConfigDiff {
    public static func changes(from old: JSONValue, to new: JSONValue) -> [ConfigChange] {
        var out: [ConfigChange] = []
        compare(old, new, at: .root, into: &out)
        return out
    }

    private static func compare(_ old: JSONValue?, _ new: JSONValue?, at path: JSONPointer, into out: inout [ConfigChange]) {
        switch (old, new) {
        case (.object(let a)?, .object(let b)?) where !(a.isEmpty && b.isEmpty):
            for key in Set(a.keys).union(b.keys).sorted() {
                compare(a[key], b[key], at: path.appending(key), into: &out)
            }
        case (nil, let value?):
            for (pointer, leaf) in value.leaves(under: path) { out.append(ConfigChange(op: .add, path: pointer, new: leaf)) }
        case (let value?, nil):
            for (pointer, leaf) in value.leaves(under: path) { out.append(ConfigChange(op: .remove, path: pointer, old: leaf)) }
        case (let a?, let b?):
            if a != b || a.typeName != b.typeName { out.append(ConfigChange(op: .replace, path: path, old: a, new: b)) }
        case (nil, nil):
            break
        }
    }
}
