import ConfbusCore
import Configuration
import Foundation

/// One version of a service's config as swift-configuration reads it: the key `database.pool_size` is
/// the member at `/database/pool_size`, and a value the schema marks secret comes back `isSecret`.
public struct ConfbusSnapshot: ConfigSnapshot {
    public let providerName: String
    /// The version this snapshot is of (0 before any).
    public let version: Int
    public let config: JSONValue
    public let secrets: Redaction

    public init(providerName: String = "ConfbusProvider", version: Int, config: JSONValue, secrets: Redaction = Redaction(paths: [])) {
        self.providerName = providerName
        self.version = version
        self.config = config
        self.secrets = secrets
    }

    public static func empty(providerName: String = "ConfbusProvider") -> ConfbusSnapshot {
        ConfbusSnapshot(providerName: providerName, version: 0, config: .object([:]))
    }

    public func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        let pointer = JSONPointer(tokens: key.components)
        let encoded = pointer.description
        guard let member = config.value(at: pointer), !member.isNull else { return LookupResult(encodedKey: encoded, value: nil) }
        guard let content = Self.content(member, as: type) else {
            throw ConfbusConfigError.typeMismatch(key: key.components.joined(separator: "."), type: type)
        }
        return LookupResult(encodedKey: encoded, value: ConfigValue(content, isSecret: secrets.covers(pointer)))
    }

    /// A JSON value as the content of `type`: numbers widen to doubles, `3.0` is an integer, bytes are base64.
    static func content(_ value: JSONValue, as type: ConfigType) -> ConfigContent? {
        func string(_ v: JSONValue) -> String? { v.stringValue }
        func int(_ v: JSONValue) -> Int? { v.integralValue }
        func double(_ v: JSONValue) -> Double? {
            switch v {
            case .integer(let i): Double(i)
            case .number(let d): d
            default: nil
            }
        }
        func bool(_ v: JSONValue) -> Bool? { v.boolValue }
        func bytes(_ v: JSONValue) -> [UInt8]? { v.stringValue.flatMap { Data(base64Encoded: $0) }.map(Array.init) }
        func array<T>(_ item: (JSONValue) -> T?) -> [T]? {
            guard case .array(let items) = value else { return nil }
            var out: [T] = []
            out.reserveCapacity(items.count)
            for element in items {
                guard let converted = item(element) else { return nil }
                out.append(converted)
            }
            return out
        }
        switch type {
        case .string: return string(value).map(ConfigContent.string)
        case .int: return int(value).map(ConfigContent.int)
        case .double: return double(value).map(ConfigContent.double)
        case .bool: return bool(value).map(ConfigContent.bool)
        case .bytes: return bytes(value).map(ConfigContent.bytes)
        case .stringArray: return array(string).map(ConfigContent.stringArray)
        case .intArray: return array(int).map(ConfigContent.intArray)
        case .doubleArray: return array(double).map(ConfigContent.doubleArray)
        case .boolArray: return array(bool).map(ConfigContent.boolArray)
        case .byteChunkArray: return array(bytes).map(ConfigContent.byteChunkArray)
        default: return nil
        }
    }
}

public enum ConfbusConfigError: Error, Sendable, CustomStringConvertible {
    /// The member exists but is not of the type asked for (its value is never quoted).
    case typeMismatch(key: String, type: ConfigType)

    public var description: String {
        switch self {
        case .typeMismatch(let key, let type): "config key \(key) is not a \(type)"
        }
    }
}
