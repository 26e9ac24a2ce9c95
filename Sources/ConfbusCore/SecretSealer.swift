import Crypto
import Foundation

/// Secret values encrypted at rest (CONTRACT.md §10): with AES-256-GCM under the key in
/// `secret_key_file`, each value a schema marks secret is stored as an envelope,
/// `{"$confbus.sealed": "v1:<key id>:<base64 nonce | ciphertext | tag>"}`, whose associated data
/// is the service and the value's JSON pointer, so a sealed value cannot be moved to another
/// service or member unnoticed. Checksums are always those of the plain config.
public struct SecretSealer: Sendable {
    /// The member name of an envelope; a config that uses it for its own values cannot be sealed.
    public static let envelopeKey = "$confbus.sealed"
    static let version = "v1"

    let key: SymmetricKey
    /// Names the key without revealing it: the first 8 bytes of a SHA-256 over it, in hex.
    public let keyID: String

    public init(key bytes: [UInt8]) throws(SealingError) {
        guard bytes.count == 32 else { throw SealingError("a secret key is 32 bytes; this one has \(bytes.count)") }
        key = SymmetricKey(data: bytes)
        keyID = String(SHA256.hexDigest(Array("confbus secret key\u{0}".utf8) + bytes).prefix(16))
    }

    /// Reads a key file: 32 random bytes in base64 (`openssl rand -base64 32`), surrounding blanks ignored.
    public init(keyFileContents text: String) throws(SealingError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let data = Data(base64Encoded: trimmed) else { throw SealingError("the secret key file does not hold base64") }
        try self.init(key: Array(data))
    }

    /// A new random key, in the form a key file holds.
    public static func generateKeyFile() -> String {
        SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() } + "\n"
    }

    // MARK: Documents

    /// `value` with every member `secrets` covers replaced by its envelope.
    public func seal(_ value: JSONValue, secrets: Redaction, service: String) throws(SealingError) -> JSONValue {
        if secrets.isEmpty { return value }
        return try transform(value, at: [], secrets: secrets, service: service)
    }

    private func transform(_ value: JSONValue, at tokens: [String], secrets: Redaction, service: String) throws(SealingError) -> JSONValue {
        if secrets.covers(JSONPointer(tokens: tokens)) {
            return try envelope(sealing: value, service: service, pointer: JSONPointer(tokens: tokens))
        }
        switch value {
        case .object(let object):
            var out: [String: JSONValue] = [:]
            out.reserveCapacity(object.count)
            for (key, member) in object { out[key] = try transform(member, at: tokens + [key], secrets: secrets, service: service) }
            return .object(out)
        case .array(let items):
            var out: [JSONValue] = []
            out.reserveCapacity(items.count)
            for (i, item) in items.enumerated() { out.append(try transform(item, at: tokens + [String(i)], secrets: secrets, service: service)) }
            return .array(out)
        default:
            return value
        }
    }

    /// `value` with every envelope opened. Throws when one was sealed under another key or was altered.
    public func unseal(_ value: JSONValue, service: String) throws(SealingError) -> JSONValue {
        try Self.mapEnvelopes(value, at: []) { (text, pointer) throws(SealingError) in
            try open(text, service: service, pointer: pointer)
        }
    }

    /// `value` with every envelope sealed again under `other` (a key rotation).
    public func reseal(_ value: JSONValue, service: String, under other: SecretSealer) throws(SealingError) -> JSONValue {
        try Self.mapEnvelopes(value, at: []) { (text, pointer) throws(SealingError) in
            try other.envelope(sealing: open(text, service: service, pointer: pointer), service: service, pointer: pointer)
        }
    }

    /// Whether serialized JSON may hold an envelope: a cheap test before parsing and walking.
    public static func mayHoldEnvelopes(_ text: String) -> Bool { text.contains(envelopeKey) }

    /// Whether `value` holds an envelope anywhere.
    public static func holdsEnvelopes(_ value: JSONValue) -> Bool {
        switch value {
        case .object(let object):
            if envelopeText(object) != nil { return true }
            return object.values.contains(where: holdsEnvelopes)
        case .array(let items): return items.contains(where: holdsEnvelopes)
        default: return false
        }
    }

    /// The key ids of every envelope in `value`.
    public static func keyIDs(in value: JSONValue) -> Set<String> {
        var ids = Set<String>()
        _ = try? mapEnvelopes(value, at: []) { (text, _) throws(SealingError) in
            let parts = text.split(separator: ":", maxSplits: 2)
            if parts.count == 3 { ids.insert(String(parts[1])) }
            return .null
        }
        return ids
    }

    private static func envelopeText(_ object: [String: JSONValue]) -> String? {
        guard object.count == 1, case .string(let text)? = object[envelopeKey] else { return nil }
        return text
    }

    private static func mapEnvelopes(_ value: JSONValue, at tokens: [String],
                                     _ body: (String, JSONPointer) throws(SealingError) -> JSONValue) throws(SealingError) -> JSONValue {
        switch value {
        case .object(let object):
            if let text = envelopeText(object) { return try body(text, JSONPointer(tokens: tokens)) }
            var out: [String: JSONValue] = [:]
            out.reserveCapacity(object.count)
            for (key, member) in object { out[key] = try mapEnvelopes(member, at: tokens + [key], body) }
            return .object(out)
        case .array(let items):
            var out: [JSONValue] = []
            out.reserveCapacity(items.count)
            for (i, item) in items.enumerated() { out.append(try mapEnvelopes(item, at: tokens + [String(i)], body)) }
            return .array(out)
        default:
            return value
        }
    }

    // MARK: Values

    func envelope(sealing value: JSONValue, service: String, pointer: JSONPointer) throws(SealingError) -> JSONValue {
        .object([Self.envelopeKey: .string(try sealText(value.serialized(.canonical), context: Self.context(service, pointer)))])
    }

    func open(_ text: String, service: String, pointer: JSONPointer) throws(SealingError) -> JSONValue {
        let plain = try openText(text, context: Self.context(service, pointer))
        do { return try JSONParser().parse(plain) } catch { throw SealingError("a sealed value of \(service) at \(pointer) is not JSON") }
    }

    static func context(_ service: String, _ pointer: JSONPointer) -> String { "config\u{0}\(service)\u{0}\(pointer)" }

    /// Seals any text (an idempotency answer, say) as `v1:<key id>:<base64>`, bound to `context`.
    public func sealText(_ plain: String, context: String) throws(SealingError) -> String {
        do {
            let box = try AES.GCM.seal(Array(plain.utf8), using: key, authenticating: Array(context.utf8))
            guard let combined = box.combined else { throw SealingError("AES-GCM gave no combined form") }
            return "\(Self.version):\(keyID):\(combined.base64EncodedString())"
        } catch let error as SealingError {
            throw error
        } catch {
            throw SealingError("sealing failed: \(error)")
        }
    }

    public func openText(_ text: String, context: String) throws(SealingError) -> String {
        let parts = text.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == Self.version, let data = Data(base64Encoded: String(parts[2])) else {
            throw SealingError("a sealed value is malformed")
        }
        guard parts[1] == keyID else {
            throw SealingError("a value is sealed under key \(parts[1]), not under this node's key \(keyID)", wrongKey: String(parts[1]))
        }
        do {
            let box = try AES.GCM.SealedBox(combined: data)
            let plain = try AES.GCM.open(box, using: key, authenticating: Array(context.utf8))
            return String(decoding: plain, as: UTF8.self)
        } catch {
            throw SealingError("a sealed value failed authentication: it was altered or moved")
        }
    }

    /// Whether `text` is in the form `sealText` writes.
    public static func isSealedText(_ text: String) -> Bool { text.hasPrefix("\(version):") && text.split(separator: ":").count == 3 }
}

public struct SealingError: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// The key id a value is sealed under when it is not this node's.
    public var wrongKey: String?

    public init(_ message: String, wrongKey: String? = nil) {
        self.message = message
        self.wrongKey = wrongKey
    }

    public var description: String { message }
}
