import ConfbusCore

/// The payloads services send (CONTRACT.md §4), checked before anything is recorded: size,
/// UTF-8, a JSON object, and the fields' types and grammar.
public enum InstanceMessages {
    public struct Registration: Sendable, Equatable {
        public var instance: String
        public var environment: String?
        public var version: Int?
        /// `"features"`: what the instance can do (`rollout`: it takes part in progressive rollouts, §8).
        public var features: [String] = []
    }

    public struct Ack: Sendable, Equatable {
        public var version: Int
        public var status: String
        public var detail: String?
    }

    public static func isValidInstanceID(_ id: String) -> Bool {
        let bytes = Array(id.utf8)
        guard (1...128).contains(bytes.count) else { return false }
        return bytes.allSatisfy { b in
            (b >= 65 && b <= 90) || (b >= 97 && b <= 122) || (b >= 48 && b <= 57) || b == 46 || b == 95 || b == 58 || b == 45
        }
    }

    static func object(_ payload: [UInt8], maxBytes: Int) throws(ConfbusError) -> [String: JSONValue] {
        guard payload.count <= maxBytes else {
            throw ConfbusError(code: .documentTooLarge, message: "payload is \(payload.count) bytes, over the limit of \(maxBytes)")
        }
        guard String(validating: payload, as: UTF8.self) != nil else {
            throw ConfbusError(code: .invalidPayload, message: "payload is not valid UTF-8")
        }
        let value: JSONValue
        do {
            value = try JSONParser(maxDepth: 16).parse(payload)
        } catch {
            throw ConfbusError(code: .invalidPayload, message: "payload is not JSON: \(error.description)")
        }
        guard case .object(let object) = value else {
            throw ConfbusError(code: .invalidPayload, message: "payload must be a JSON object")
        }
        return object
    }

    public static func registration(_ payload: [UInt8], maxBytes: Int) throws(ConfbusError) -> Registration {
        let object = try object(payload, maxBytes: maxBytes)
        guard case .string(let instance) = object["instance"], isValidInstanceID(instance) else {
            throw ConfbusError(code: .invalidPayload, message: "\"instance\" must be a string of 1 to 128 characters A-Z a-z 0-9 . _ : -")
        }
        var registration = Registration(instance: instance)
        switch object["environment"] {
        case nil, .null: break
        case .string(let e): registration.environment = e
        default: throw ConfbusError(code: .invalidPayload, message: "\"environment\" must be a string")
        }
        switch object["version"] {
        case nil, .null: break
        case .integer(let v) where v >= 0: registration.version = v
        default: throw ConfbusError(code: .invalidPayload, message: "\"version\" must be a non-negative integer")
        }
        switch object["features"] {
        case nil, .null: break
        case .array(let items) where items.count <= 16 && items.allSatisfy({ ($0.stringValue?.utf8.count ?? 65) <= 64 }):
            registration.features = Array(Set(items.compactMap(\.stringValue))).sorted()
        default: throw ConfbusError(code: .invalidPayload, message: "\"features\" must be an array of at most 16 strings of up to 64 bytes")
        }
        return registration
    }

    public static func ack(_ payload: [UInt8], maxBytes: Int) throws(ConfbusError) -> Ack {
        let object = try object(payload, maxBytes: maxBytes)
        guard case .integer(let version) = object["version"], version >= 1 else {
            throw ConfbusError(code: .invalidPayload, message: "\"version\" must be an integer from 1")
        }
        guard case .string(let status) = object["status"], status == "applied" || status == "rejected" else {
            throw ConfbusError(code: .invalidPayload, message: "\"status\" must be \"applied\" or \"rejected\"")
        }
        var detail: String?
        switch object["detail"] {
        case nil, .null: break
        case .string(let d): detail = String(d.prefix(1000))
        default: throw ConfbusError(code: .invalidPayload, message: "\"detail\" must be a string")
        }
        return Ack(version: version, status: status, detail: detail)
    }

    /// A health message: its status, and the version the instance runs when it says (`"version"`,
    /// an additive field).
    public struct Health: Sendable, Equatable {
        public var status: String
        public var version: Int?
    }

    public static func health(_ payload: [UInt8], maxBytes: Int) throws(ConfbusError) -> Health {
        let object = try object(payload, maxBytes: maxBytes)
        guard case .string(let status) = object["status"], ["online", "degraded", "offline"].contains(status) else {
            throw ConfbusError(code: .invalidPayload, message: "\"status\" must be \"online\", \"degraded\" or \"offline\"")
        }
        switch object["version"] {
        case nil, .null: return Health(status: status)
        case .integer(let version) where version >= 1: return Health(status: status, version: version)
        default: throw ConfbusError(code: .invalidPayload, message: "\"version\" must be an integer from 1")
        }
    }
}
