import ArgumentParser

@main
struct Confbus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "confbus",
        abstract: "Distributes validated configuration to services over MQTT and HTTP.",
        subcommands: [Validate.self]
    )
}
