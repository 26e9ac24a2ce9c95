import ConfbusCore
import Testing

/// Sealing at rest (CONTRACT.md §10): what is sealed, and what refuses to open.
@Suite struct SecretSealerTests {
    let config: JSONValue = [
        "db": ["host": "h", "password": "pw-1"],
        "keys": [["id": "a", "secret": "s-a"], ["id": "b", "secret": "s-b"]],
    ]
    let secrets = Redaction(paths: [["db", "password"], ["keys", "*", "secret"]])

    @Test func sealsExactlyTheSecretsAndOpensThemAgain() throws {
        let sealer = try SecretSealer(key: Array(repeating: 7, count: 32))
        let sealed = try sealer.seal(config, secrets: secrets, service: "svc")
        let text = sealed.serialized(.canonical)
        #expect(!text.contains("pw-1") && !text.contains("s-a") && !text.contains("s-b"))
        #expect(sealed["db"]?["host"] == "h" && sealed["keys"]?.arrayValue?[1]["id"] == "b")
        #expect(SecretSealer.keyIDs(in: sealed) == [sealer.keyID])
        #expect(try sealer.unseal(sealed, service: "svc") == config)
        // Sealing twice gives different ciphertexts (a fresh nonce each time) that open to the same value.
        #expect(try sealer.seal(config, secrets: secrets, service: "svc") != sealed)
        // The whole config is one envelope when nothing is known of the schema.
        let whole = try sealer.seal(config, secrets: .everything, service: "svc")
        #expect(whole.objectValue?.keys.sorted() == [SecretSealer.envelopeKey])
        #expect(try sealer.unseal(whole, service: "svc") == config)
    }

    @Test func aValueOpensOnlyUnderItsKeyServiceAndPointer() throws {
        let sealer = try SecretSealer(key: Array(repeating: 7, count: 32))
        let other = try SecretSealer(key: Array(repeating: 8, count: 32))
        #expect(sealer.keyID != other.keyID)
        let sealed = try sealer.seal(config, secrets: secrets, service: "svc")
        #expect(throws: SealingError.self) { try other.unseal(sealed, service: "svc") }
        #expect(throws: SealingError.self) { try sealer.unseal(sealed, service: "another-svc") }
        // Moved to another member, an envelope fails authentication.
        var object = try #require(sealed.objectValue)
        var db = try #require(object["db"]?.objectValue)
        db["host"] = db["password"]
        object["db"] = .object(db)
        #expect(throws: SealingError.self) { try sealer.unseal(.object(object), service: "svc") }
        // Rotation: the old key no longer opens what was resealed; the new one does.
        let rotated = try sealer.reseal(sealed, service: "svc", under: other)
        #expect(throws: SealingError.self) { try sealer.unseal(rotated, service: "svc") }
        #expect(try other.unseal(rotated, service: "svc") == config)
    }

    @Test func keyFilesAreThirtyTwoBytesOfBase64() throws {
        let sealer = try SecretSealer(keyFileContents: SecretSealer.generateKeyFile())
        #expect(sealer.keyID.count == 16)
        #expect(throws: SealingError.self) { try SecretSealer(keyFileContents: "c2hvcnQ=") }
        #expect(throws: SealingError.self) { try SecretSealer(keyFileContents: "not base64!") }
    }
}
