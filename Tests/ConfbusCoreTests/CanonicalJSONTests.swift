import ConfbusCore
import Testing

/// RFC 8785 (JSON Canonicalization Scheme): the RFC's own examples.
struct CanonicalJSONTests {
    private func canonical(_ json: String) throws -> String {
        try JSONParser().parse(json).serialized(.canonical)
    }

    @Test func rfcMainExample() throws {
        // RFC 8785 §3.2.2: the example input and its canonical form.
        let input = #"""
            {
              "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
              "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
              "literals": [null, true, false]
            }
            """#
        let expected = #"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        #expect(try canonical(input) == expected)
    }

    @Test func rfcSortingExample() throws {
        // RFC 8785 §3.2.3: property names sorted by UTF-16 code units.
        let input = #"""
            {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
             "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control",
             "\u00f6": "Latin Small Letter O With Diaeresis"}
            """#
        let value = try JSONParser().parse(input)
        let keys = JSONValue.sortedKeys(value.objectValue!)
        #expect(keys.map { value[$0]!.stringValue! } == [
            "Carriage Return", "One", "Control", "Latin Small Letter O With Diaeresis",
            "Euro Sign", "Emoji: Grinning Face", "Hebrew Letter Dalet With Dagesh",
        ])
    }

    @Test func asciiKeysSortAsBytesAndOthersAsUTF16() throws {
        // The byte-wise fast path (no key with a character from U+E000 up) and the UTF-16 order agree.
        let ascii = try JSONParser().parse(#"{"b": 1, "a_b": 2, "a": 3, "B": 4, "ab": 5, "a\u00e9": 6, "": 7}"#)
        #expect(JSONValue.sortedKeys(ascii.objectValue!) == ["", "B", "a", "a_b", "ab", "aé", "b"])
        // U+FB33 sorts after U+1F600 in UTF-16 (a surrogate pair starts 0xD83D) but before it in UTF-8.
        let mixed = try JSONParser().parse(#"{"\ufb33": 1, "\ud83d\ude00": 2, "z": 3}"#)
        #expect(JSONValue.sortedKeys(mixed.objectValue!) == ["z", "\u{1F600}", "\u{FB33}"])
    }

    @Test func canonicalSizeIsTheLengthOfTheCanonicalBytes() throws {
        let values = [
            #"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, -0.0, 9007199254740993], "s": "\u20ac$\u000F\u000aA'\"\\\u0001\t"}"#,
            #"[[], {}, [null, true, false], {"\ud83d\ude00": {"x": ""}}]"#,
            #""plain""#, "12", "-1.5e-7",
        ]
        for text in values {
            let value = try JSONParser().parse(text)
            #expect(value.canonicalSize == value.serializedBytes(.canonical).count, "\(text)")
        }
    }

    /// RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialisation.
    @Test(arguments: [
        (0x0000000000000000 as UInt64, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ])
    func rfcNumbers(bits: UInt64, expected: String) {
        #expect(JSONValue.formatNumber(Double(bitPattern: bits)) == expected)
    }

    @Test func integersStayIntegers() throws {
        #expect(try canonical("[1, -0, 10, 1.0, 1.5e3]") == "[1,0,10,1,1500]")
        #expect(JSONValue.integer(12345678901234567).serialized() == "12345678901234568")
    }

    @Test func checksumIsSHA256OfCanonicalForm() throws {
        let value = try JSONParser().parse(#"{"b": 1, "a": [true, null]}"#)
        #expect(value.serialized(.canonical) == #"{"a":[true,null],"b":1}"#)
        #expect(value.checksum == "sha256:" + SHA256.hexDigest(Array(#"{"a":[true,null],"b":1}"#.utf8)))
        // Key order and number spelling do not change the checksum.
        #expect(try JSONParser().parse(#"{"a": [true, null], "b": 1.0}"#).checksum == value.checksum)
    }
}

struct SHA256Tests {
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func fipsVectors(input: String, digest: String) {
        #expect(SHA256.hexDigest(Array(input.utf8)) == digest)
    }

    @Test func millionAs() {
        #expect(SHA256.hexDigest(Array(repeating: UInt8(ascii: "a"), count: 1_000_000))
            == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
