import Foundation

extension Duration {
    /// The duration in seconds, as a `Double` (what `Date`, SQL intervals and rates want).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}

extension Duration {
    /// A duration as settings and request bodies write it (CONTRACT.md §6): seconds (`30`), or a
    /// number with `ms`, `s` or `m` (`500ms`, `30s`, `2m`); nil for anything else.
    public init?(settingsText text: String) {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let milliseconds: Double
        if t.hasSuffix("ms"), let v = Double(t.dropLast(2)) { milliseconds = v }
        else if t.hasSuffix("s"), let v = Double(t.dropLast()) { milliseconds = v * 1000 }
        else if t.hasSuffix("m"), let v = Double(t.dropLast()) { milliseconds = v * 60_000 }
        else if let v = Double(t) { milliseconds = v * 1000 }
        else { return nil }
        guard milliseconds.isFinite, abs(milliseconds) < 1e15 else { return nil }
        self = .milliseconds(Int64(milliseconds))
    }
}
