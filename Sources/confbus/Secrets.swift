import ArgumentParser
import ConfbusApp
import ConfbusCore
import Foundation
import Logging

/// Secrets sealed at rest (CONTRACT §10): the key file and its rotation.
struct Secrets: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "secrets", abstract: "The key that seals secret values at rest.",
                                                    subcommands: [Keygen.self, Rotate.self])
}

/// Writes a new key file: 32 random bytes in base64, mode 0600, never over an existing file.
struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a new secret_key_file (32 random bytes, base64, mode 0600).")

    @Argument(help: "Where to write the key; it must not exist.") var output: String

    func run() throws {
        guard !FileManager.default.fileExists(atPath: output) else {
            throw ValidationError("\(output) exists; a key file is never overwritten (its values could no longer be read)")
        }
        let contents = SecretSealer.generateKeyFile()
        try Passwd.writeAtomically(contents, to: output)
        let sealer = try SecretSealer(keyFileContents: contents)
        print("wrote a new secret key to \(output) (key id \(sealer.keyID)); keep a copy: without it the sealed values are lost")
    }
}

/// Re-seals every sealed value under a new key, or opens them all with no new key, in one transaction.
struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Seal every secret again under a new key, in one transaction.",
        discussion: "Stop the nodes (or expect their refusal to start with the old key), rotate, then start them with the new key. Without --new-key-file every value is decrypted and the database no longer needs a key.")

    @Option(help: "The key the database is sealed under now.") var oldKeyFile: String
    @Option(help: "The key to seal under from now on.") var newKeyFile: String?
    @Option(help: "postgres://user:password@host:port/database (or CONFBUS_DATABASE_URL)") var databaseURL: String?

    func run() async throws {
        guard let url = databaseURL ?? ProcessInfo.processInfo.environment["CONFBUS_DATABASE_URL"] else {
            throw ValidationError("--database-url or CONFBUS_DATABASE_URL is required")
        }
        let old = try Self.read(oldKeyFile)
        let new = try newKeyFile.map(Self.read)
        if let new, new.keyID == old.keyID { throw ValidationError("the old and the new key are the same key") }
        var logger = Logger(label: "confbus.secrets")
        logger.logLevel = .warning
        do {
            let done = try await rotateSecretKey(databaseURL: url, old: old, new: new, logger: logger)
            let what = new.map { "sealed again under key \($0.keyID)" } ?? "decrypted for good"
            print("\(done.versions) versions, \(done.layers) override layers and \(done.answers) stored answers \(what)")
        } catch let error as ConfbusError {
            throw ValidationError(error.message)
        }
    }

    static func read(_ path: String) throws -> SecretSealer {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path) cannot be read") }
        do { return try SecretSealer(keyFileContents: String(decoding: data, as: UTF8.self)) } catch {
            throw ValidationError("\(path): \(error.message)")
        }
    }
}
