import ArgumentParser
import ConfbusClient
import ConfbusCore
import Crypto
import _CryptoExtras
import ConfbusYAML
import Foundation

/// Broker identities (CONTRACT §10): the files mosquitto reads, written by confbus.
struct MQTT: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mqtt", abstract: "Files for the MQTT broker's identities.",
                                                    subcommands: [Passwd.self, ACL.self])
}

/// Creates or rotates a broker identity (CONTRACT §10): a new random secret, its line in mosquitto's
/// own `$7$` format (PBKDF2-SHA512) written into the password file atomically, and the secret printed
/// once, alone on the last line of standard output. Nothing else ever holds it.
struct Passwd: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or rotate a broker identity; prints the new secret once, on the last line.",
        discussion: "The user is a service's name (its instances connect as it, their client id the instance id) or _confbus for the distributor.")

    @Argument(help: "A service's name, or _confbus.") var user: String
    @Option(help: "The mosquitto password_file (created with mode 0600 if missing).") var passwordFile = "/etc/mosquitto/passwd"
    @Option(help: "PBKDF2 rounds: the broker pays them on every connection.") var rounds = 10_000
    @Flag(help: "Remove the identity instead.") var delete = false

    func run() throws {
        guard user == "_confbus" || ServiceName.isValid(user) else {
            throw ValidationError("\(user) is not a service name (nor _confbus)")
        }
        guard (1_000...10_000_000).contains(rounds) else { throw ValidationError("--rounds must be in 1000...10000000") }
        var lines = (try? String(contentsOfFile: passwordFile, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        let rotated = lines.contains { $0.hasPrefix(user + ":") }
        lines.removeAll { $0.hasPrefix(user + ":") }
        var secret: String?
        if !delete {
            let generated = Self.newSecret()
            lines.append(user + ":" + (try Self.hash(generated, rounds: rounds)))
            secret = generated
        }
        try Self.writeAtomically(lines.map { $0 + "\n" }.joined(), to: passwordFile)
        if let secret {
            print("\(rotated ? "rotated" : "created") the broker identity \(user) in \(passwordFile); its secret, shown only now:")
            print(secret)
        } else {
            print(rotated ? "removed the broker identity \(user) from \(passwordFile)" : "\(user) had no identity in \(passwordFile)")
        }
    }

    /// `count` random bytes from swift-crypto's generator.
    static func randomBytes(_ count: Int) -> [UInt8] {
        SymmetricKey(size: SymmetricKeySize(bitCount: count * 8)).withUnsafeBytes { Array($0) }
    }

    /// 32 random bytes, base64url without padding (43 characters).
    static func newSecret() -> String {
        Data(randomBytes(32)).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
    }

    /// `$7$<rounds>$<salt>$<hash>`: PBKDF2-SHA512 over a 12-byte random salt, 64 bytes, base64.
    static func hash(_ password: String, rounds: Int) throws -> String {
        let salt = randomBytes(12)
        let key = try KDF.Insecure.PBKDF2.deriveKey(from: Array(password.utf8), salt: salt, using: .sha512, outputByteCount: 64,
                                                     unsafeUncheckedRounds: rounds)
        let hash = key.withUnsafeBytes { Data($0) }
        return "$7$\(rounds)$\(Data(salt).base64EncodedString())$\(hash.base64EncodedString())"
    }

    /// Temp file (0600), fsync, rename over the old one, fsync the directory (`AtomicFile`).
    static func writeAtomically(_ text: String, to path: String) throws {
        do { try AtomicFile.write(Array(text.utf8), to: path) } catch {
            throw ValidationError("cannot write \(path): \(error)")
        }
    }
}

/// The broker's ACL file from the config tree (CONTRACT §10): the distributor may use everything
/// under the prefix; each service's identity may read only its own update, rollout and error
/// topics and write only its own registrations, and acks and health under its own client id.
struct ACL: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write the broker's ACL file from the config tree.")

    @Option(help: "The config tree.") var configDir = "config"
    @Option(help: "Write here instead of standard output (replaced atomically).") var output: String?
    @Option(help: "The topic prefix confbus serves under.") var topicPrefix = "config"

    func run() throws {
        guard !topicPrefix.isEmpty, !topicPrefix.contains(where: { "+#".contains($0) }) else {
            throw ValidationError("--topic-prefix must be a topic without wildcards")
        }
        let (services, errors) = FileConfigSource(root: configDir).listServices()
        for error in errors { FileHandle.standardError.write(Data("confbus: \(error.message)\n".utf8)) }
        let text = Self.render(services.map(\.rawValue).sorted(), prefix: topicPrefix, source: configDir)
        if let output { try Passwd.writeAtomically(text, to: output) } else { print(text, terminator: "") }
    }

    static func render(_ services: [String], prefix p: String, source: String) -> String {
        var lines = [
            "# Written by `confbus mqtt acl` from \(source) (\(services.count) services); write it again when services change.",
            "# The distributor.",
            "user _confbus",
            "topic readwrite \(p)/#",
            "",
        ]
        for service in services {
            lines += [
                "user \(service)",
                "topic read \(p)/update/\(service)",
                "topic read \(p)/rollout/\(service)",
                "topic read \(p)/error/\(service)",
                "topic write \(p)/register/\(service)",
                "",
            ]
        }
        lines += [
            "# Acks and health only under the instance's own client id (%c) and its service (%u).",
            "pattern write \(p)/ack/%u/%c",
            "pattern write \(p)/health/%u/%c",
        ]
        return lines.joined(separator: "\n") + "\n"
    }
}
