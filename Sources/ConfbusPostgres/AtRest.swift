import ConfbusCore
import ConfbusEngine
import Logging
import PostgresNIO

/// How configs and layers are written to and read from their text columns: plain canonical JSON,
/// with each secret member sealed when the node has a `secret_key_file` (CONTRACT.md §10).
/// Reading opens every envelope, so nothing above the store sees one.
struct AtRest: Sendable {
    let sealer: SecretSealer?

    func encode(_ value: JSONValue, secrets: Redaction, service: ServiceName) throws -> String {
        guard let sealer, !secrets.isEmpty else { return value.serialized(.canonical) }
        return try Self.refusing(service.rawValue) { try sealer.seal(value, secrets: secrets, service: service.rawValue) }.serialized(.canonical)
    }

    /// A sealing failure as confbus's own error: it names the service and the key, never a value.
    static func refusing<T>(_ service: String?, _ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as SealingError {
            throw ConfbusError(code: .sealedValue, service: service, message: error.message)
        }
    }

    /// Without a key nothing is searched for envelopes: `checkSecretKey` has refused to start on a
    /// database that holds any, so start-up and reads pay nothing for sealing they do not use.
    func decode(_ text: String, service: String) throws -> JSONValue {
        let value = try JSONParser().parse(text)
        guard let sealer, SecretSealer.mayHoldEnvelopes(text) else { return value }
        return try Self.refusing(service) { try sealer.unseal(value, service: service) }
    }

    static let answerContext = "idempotency answer"

    /// An idempotency answer may quote configs: with a key, it is stored sealed whole.
    func encodeAnswer(_ answer: String, key: String) throws -> String {
        guard let sealer else { return answer }
        return try Self.refusing(nil) { try sealer.sealText(answer, context: "\(Self.answerContext)\u{0}\(key)") }
    }

    func decodeAnswer(_ stored: String, key: String) throws -> String {
        guard let sealer, SecretSealer.isSealedText(stored) else { return stored }
        return try Self.refusing(nil) { try sealer.openText(stored, context: "\(Self.answerContext)\u{0}\(key)") }
    }
}

extension PostgresVersionStore {
    /// Checks at start-up that this node can read the database's sealed values, and records the
    /// key it seals under: a node without the key, or with another one, refuses to start.
    public func checkSecretKey() async throws {
        try await Self.unwrapping { try await client.withTransaction(logger: logger) { connection in
            var recorded: String?
            for try await keyID in try await connection.query("SELECT key_id FROM secret_key WHERE id = 1 FOR UPDATE", logger: logger)
                .decode(String.self) { recorded = keyID }
            switch (recorded, atRest.sealer) {
            case (nil, nil):
                return
            case (nil, let sealer?):
                try await connection.query("INSERT INTO secret_key (id, key_id) VALUES (1, \(sealer.keyID))", logger: logger)
                logger.notice("secret values are sealed at rest from now on", metadata: ["key_id": "\(sealer.keyID)"])
            case (let recorded?, nil):
                throw StartupRefusal("""
                    this database holds secret values sealed at rest under key \(recorded): set secret_key_file to that key \
                    (or decrypt them with `confbus secrets rotate --old-key-file K` and no new key)
                    """)
            case (let recorded?, let sealer?) where recorded != sealer.keyID:
                throw StartupRefusal("""
                    this database's secrets are sealed under key \(recorded), but secret_key_file holds key \(sealer.keyID): \
                    use the old key, or move to the new one with `confbus secrets rotate --old-key-file OLD --new-key-file NEW`
                    """)
            default:
                return
            }
        } }
    }

    /// What a key rotation did.
    public struct Rotation: Sendable, Equatable {
        public var versions = 0
        public var layers = 0
        public var answers = 0
    }

    /// Seals every sealed value again under `new` (or opens it for good when `new` is nil), in one
    /// transaction: configs, override layers of versions and services, stored idempotency answers.
    /// Refuses when the database is not sealed under `old`.
    public static func rotateSecretKey(client: PostgresClient, old: SecretSealer, new: SecretSealer?, logger: Logger) async throws -> Rotation {
        try await unwrapping { try await client.withTransaction(logger: logger) { connection in
            var recorded: String?
            for try await keyID in try await connection.query("SELECT key_id FROM secret_key WHERE id = 1 FOR UPDATE", logger: logger)
                .decode(String.self) { recorded = keyID }
            guard let recorded else {
                throw ConfbusError(code: .badRequest, message: "this database has no sealed values (no key was ever used)")
            }
            guard recorded == old.keyID else {
                throw ConfbusError(code: .badRequest, message: "this database is sealed under key \(recorded); --old-key-file holds key \(old.keyID)")
            }
            func turn(_ text: String, _ service: String) throws -> String {
                guard SecretSealer.mayHoldEnvelopes(text) else { return text }
                let value = try JSONParser().parse(text)
                if let new { return try AtRest.refusing(service) { try old.reseal(value, service: service, under: new) }.serialized(.canonical) }
                return try AtRest.refusing(service) { try old.unseal(value, service: service) }.serialized(.canonical)
            }
            var rotation = Rotation()
            let marker = "%\(SecretSealer.envelopeKey)%"
            for row in try await connection.query("""
                SELECT service, version, config, override_layer FROM config_versions
                WHERE config LIKE \(marker) OR override_layer LIKE \(marker) FOR UPDATE
                """, logger: logger).collect() {
                let (service, version, config, layer) = try row.decode((String, Int, String, String?).self)
                try await connection.query("""
                    UPDATE config_versions SET config = \(try turn(config, service)), override_layer = \(try layer.map { try turn($0, service) })
                    WHERE service = \(service) AND version = \(version)
                    """, logger: logger)
                rotation.versions += 1
            }
            for row in try await connection.query("SELECT name, override_layer FROM services WHERE override_layer LIKE \(marker) FOR UPDATE",
                                                   logger: logger).collect() {
                let (name, layer) = try row.decode((String, String).self)
                try await connection.query("UPDATE services SET override_layer = \(try turn(layer, name)) WHERE name = \(name)", logger: logger)
                rotation.layers += 1
            }
            let oldRest = AtRest(sealer: old)
            let newRest = AtRest(sealer: new)
            for row in try await connection.query("SELECT key, answer FROM idempotency_keys WHERE answer LIKE 'v1:%' FOR UPDATE",
                                                   logger: logger).collect() {
                let (key, answer) = try row.decode((String, String).self)
                let plain = try oldRest.decodeAnswer(answer, key: key)
                try await connection.query("UPDATE idempotency_keys SET answer = \(try newRest.encodeAnswer(plain, key: key)) WHERE key = \(key)",
                                           logger: logger)
                rotation.answers += 1
            }
            if let new {
                try await connection.query("UPDATE secret_key SET key_id = \(new.keyID), rotated_at = now() WHERE id = 1", logger: logger)
            } else {
                try await connection.query("DELETE FROM secret_key WHERE id = 1", logger: logger)
            }
            return rotation
        } }
    }
}
