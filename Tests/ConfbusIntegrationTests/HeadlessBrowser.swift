import ConfbusCore
import Foundation
import Synchronization
import Testing

/// A real headless Chromium (Debian's `chromium`), driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: JSON messages ending in NUL on file descriptors 3 and 4), so the
/// console's script runs exactly as in an operator's browser. One page per browser.
final class HeadlessBrowser: @unchecked Sendable {
    static var executable: String? {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    private let pid: pid_t
    private let commands: FileHandle
    private let profile: URL
    private let answers = Answers()
    private let nextID = Mutex(0)
    private var session = ""
    private let reader: Thread

    init() async throws {
        let binary = try #require(Self.executable, "chromium is not installed (make test installs it)")
        profile = try Harness.temporaryDirectory("chromium")
        var toBrowser: [Int32] = [0, 0]
        var fromBrowser: [Int32] = [0, 0]
        pipe(&toBrowser)
        pipe(&fromBrowser)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toBrowser[0], 3)
        posix_spawn_file_actions_adddup2(&actions, fromBrowser[1], 4)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                         "--remote-debugging-pipe", "--user-data-dir=\(profile.path)", "--window-size=1280,900", "about:blank"]
        var cArguments = arguments.map { strdup($0) } + [nil]
        defer { for argument in cArguments { free(argument) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, binary, &actions, nil, &cArguments, environ)
        try #require(spawned == 0, "cannot start chromium")
        pid = child
        Glibc.close(toBrowser[0])
        Glibc.close(fromBrowser[1])
        commands = FileHandle(fileDescriptor: toBrowser[1], closeOnDealloc: true)
        let incoming = FileHandle(fileDescriptor: fromBrowser[0], closeOnDealloc: true)
        let answers = self.answers
        reader = Thread {
            var buffer = [UInt8]()
            while true {
                let chunk = incoming.availableData
                if chunk.isEmpty { return }
                buffer.append(contentsOf: chunk)
                while let end = buffer.firstIndex(of: 0) {
                    let message = Array(buffer[..<end])
                    buffer.removeSubrange(...end)
                    if let value = try? JSONParser(maxDepth: 256).parse(message), let id = value["id"]?.integralValue {
                        answers.byID.withLock { $0[id] = value }
                    }
                }
            }
        }
        reader.start()
        let target = try await send("Target.createTarget", ["url": "about:blank"])
        let targetID = try #require(target["targetId"]?.stringValue)
        let attached = try await send("Target.attachToTarget", ["targetId": .string(targetID), "flatten": true])
        session = try #require(attached["sessionId"]?.stringValue)
        _ = try await send("Page.enable", [:], inSession: true)
        _ = try await send("Runtime.enable", [:], inSession: true)
    }

    /// Sends a DevTools command and waits for its answer's `result`.
    @discardableResult
    func send(_ method: String, _ parameters: [String: JSONValue], inSession: Bool = false, timeout: Duration = .seconds(20)) async throws -> JSONValue {
        let id = nextID.withLock { $0 += 1; return $0 }
        var message: [String: JSONValue] = ["id": .integer(id), "method": .string(method), "params": .object(parameters)]
        if inSession { message["sessionId"] = .string(session) }
        commands.write(Data(JSONValue.object(message).serializedBytes() + [0]))
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let answer = answers.byID.withLock({ $0.removeValue(forKey: id) }) {
                if let error = answer["error"] { throw BrowserError(description: "\(method): \(error.serialized())") }
                return answer["result"] ?? .null
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw BrowserError(description: "\(method) got no answer within \(timeout)")
    }

    /// Opens `url` and waits until the page has loaded and its deferred script ran.
    func open(_ url: String) async throws {
        _ = try await send("Page.navigate", ["url": .string(url)], inSession: true)
        try await Harness.eventually("\(url) loaded") { try await evaluate("document.readyState") == "complete" }
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    func evaluate(_ expression: String) async throws -> JSONValue {
        let result = try await send("Runtime.evaluate", ["expression": .string(expression), "returnByValue": true, "awaitPromise": true],
                                    inSession: true)
        if let exception = result["exceptionDetails"] { throw BrowserError(description: "script failed: \(exception.serialized())") }
        return result["result"]?["value"] ?? .null
    }

    /// Signs in to the console with `token`, as an operator does: the header's form, submitted.
    func signIn(_ token: String) async throws {
        _ = try await evaluate("""
            (() => { const f = document.getElementById('sign-in'); f.elements.token.value = \(JSONValue.string(token).serialized());
                     f.requestSubmit(); })()
            """)
    }

    /// A PNG of the page as laid out at 1280 px.
    func screenshot(to file: URL) async throws {
        let shot = try await send("Page.captureScreenshot", ["format": "png", "captureBeyondViewport": true], inSession: true)
        let data = try #require(Data(base64Encoded: shot["data"]?.stringValue ?? ""))
        try data.write(to: file)
    }

    private let closed = Mutex(false)

    func close() {
        guard !closed.withLock({ was in defer { was = true }; return was }) else { return }
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }

    deinit { close() }

    /// What the browser answered, by command id (filled by the reader thread).
    final class Answers: Sendable {
        let byID = Mutex<[Int: JSONValue]>([:])
    }

    struct BrowserError: Error, CustomStringConvertible {
        var description: String
    }
}
