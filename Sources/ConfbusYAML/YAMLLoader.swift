import ConfbusCore
import Foundation
import Yams

/// A YAML document read into JSON, with the place in the file of every value.
public struct YAMLDocument: Sendable {
    public var value: JSONValue
    /// Line and column of each value, by JSON pointer (the key's place for object members).
    public var locations: SourceLocations

    public init(value: JSONValue, locations: SourceLocations = [:]) {
        self.value = value
        self.locations = locations
    }
}

/// Reads YAML with YAML 1.2 core-schema semantics into `JSONValue`, refusing what a config
/// file should never hold. Every error names the file, line and column.
public struct YAMLLoader: Sendable {
    public struct Limits: Sendable {
        /// Largest document accepted, in bytes (CONTRACT.md §6 `max_document_bytes`).
        public var maxDocumentBytes: Int
        /// Deepest nesting of mappings and sequences.
        public var maxDepth: Int
        /// Most values a document may expand to once aliases are followed.
        public var maxNodes: Int

        public init(maxDocumentBytes: Int = 1 << 20, maxDepth: Int = 64, maxNodes: Int = 100_000) {
            self.maxDocumentBytes = maxDocumentBytes
            self.maxDepth = maxDepth
            self.maxNodes = maxNodes
        }
    }

    public var limits: Limits

    public init(limits: Limits = Limits()) { self.limits = limits }

    /// Loads a file. An empty file (or one holding only comments) is an empty mapping.
    public func load(contentsOf path: String, displayName: String? = nil) throws(ConfbusError) -> YAMLDocument {
        let name = displayName ?? path
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ConfbusError(code: .unreadableFile, message: "cannot read \(name): \(error.localizedDescription)",
                               location: SourceLocation(file: name, line: 1, column: 1))
        }
        return try load(bytes: [UInt8](data), file: name)
    }

    public func load(bytes: [UInt8], file: String, requireMapping: Bool = true) throws(ConfbusError) -> YAMLDocument {
        func fail(_ message: String, _ line: Int = 1, _ column: Int = 1) -> ConfbusError {
            ConfbusError(code: .invalidYAML, message: message, location: SourceLocation(file: file, line: line, column: column))
        }
        guard bytes.count <= limits.maxDocumentBytes else {
            throw ConfbusError(code: .documentTooLarge,
                               message: "document is \(bytes.count) bytes, over the limit of \(limits.maxDocumentBytes) (max_document_bytes)",
                               location: SourceLocation(file: file, line: 1, column: 1))
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            let (line, column) = Self.position(ofFirstInvalidUTF8In: bytes)
            throw fail("file is not valid UTF-8", line, column)
        }
        let root: Node?
        do {
            let parser = try Parser(yaml: text, resolver: .basic, constructor: .default, encoding: .utf8)
            root = try parser.singleRoot()
        } catch let error as YamlError {
            if case .duplicatedKeysInMapping(let duplicates, let context) = error, let key = duplicates.first,
               let (line, column) = Self.secondDefinition(of: key, in: text, after: context.mark) {
                throw fail("duplicate key \"\(key)\" in mapping (defined again here)", line, column)
            }
            throw Self.convert(error, file: file)
        } catch {
            throw fail("cannot parse YAML: \(error)")
        }
        guard let root else {
            return YAMLDocument(value: requireMapping ? .object([:]) : .null)
        }
        if NodeConverter.expansion(of: root, limit: limits.maxNodes, maxDepth: limits.maxDepth) > limits.maxNodes {
            throw fail("document expands to more than \(limits.maxNodes) values (aliases expand past the limit)",
                       root.mark?.line ?? 1, root.mark?.column ?? 1)
        }
        var converter = NodeConverter(file: file, limits: limits)
        let value = try converter.convert(root, depth: 0)
        if requireMapping {
            if case .null = value { return YAMLDocument(value: .object([:]), locations: converter.locations) }
            guard case .object = value else {
                let mark = root.mark
                throw fail("the top level must be a mapping, not \(JSONValue.withArticle(value.typeName))",
                           mark?.line ?? 1, mark?.column ?? 1)
            }
        }
        return YAMLDocument(value: value, locations: converter.locations)
    }

    /// Reads one YAML scalar or flow collection, as an override variable's value is read.
    public func loadValue(_ text: String, source: String) throws(ConfbusError) -> JSONValue {
        try load(bytes: Array(text.utf8), file: source, requireMapping: false).value
    }

    /// Where a duplicated block-mapping key is written the second time: the next line, after the
    /// first definition, that holds the same key at the same indentation. Yams names only the
    /// first definition; the duplicate is what the author must change.
    static func secondDefinition(of key: String, in text: String, after first: Mark) -> (Int, Int)? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        func keyColumn(_ line: Substring) -> Int? {
            let indent = line.prefix { $0 == " " }.count
            let rest = line.dropFirst(indent)
            for spelling in [key, "\"\(key)\"", "'\(key)'"] where rest.hasPrefix(spelling) {
                let after = rest.dropFirst(spelling.count).drop { $0 == " " }
                if after.hasPrefix(":") { return indent + 1 }
            }
            return nil
        }
        var firstLine: Int?
        var firstColumn: Int?
        for (index, line) in lines.enumerated() where index + 1 >= max(1, first.line) {
            guard let column = keyColumn(line) else { continue }
            if firstLine == nil {
                firstLine = index + 1
                firstColumn = column
            } else if column == firstColumn {
                return (index + 1, column)
            }
        }
        return nil
    }

    static func position(ofFirstInvalidUTF8In bytes: [UInt8]) -> (Int, Int) {
        var line = 1
        var start = 0
        var i = 0
        while i < bytes.count {
            // Find the longest valid prefix by decoding scalar by scalar.
            var iterator = bytes[i...].makeIterator()
            var decoder = UTF8()
            switch decoder.decode(&iterator) {
            case .scalarValue(let s):
                if s == "\n" { line += 1; start = i + 1 }
                i += String(s).utf8.count
            case .emptyInput:
                i = bytes.count
            case .error:
                let column = String(decoding: bytes[start..<i], as: UTF8.self).unicodeScalars.count + 1
                return (line, column)
            }
        }
        return (line, 1)
    }

    static func convert(_ error: YamlError, file: String) -> ConfbusError {
        func make(_ message: String, _ mark: Mark?) -> ConfbusError {
            ConfbusError(code: .invalidYAML, message: message,
                         location: SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1))
        }
        switch error {
        case .scanner(let context, let problem, let mark, _),
             .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            var message = problem
            if let context, !context.text.isEmpty { message = "\(problem) (\(context.text) at \(context.mark))" }
            return make(message, mark)
        case .duplicatedKeysInMapping(let duplicates, let context):
            return make("duplicate key \(duplicates.map { "\"\($0)\"" }.joined(separator: ", ")) in mapping (this is its first definition)", context.mark)
        case .reader(let problem, let offset, _, let yaml):
            var line = 1
            var column = 1
            if let offset {
                let prefix = yaml.utf8.prefix(offset)
                line = prefix.reduce(1) { $1 == 0x0A ? $0 + 1 : $0 }
                let lastLine = prefix.split(separator: 0x0A, omittingEmptySubsequences: false).last ?? []
                column = String(decoding: lastLine, as: UTF8.self).unicodeScalars.count + 1
            }
            return ConfbusError(code: .invalidYAML, message: problem,
                                location: SourceLocation(file: file, line: line, column: column))
        default:
            return make("cannot parse YAML: \(error)", nil)
        }
    }
}
