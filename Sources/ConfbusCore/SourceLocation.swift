/// Where a value came from in a file: 1-based line and column (columns count Unicode scalars).
public struct SourceLocation: Sendable, Hashable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    public var description: String { "\(file):\(line):\(column)" }
}

/// Where each value of one document was written, kept compactly: the pointer as its string and the
/// line and column packed in one word, with the file name once for the document. A parsed tree
/// keeps these for every value of every file, and a dictionary keyed by `JSONPointer` (an array of
/// tokens per value) was most of a large tree's memory.
public struct SourceLocations: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    private var file: String?
    private var packed: [String: UInt64] = [:]
    /// Locations in another file than the first one set (not seen from the YAML loader).
    private var elsewhere: [String: SourceLocation] = [:]

    public init() {}

    public init(dictionaryLiteral elements: (JSONPointer, SourceLocation)...) {
        for (pointer, location) in elements { self[pointer] = location }
    }

    public var isEmpty: Bool { packed.isEmpty && elsewhere.isEmpty }
    public var count: Int { packed.count + elsewhere.count }

    public subscript(pointer: JSONPointer) -> SourceLocation? {
        get { location(at: pointer.description) }
        set { self[path: pointer.description] = newValue }
    }

    /// The same by the pointer's string form (`JSONPointer.description`), for a parser that builds
    /// it as it descends instead of once per lookup.
    public subscript(path key: String) -> SourceLocation? {
        get { location(at: key) }
        set {
            packed[key] = nil
            elsewhere[key] = nil
            guard let location = newValue else { return }
            if file == nil { file = location.file }
            if location.file == file, let line = UInt32(exactly: location.line), let column = UInt32(exactly: location.column) {
                packed[key] = UInt64(line) << 32 | UInt64(column)
            } else {
                elsewhere[key] = location
            }
        }
    }

    private func location(at key: String) -> SourceLocation? {
        if let word = packed[key], let file {
            return SourceLocation(file: file, line: Int(word >> 32), column: Int(word & 0xFFFF_FFFF))
        }
        return elsewhere[key]
    }

    /// The location of the value at `pointer`, or of its nearest ancestor that has one. The
    /// pointer is spelled out once; each ancestor is its string up to the last `/` (an escaped
    /// token never holds one).
    public func nearest(to pointer: JSONPointer) -> SourceLocation? {
        guard !isEmpty else { return nil }
        var key = Substring(pointer.description)
        while true {
            if let location = location(at: String(key)) { return location }
            guard let slash = key.lastIndex(of: "/") else { return nil }
            key = key[..<slash]
        }
    }
}
