extension JSONValue {
    /// The first string or object key holding U+0000, which C strings, environment variables and
    /// file paths would truncate (CONTRACT.md §6b); nil when there is none.
    public func firstNULCharacter(at pointer: JSONPointer = .root) -> JSONPointer? {
        switch self {
        case .string(let s):
            return s.utf8.contains(0) ? pointer : nil
        case .array(let items):
            for (index, item) in items.enumerated() {
                if let found = item.firstNULCharacter(at: pointer.appending(index)) { return found }
            }
            return nil
        case .object(let members):
            for (key, value) in members.sorted(by: { $0.key < $1.key }) {
                if key.utf8.contains(0) { return pointer.appending(key) }
                if let found = value.firstNULCharacter(at: pointer.appending(key)) { return found }
            }
            return nil
        case .null, .bool, .integer, .number:
            return nil
        }
    }
}
