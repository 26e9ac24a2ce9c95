import ConfbusCore
import Yams

/// Turns a composed Yams node tree into `JSONValue`, resolving plain scalars by the YAML 1.2
/// core schema and counting every value, so that aliases cannot expand a small file into a
/// large document (the "billion laughs" file fails after `maxNodes` values, in microseconds).
struct NodeConverter {
    let file: String
    let limits: YAMLLoader.Limits
    var locations: SourceLocations = [:]
    private var nodes = 0

    init(file: String, limits: YAMLLoader.Limits) {
        self.file = file
        self.limits = limits
    }

    private static let yamlTagPrefix = "tag:yaml.org,2002:"

    /// Messages name the rule and the place, never the value: a config value may be a secret.
    func fail(_ message: String, _ mark: Mark?) -> ConfbusError {
        ConfbusError(code: .invalidYAML, message: message,
                     location: SourceLocation(file: file, line: mark?.line ?? 1, column: mark?.column ?? 1))
    }

    /// Counts the values `node` expands to, following aliases, without building anything: an
    /// alias shares the anchored node, so the graph stays small while its expansion may be huge.
    /// Stops as soon as the count passes `limit` (or the nesting passes `maxDepth`, which the
    /// conversion then reports), so the billion-laughs file is refused in microseconds and in
    /// no memory beyond the parse itself.
    static func expansion(of node: Node, limit: Int, maxDepth: Int) -> Int {
        var count = 0
        func visit(_ node: Node, depth: Int) -> Bool {
            count += 1
            if count > limit || depth > maxDepth { return false }
            switch node {
            case .scalar, .alias:
                return true
            case .sequence(let sequence):
                for child in sequence where !visit(child, depth: depth + 1) { return false }
                return true
            case .mapping(let mapping):
                for (key, value) in mapping where !visit(key, depth: depth + 1) || !visit(value, depth: depth + 1) { return false }
                return true
            }
        }
        _ = visit(node, depth: 0)
        return count
    }

    /// `path` is the node's JSON pointer in its string form, built as the conversion descends.
    mutating func convert(_ node: Node, path: String = "", depth: Int) throws(ConfbusError) -> JSONValue {
        nodes += 1
        if nodes > limits.maxNodes {
            throw fail("document expands to more than \(limits.maxNodes) values (aliases expand past the limit)", node.mark)
        }
        if let mark = node.mark, locations[path: path] == nil {
            locations[path: path] = SourceLocation(file: file, line: mark.line, column: mark.column)
        }
        switch node {
        case .scalar(let scalar):
            return try resolve(scalar)
        case .sequence(let sequence):
            try checkCollectionTag(sequence.tag.rawValue, expected: "seq", sequence.mark)
            guard depth < limits.maxDepth else { throw fail("nesting deeper than \(limits.maxDepth) levels", sequence.mark) }
            var array: [JSONValue] = []
            array.reserveCapacity(sequence.count)
            for (index, element) in sequence.enumerated() {
                array.append(try convert(element, path: path + "/" + String(index), depth: depth + 1))
            }
            return .array(array)
        case .mapping(let mapping):
            try checkCollectionTag(mapping.tag.rawValue, expected: "map", mapping.mark)
            guard depth < limits.maxDepth else { throw fail("nesting deeper than \(limits.maxDepth) levels", mapping.mark) }
            var object: [String: JSONValue] = [:]
            object.reserveCapacity(mapping.count)
            for (keyNode, valueNode) in mapping {
                guard case .scalar(let keyScalar) = keyNode else {
                    throw fail("mapping keys must be strings, not a \(keyNode.mapping != nil ? "mapping" : "sequence")", keyNode.mark)
                }
                let key = try resolve(keyScalar, isKey: true)
                guard case .string(let name) = key else {
                    throw fail("mapping keys must be strings; quote \(keyScalar.string.isEmpty ? "the empty key" : "'\(keyScalar.string)'") to use it as one", keyScalar.mark)
                }
                if name == "<<", keyScalar.style == .plain {
                    throw fail("merge keys ('<<') are not part of YAML 1.2; use layers (defaults, environment, overrides) instead", keyScalar.mark)
                }
                let memberPath = path + "/" + JSONPointer.escape(name)
                guard object[name] == nil else { throw fail("duplicate key \"\(name)\" in mapping", keyScalar.mark) }
                if let mark = keyScalar.mark {
                    locations[path: memberPath] = SourceLocation(file: file, line: mark.line, column: mark.column)
                }
                object[name] = try convert(valueNode, path: memberPath, depth: depth + 1)
            }
            return .object(object)
        case .alias(let alias):
            throw fail("unresolved alias", alias.mark)
        }
    }

    private func checkCollectionTag(_ tag: String, expected: String, _ mark: Mark?) throws(ConfbusError) {
        if tag.isEmpty || tag == "!" || tag == Self.yamlTagPrefix + expected { return }
        throw fail("tag '\(tag)' is not allowed: only the YAML 1.2 core tags are", mark)
    }

    /// YAML 1.2 core schema (§10.3.2): `yes`/`no`/`on`/`off` stay strings, `0755` is 755, `0o17` is 15.
    func resolve(_ scalar: Node.Scalar, isKey: Bool = false) throws(ConfbusError) -> JSONValue {
        let text = scalar.string
        var tag = scalar.tag.rawValue
        // Yams resolves key tags to `str` while checking for duplicates; a plain key is still implicit.
        if isKey && scalar.style == .plain && tag == Self.yamlTagPrefix + "str" { tag = "" }
        if tag == "!" { return .string(text) }
        if !tag.isEmpty {
            guard tag.hasPrefix(Self.yamlTagPrefix) else {
                throw fail("tag '\(tag)' is not allowed: only the YAML 1.2 core tags are", scalar.mark)
            }
            switch tag.dropFirst(Self.yamlTagPrefix.count) {
            case "str": return .string(text)
            case "null":
                guard let v = Self.coreNull(text) else { throw fail("the value is not a valid !!null", scalar.mark) }
                return v
            case "bool":
                guard let b = Self.coreBool(text) else { throw fail("the value is not a valid !!bool", scalar.mark) }
                return .bool(b)
            case "int":
                guard let v = try coreInt(text, scalar.mark) else { throw fail("the value is not a valid !!int", scalar.mark) }
                return v
            case "float":
                if let v = try coreInt(text, scalar.mark), let d = v.doubleValue { return .number(d) }
                guard let v = try coreFloat(text, scalar.mark) else { throw fail("the value is not a valid !!float", scalar.mark) }
                return v
            default:
                throw fail("tag '!!\(tag.dropFirst(Self.yamlTagPrefix.count))' is not allowed: only the YAML 1.2 core tags are", scalar.mark)
            }
        }
        guard scalar.style == .plain else { return .string(text) }
        if let v = Self.coreNull(text) { return v }
        if let b = Self.coreBool(text) { return .bool(b) }
        if let v = try coreInt(text, scalar.mark) { return v }
        if let v = try coreFloat(text, scalar.mark) { return v }
        return .string(text)
    }

    static func coreNull(_ text: String) -> JSONValue? {
        ["", "~", "null", "Null", "NULL"].contains(text) ? .null : nil
    }

    static func coreBool(_ text: String) -> Bool? {
        switch text {
        case "true", "True", "TRUE": true
        case "false", "False", "FALSE": false
        default: nil
        }
    }

    func coreInt(_ text: String, _ mark: Mark?) throws(ConfbusError) -> JSONValue? {
        let u = Array(text.utf8)
        guard !u.isEmpty else { return nil }
        func allIn(_ s: ArraySlice<UInt8>, _ ok: (UInt8) -> Bool) -> Bool { !s.isEmpty && s.allSatisfy(ok) }
        let isDec: (UInt8) -> Bool = { $0 >= 48 && $0 <= 57 }
        if u.count > 2, u[0] == UInt8(ascii: "0"), u[1] == UInt8(ascii: "o") {
            guard allIn(u[2...], { $0 >= 48 && $0 <= 55 }) else { return nil }
            guard let v = Int(text.dropFirst(2), radix: 8) else { throw fail("an octal integer out of range (at most 64 bits)", mark) }
            return .integer(v)
        }
        if u.count > 2, u[0] == UInt8(ascii: "0"), u[1] == UInt8(ascii: "x") {
            guard allIn(u[2...], { isDec($0) || ($0 | 0x20 >= 97 && $0 | 0x20 <= 102) }) else { return nil }
            guard let v = Int(text.dropFirst(2), radix: 16) else { throw fail("a hexadecimal integer out of range (at most 64 bits)", mark) }
            return .integer(v)
        }
        let body = (u[0] == UInt8(ascii: "-") || u[0] == UInt8(ascii: "+")) ? u[1...] : u[...]
        guard allIn(body, isDec) else { return nil }
        if let v = Int(text.hasPrefix("+") ? String(text.dropFirst()) : text) { return .integer(v) }
        // Past 64 bits: keep the value as a decimal rather than failing a config on it.
        return Double(text).map(JSONValue.number)
    }

    func coreFloat(_ text: String, _ mark: Mark?) throws(ConfbusError) -> JSONValue? {
        let unsigned = text.hasPrefix("-") || text.hasPrefix("+") ? String(text.dropFirst()) : text
        if [".inf", ".Inf", ".INF"].contains(unsigned) {
            throw fail("infinity cannot be represented in JSON", mark)
        }
        if [".nan", ".NaN", ".NAN"].contains(text) { throw fail("NaN cannot be represented in JSON", mark) }
        // [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
        var u = Array(text.utf8)[...]
        guard !u.isEmpty else { return nil }
        if u.first == UInt8(ascii: "-") || u.first == UInt8(ascii: "+") { u = u.dropFirst() }
        func digits(_ s: inout ArraySlice<UInt8>) -> Int {
            var n = 0
            while let c = s.first, c >= 48, c <= 57 { s = s.dropFirst(); n += 1 }
            return n
        }
        let intDigits = digits(&u)
        var fracDigits = 0
        var hasPoint = false
        if u.first == UInt8(ascii: ".") { hasPoint = true; u = u.dropFirst(); fracDigits = digits(&u) }
        guard intDigits > 0 || (hasPoint && fracDigits > 0) else { return nil }
        if let c = u.first, c | 0x20 == UInt8(ascii: "e") {
            u = u.dropFirst()
            if u.first == UInt8(ascii: "-") || u.first == UInt8(ascii: "+") { u = u.dropFirst() }
            guard digits(&u) > 0 else { return nil }
        }
        guard u.isEmpty else { return nil }
        var normalized = text.hasPrefix("+") ? String(text.dropFirst()) : text
        if normalized.hasPrefix(".") { normalized = "0" + normalized }
        if normalized.hasPrefix("-.") { normalized = "-0" + normalized.dropFirst() }
        guard let d = Double(normalized) else { return nil }
        guard d.isFinite else { throw fail("a number out of range (beyond a double's)", mark) }
        return .number(d)
    }
}
