import ArgumentParser
import Foundation

@main
struct Confbus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "confbus",
        abstract: "Distributes validated configuration to services over MQTT and HTTP.",
        discussion: "Exit codes: 0 ok, 1 refused (invalid configuration or request), 2 usage error, 3 cannot reach the distributor.",
        subcommands: [Serve.self, Validate.self, Get.self, History.self, Diff.self, Services.self, Apply.self, Rollback.self, Rollout.self, Flags.self, Export.self, Import.self, MQTT.self, Secrets.self, Agent.self]
    )

    /// ArgumentParser's own usage errors exit 64; confbus promises 2 for every usage error.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)   // --help and --version print and exit 0
            }
            FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
            Foundation.exit(2)
        }
    }
}
