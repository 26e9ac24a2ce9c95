/// A regular expression with ECMA-262 syntax and Unicode (`u` flag) semantics, as JSON Schema's
/// `pattern` asks for, matched by a backtracking engine with a step budget: a catastrophic
/// pattern such as `^(a+)+$` gives up with `.tooComplex` instead of hanging validation.
public struct ECMARegex: Sendable {
    public struct SyntaxError: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    public enum MatchResult: Sendable, Equatable { case matched, noMatch, tooComplex }

    let root: RegexNode
    let groupCount: Int
    public let source: String

    public init(_ pattern: String) throws(SyntaxError) {
        var parser = RegexParser(Array(pattern.unicodeScalars.map(\.value)))
        root = try parser.parse()
        groupCount = parser.groupCount
        source = pattern
    }

    /// Whether the pattern matches anywhere in `text` (JSON Schema patterns are not anchored).
    public func firstMatch(in text: String, stepLimit: Int = 200_000) -> MatchResult {
        let matcher = RegexMatcher(input: text.unicodeScalars.map(\.value), groups: groupCount, stepLimit: stepLimit)
        for start in 0...matcher.input.count {
            if matcher.match(root, start, { _ in true }) { return .matched }
            if matcher.exhausted { return .tooComplex }
        }
        return .noMatch
    }

    public func matches(_ text: String) -> Bool { firstMatch(in: text) == .matched }
}

indirect enum RegexNode: Sendable {
    case empty
    case char(UInt32)
    case set(RegexSet)
    case lineStart, lineEnd
    case wordBoundary(negated: Bool)
    case group(RegexNode, capture: Int?)
    case look(RegexNode, ahead: Bool, negated: Bool)
    case backreference(Int)
    case sequence([RegexNode])
    case alternation([RegexNode])
    case repetition(RegexNode, min: Int, max: Int?, greedy: Bool)

    /// A node that consumes exactly one scalar with no side effects, for the iterative fast path.
    var singleScalarTest: RegexSet? {
        switch self {
        case .char(let c): RegexSet(items: [.range(c, c)])
        case .set(let s): s
        default: nil
        }
    }
}

struct RegexSet: Sendable {
    enum Item: Sendable {
        case range(UInt32, UInt32)
        case digit(Bool), word(Bool), space(Bool)
        case category(Set<Unicode.GeneralCategory>, negated: Bool)
        case dot
    }
    var items: [Item]
    var negated = false

    func contains(_ c: UInt32) -> Bool {
        var hit = false
        for item in items {
            switch item {
            case .range(let lo, let hi): hit = c >= lo && c <= hi
            case .digit(let neg): hit = (c >= 48 && c <= 57) != neg
            case .word(let neg): hit = RegexSet.isWord(c) != neg
            case .space(let neg): hit = RegexSet.isSpace(c) != neg
            case .category(let cats, let neg):
                hit = (Unicode.Scalar(c).map { cats.contains($0.properties.generalCategory) } ?? false) != neg
            case .dot: hit = !RegexSet.isLineTerminator(c)
            }
            if hit { break }
        }
        return hit != negated
    }

    static func isWord(_ c: UInt32) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c == 95
    }

    static func isLineTerminator(_ c: UInt32) -> Bool { c == 10 || c == 13 || c == 0x2028 || c == 0x2029 }

    static func isSpace(_ c: UInt32) -> Bool {
        switch c {
        case 9, 10, 11, 12, 13, 32, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000, 0xFEFF: return true
        case 0x2000...0x200A: return true
        default: return false
        }
    }
}

/// Backtracking in continuation-passing style. Each call costs a step; once the budget or the
/// recursion depth is spent, every path fails and `exhausted` tells the caller why.
final class RegexMatcher {
    let input: [UInt32]
    var captures: [(Int, Int)?]
    let stepLimit: Int
    var steps = 0
    var depth = 0
    var exhausted = false
    static let maxDepth = 5_000

    init(input: [UInt32], groups: Int, stepLimit: Int) {
        self.input = input
        self.captures = Array(repeating: nil, count: groups + 1)
        self.stepLimit = stepLimit
    }

    func match(_ node: RegexNode, _ pos: Int, _ k: (Int) -> Bool) -> Bool {
        steps += 1
        if steps > stepLimit || depth > Self.maxDepth { exhausted = true }
        if exhausted { return false }
        depth += 1
        defer { depth -= 1 }
        switch node {
        case .empty:
            return k(pos)
        case .char(let c):
            return pos < input.count && input[pos] == c && k(pos + 1)
        case .set(let s):
            return pos < input.count && s.contains(input[pos]) && k(pos + 1)
        case .lineStart:
            return pos == 0 && k(pos)
        case .lineEnd:
            return pos == input.count && k(pos)
        case .wordBoundary(let negated):
            let before = pos > 0 && RegexSet.isWord(input[pos - 1])
            let after = pos < input.count && RegexSet.isWord(input[pos])
            return ((before != after) != negated) && k(pos)
        case .group(let inner, let capture):
            guard let capture else { return match(inner, pos, k) }
            let saved = captures[capture]
            if match(inner, pos, { end in
                let previous = self.captures[capture]
                self.captures[capture] = (pos, end)
                if k(end) { return true }
                self.captures[capture] = previous
                return false
            }) { return true }
            captures[capture] = saved
            return false
        case .look(let inner, let ahead, let negated):
            let saved = captures
            var found: Bool
            if ahead {
                found = match(inner, pos, { _ in true })
            } else {
                found = false
                var start = pos
                while start >= 0 && !found {
                    found = match(inner, start, { end in end == pos })
                    start -= 1
                }
            }
            if exhausted { return false }
            if negated {
                captures = saved
                return !found && k(pos)
            }
            if found && k(pos) { return true }
            captures = saved
            return false
        case .backreference(let n):
            guard n < captures.count, let (s, e) = captures[n] else { return k(pos) }
            let length = e - s
            guard pos + length <= input.count, input[s..<e].elementsEqual(input[pos..<(pos + length)]) else { return false }
            return k(pos + length)
        case .sequence(let nodes):
            return sequence(nodes[...], pos, k)
        case .alternation(let options):
            for option in options {
                if match(option, pos, k) { return true }
                if exhausted { return false }
            }
            return false
        case .repetition(let inner, let min, let max, let greedy):
            if let set = inner.singleScalarTest { return repeatSimple(set, min, max, greedy, pos, k) }
            return repeatGeneral(inner, min, max, greedy, 0, pos, k)
        }
    }

    private func sequence(_ nodes: ArraySlice<RegexNode>, _ pos: Int, _ k: (Int) -> Bool) -> Bool {
        guard let first = nodes.first else { return k(pos) }
        return match(first, pos) { next in self.sequence(nodes.dropFirst(), next, k) }
    }

    private func repeatSimple(_ set: RegexSet, _ min: Int, _ max: Int?, _ greedy: Bool, _ pos: Int, _ k: (Int) -> Bool) -> Bool {
        var count = 0
        let limit = max ?? Int.max
        while count < limit, pos + count < input.count, set.contains(input[pos + count]) { count += 1 }
        guard count >= min else { return false }
        if greedy {
            var n = count
            while n >= min {
                steps += 1
                if steps > stepLimit { exhausted = true; return false }
                if k(pos + n) { return true }
                if exhausted { return false }
                n -= 1
            }
        } else {
            for n in min...count {
                steps += 1
                if steps > stepLimit { exhausted = true; return false }
                if k(pos + n) { return true }
                if exhausted { return false }
            }
        }
        return false
    }

    private func repeatGeneral(_ node: RegexNode, _ min: Int, _ max: Int?, _ greedy: Bool, _ count: Int,
                               _ pos: Int, _ k: (Int) -> Bool) -> Bool {
        if count < min {
            return match(node, pos) { next in self.repeatGeneral(node, min, max, greedy, count + 1, next, k) }
        }
        if let max, count >= max { return k(pos) }
        if greedy {
            if match(node, pos, { next in next != pos && self.repeatGeneral(node, min, max, greedy, count + 1, next, k) }) {
                return true
            }
            return !exhausted && k(pos)
        }
        if k(pos) { return true }
        return !exhausted
            && match(node, pos, { next in next != pos && self.repeatGeneral(node, min, max, greedy, count + 1, next, k) })
    }
}
