import ConfbusCore
import ConfbusEngine
import Foundation
import Testing

struct LiveCacheTests {
    func version(_ n: Int, _ service: String = "billing") throws -> StoredVersion {
        StoredVersion(service: try ServiceName(validating: service), version: n, config: ["n": .integer(n)], checksum: "c\(n)",
                      source: .files, author: "t", reason: nil, createdAt: Date(), environment: "dev")
    }

    @Test func keepsOnlyNewerVersions() throws {
        let cache = LiveCache()
        #expect(cache.offer(try version(2)))
        #expect(!cache.offer(try version(1)))
        #expect(!cache.offer(try version(2)))
        #expect(cache.latest(try ServiceName(validating: "billing"))?.version == 2)
    }

    /// Under `make test` the two cores are shared with a dozen servers starting at once, so the
    /// waiter may take seconds to register: the test waits for it (bounded by its time limit),
    /// not for a fixed few seconds.
    @Test(.timeLimit(.minutes(2)))
    func aWaiterWakesOnANewerVersion() async throws {
        let cache = LiveCache()
        cache.offer(try version(1))
        let name = try ServiceName(validating: "billing")
        async let waited = cache.wait(for: name, after: 1, timeout: .seconds(90))
        while cache.waiterCount < 1 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(cache.waiterCount == 1)
        cache.offer(try version(2))
        #expect(await waited?.version == 2)
        #expect(cache.waiterCount == 0)
    }

    @Test func aWaiterTimesOutAndLeavesNothingBehind() async throws {
        let cache = LiveCache()
        let name = try ServiceName(validating: "billing")
        #expect(await cache.wait(for: name, after: 0, timeout: .milliseconds(50)) == nil)
        #expect(cache.waiterCount == 0)
    }

    @Test func thousandsOfWaitersAreCheap() async throws {
        let cache = LiveCache()
        let name = try ServiceName(validating: "billing")
        try await withThrowingTaskGroup(of: Int?.self) { group in
            for _ in 0..<5000 { group.addTask { await cache.wait(for: name, after: 0, timeout: .seconds(30))?.version } }
            while cache.waiterCount < 5000 { try await Task.sleep(for: .milliseconds(10)) }
            cache.offer(try version(1))
            var woken = 0
            for try await result in group where result == 1 { woken += 1 }
            #expect(woken == 5000)
        }
    }
}

struct InstanceMessagesTests {
    @Test func registrationsAreChecked() throws {
        #expect(try InstanceMessages.registration(Array(#"{"instance":"web-1","version":3}"#.utf8), maxBytes: 100).version == 3)
        #expect(try InstanceMessages.registration(Array(#"{"instance":"web-1","features":["rollout","x","rollout"]}"#.utf8), maxBytes: 200)
            .features == ["rollout", "x"], "features: a set, in order")
        #expect(try InstanceMessages.registration(Array(#"{"instance":"web-1"}"#.utf8), maxBytes: 100).features == [])
        for bad in [#"{"instance":"w","features":"rollout"}"#, #"{"instance":"w","features":[1]}"#] {
            #expect(throws: ConfbusError.self) { try InstanceMessages.registration(Array(bad.utf8), maxBytes: 200) }
        }
        for bad in [#"[1]"#, "nope", #"{"instance":"a/b"}"#, #"{"instance":""}"#, #"{"instance":"x","version":"3"}"#, #"{}"#] {
            #expect(throws: ConfbusError.self) { try InstanceMessages.registration(Array(bad.utf8), maxBytes: 100) }
        }
        #expect(throws: ConfbusError.self) { try InstanceMessages.registration([0xFF, 0xFE], maxBytes: 100) }
        #expect(throws: ConfbusError.self) { try InstanceMessages.registration(Array(repeating: 0x20, count: 101), maxBytes: 100) }
    }

    @Test func acksAndHealthAreChecked() throws {
        #expect(try InstanceMessages.ack(Array(#"{"version":2,"status":"rejected","detail":"bad"}"#.utf8), maxBytes: 100).status == "rejected")
        #expect(throws: ConfbusError.self) { try InstanceMessages.ack(Array(#"{"version":0,"status":"applied"}"#.utf8), maxBytes: 100) }
        #expect(throws: ConfbusError.self) { try InstanceMessages.health(Array(#"{"status":"sleepy"}"#.utf8), maxBytes: 100) }
        #expect(try InstanceMessages.health(Array(#"{"status":"online","extra":1}"#.utf8), maxBytes: 100).status == "online")
        #expect(try InstanceMessages.health(Array(#"{"status":"online","version":7}"#.utf8), maxBytes: 100).version == 7)
        #expect(throws: ConfbusError.self) { try InstanceMessages.health(Array(#"{"status":"online","version":"7"}"#.utf8), maxBytes: 100) }
    }
}

struct FailpointsTests {
    @Test func parsesActionsAndRefusesTypos() throws {
        let f = try Failpoints(parsing: "after_commit=exit,before_publish=sleep(5),x=error")
        #expect(f.actions["after_commit"] == .exit)
        #expect(f.actions["before_publish"] == .sleep(milliseconds: 5))
        #expect(throws: Failpoints.Triggered.self) { try f.hit("x") }
        #expect(throws: (any Error).self) { try Failpoints(parsing: "a=explode") }
    }
}
