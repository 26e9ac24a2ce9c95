import ConfbusCore

/// A resolved document as a client receives it (CONTRACT.md §3), checked before anything uses it.
public struct ClientDocument: Sendable, Equatable {
    public var service: String
    public var version: Int
    public var checksum: String
    public var config: JSONValue
    /// The bytes as received: what the cache file holds.
    public var bytes: [UInt8]

    /// Why a document was not taken.
    public enum Refusal: String, Error, Sendable, Equatable, CaseIterable {
        /// Not JSON, or without service, version, checksum or config.
        case malformed
        /// For another service.
        case wrongService = "wrong_service"
        /// Its checksum is not that of its config: altered on the way, or forged.
        case checksumMismatch = "checksum_mismatch"
        /// Not above the version held: a replay, or an older retained message.
        case stale
        /// Pulled with its secrets masked (`Confbus-Masked`): the client's token does not see them.
        case masked
    }

    /// Parses and verifies `bytes` as a document of `service`: the name, the shape, and the checksum
    /// recomputed over the config (RFC 8785 canonical form).
    public static func verified(_ bytes: [UInt8], service: String) -> Result<ClientDocument, Refusal> {
        guard let value = try? JSONParser().parse(bytes), case .string(let name)? = value["service"],
              let version = value["version"]?.integralValue, version >= 1,
              case .string(let checksum)? = value["checksum"], let config = value["config"], case .object = config
        else { return .failure(.malformed) }
        guard name == service else { return .failure(.wrongService) }
        guard config.checksum == checksum else { return .failure(.checksumMismatch) }
        return .success(ClientDocument(service: name, version: version, checksum: checksum, config: config, bytes: bytes))
    }
}

/// What the client holds and what it does with each document that arrives, by MQTT, pull or long-poll
/// (CONTRACT.md §9): versions only go up, a document that fails verification is dropped, and the
/// application has the last word through its accept hook. Pure: the adapters do the I/O.
public struct ClientState: Sendable {
    public let service: String
    public private(set) var held: ClientDocument?
    /// Documents dropped, by reason (the metrics and the health message report them).
    public private(set) var dropped: [ClientDocument.Refusal: Int] = [:]

    public init(service: String, held: ClientDocument? = nil) {
        self.service = service
        self.held = held
    }

    public var heldVersion: Int { held?.version ?? 0 }

    /// A document to offer to the application, or why it is dropped without being shown.
    public mutating func candidate(_ bytes: [UInt8]) -> Result<ClientDocument, ClientDocument.Refusal> {
        let result = ClientDocument.verified(bytes, service: service).flatMap { document -> Result<ClientDocument, ClientDocument.Refusal> in
            document.version > heldVersion ? .success(document) : .failure(.stale)
        }
        if case .failure(let refusal) = result { dropped[refusal, default: 0] += 1 }
        return result
    }

    /// A document refused before it was parsed (a pull the server masked).
    public mutating func drop(_ refusal: ClientDocument.Refusal) { dropped[refusal, default: 0] += 1 }

    /// The application took `document`: it is held from now on (the adapter has cached it and acks `applied`).
    public mutating func applied(_ document: ClientDocument) {
        guard document.version > heldVersion else { return }
        held = document
    }
}
