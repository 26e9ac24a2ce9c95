import ConfbusCore
import Foundation
import Synchronization

/// What can be published (CONTRACT.md §6b): an encoded document no larger than
/// `max_document_bytes`, nor than the broker's Maximum Packet Size (announced in CONNACK) less
/// the PUBLISH header. Checked before every commit, so nothing unpublishable is ever stored.
public final class PublishLimits: Sendable {
    public let maxDocumentBytes: Int
    private let updateTopicBytes: @Sendable (ServiceName) -> Int
    /// 0 until a broker announced a maximum.
    private let brokerMaximum = Atomic<Int>(0)

    public init(maxDocumentBytes: Int, updateTopicBytes: @escaping @Sendable (ServiceName) -> Int = { "config/update/\($0)".utf8.count }) {
        self.maxDocumentBytes = maxDocumentBytes
        self.updateTopicBytes = updateTopicBytes
    }

    /// The Maximum Packet Size the broker announced (nil: none announced, so no broker limit).
    public var brokerMaximumPacketSize: Int? {
        let n = brokerMaximum.load(ordering: .relaxed)
        return n > 0 ? n : nil
    }

    public func setBrokerMaximumPacketSize(_ bytes: Int?) {
        brokerMaximum.store(bytes ?? 0, ordering: .relaxed)
    }

    /// The largest payload that can go out on `service`'s update topic.
    public func maximumPayload(for service: ServiceName) -> Int {
        guard let packet = brokerMaximumPacketSize else { return maxDocumentBytes }
        // Fixed header (1 byte + up to 4 of remaining length), topic (2 + its bytes), packet id (2),
        // property length (1): a conservative PUBLISH header.
        let header = 1 + 4 + 2 + updateTopicBytes(service) + 2 + 1
        return min(maxDocumentBytes, packet - header)
    }

    /// Refuses a config that could not be carried: U+0000 in a string or key (422), or a
    /// document larger than can be published (413 `too_large_to_publish`).
    public func check(_ config: JSONValue, checksum: String? = nil, service: ServiceName, version: Int,
                      environment: String) throws(ConfbusError) {
        if let path = config.firstNULCharacter() {
            throw ConfbusError(code: .invalidValue, service: service.rawValue,
                               message: "a string or key at \(path) contains U+0000, which cannot be distributed",
                               issues: [ValidationIssue(instancePath: path, keywordPath: .root, message: "contains U+0000, which cannot be distributed")])
        }
        // The document exactly as it will be published: the timestamp has a fixed width.
        let document = StoredVersion(service: service, version: version, config: config, checksum: checksum ?? config.checksum,
                                     source: .files, author: "", reason: nil, createdAt: Date(), environment: environment).document
        let size = document.canonicalSize
        let limit = maximumPayload(for: service)
        guard size <= limit else {
            let which = limit < maxDocumentBytes ? "the broker's maximum packet size" : "max_document_bytes"
            throw ConfbusError(code: .tooLargeToPublish, service: service.rawValue,
                               message: "the document of \(service) would be \(size) bytes; at most \(limit) can be published (\(which))")
        }
    }
}
