extension Duration {
    /// The duration in seconds, as a `Double` (what `Date`, SQL intervals and rates want).
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
