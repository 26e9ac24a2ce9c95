import Crypto

/// SHA-256 digests in the spelling confbus uses, computed by swift-crypto.
public enum SHA256 {
    public static func hash<Bytes: Sequence>(_ bytes: Bytes) -> [UInt8] where Bytes.Element == UInt8 {
        Array(Crypto.SHA256.hash(data: Array(bytes)))
    }

    /// Lower-case hexadecimal, as in `sha256:<hex>`.
    public static func hexDigest<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        hex(Crypto.SHA256.hash(data: Array(bytes)))
    }

    static func hex(_ digest: Crypto.SHA256.Digest) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for byte in digest {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

extension JSONValue {
    /// `sha256:<hex>` of the RFC 8785 canonical form: the checksum of a config in CONTRACT.md §3.
    public var checksum: String {
        "sha256:" + SHA256.hex(Crypto.SHA256.hash(data: serializedBytes(.canonical)))
    }
}
