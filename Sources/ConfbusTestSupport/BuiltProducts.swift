import Foundation

/// Where the tests find the repository and the `confbus` binary of the same build.
public enum BuiltProducts {
    /// The repository root (this file is at Sources/ConfbusTestSupport/).
    public static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `CONFBUS_BIN`, else the `confbus` next to the running test bundle, else `.build/debug/confbus`.
    public static func confbus() -> URL? {
        if let path = ProcessInfo.processInfo.environment["CONFBUS_BIN"] { return URL(fileURLWithPath: path) }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("confbus")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = repository.appendingPathComponent(".build/debug/confbus")
        return FileManager.default.isExecutableFile(atPath: fallback.path) ? fallback : nil
    }
}
