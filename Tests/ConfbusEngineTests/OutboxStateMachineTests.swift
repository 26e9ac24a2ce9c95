import ConfbusCore
import ConfbusEngine
import Foundation
import Testing

/// The relay's decisions on a fake clock (plain integers of milliseconds).
struct OutboxStateMachineTests {
    typealias Machine = OutboxStateMachine<Int>

    static func machine() -> Machine {
        Machine(backoff: .init(initial: .milliseconds(500), maximum: .seconds(4))) { now, delay in
            now + Int(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)
        }
    }

    static func entry(_ service: String, _ version: Int) throws -> StoredVersion {
        let config: JSONValue = ["v": .integer(version)]
        return StoredVersion(service: try ServiceName(validating: service), version: version, config: config, checksum: config.checksum,
                             source: .files, author: "t", reason: nil, createdAt: Date(timeIntervalSince1970: 0), environment: "dev")
    }

    static func published(_ actions: [Machine.Action]) -> [String] {
        actions.compactMap { if case .publish(let v) = $0 { "\(v.service)@\(v.version)" } else { nil } }
    }

    @Test func aFailingServiceBacksOffAloneAndTheOthersGoOn() throws {
        var m = Self.machine()
        let a = try ServiceName(validating: "a")
        let first = m.schedule([try Self.entry("a", 1), try Self.entry("b", 1), try Self.entry("c", 1)], at: 0)
        #expect(Self.published(first) == ["a@1", "b@1", "c@1"])
        let delay = m.failed(a, version: 1, reason: "refused_0x87", refused: true, at: 0)
        #expect(delay == .milliseconds(500))
        #expect(m.refused == [a])
        m.published(try ServiceName(validating: "b"), version: 1)
        m.published(try ServiceName(validating: "c"), version: 1)
        // While a waits out its backoff it is left out; a new version of c goes out at once.
        #expect(m.blocked(at: 100) == [a])
        let second = m.schedule([try Self.entry("a", 1), try Self.entry("c", 2)], at: 100)
        #expect(Self.published(second) == ["c@2"])
        m.published(try ServiceName(validating: "c"), version: 2)
        #expect(m.nextRetry == 500)
        let retried = m.schedule([try Self.entry("a", 1)], at: 500)
        #expect(Self.published(retried) == ["a@1"])
        #expect(m.failing[a] == "refused_0x87")
        // Published at last: neither failing nor refused any more.
        m.published(a, version: 1)
        #expect(m.refused.isEmpty && m.failing[a] == nil)
    }

    @Test func theBackoffGrowsAndIsCapped() throws {
        var m = Self.machine()
        let a = try ServiceName(validating: "a")
        var delays: [Duration] = []
        var now = 0
        for _ in 0..<6 {
            _ = m.schedule([try Self.entry("a", 1)], at: now)
            delays.append(m.failed(a, version: 1, reason: "timeout", at: now))
            now = m.nextRetry ?? now
        }
        #expect(delays == [.milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(4), .seconds(4)])
        _ = m.schedule([try Self.entry("a", 1)], at: now)
        m.published(a, version: 1)
        #expect(m.failing.isEmpty && m.nextRetry == nil)
    }

    @Test func aServiceIsNeverInFlightTwiceAndNothingOlderFollowsANewerVersion() throws {
        var m = Self.machine()
        let a = try ServiceName(validating: "a")
        let first = m.schedule([try Self.entry("a", 3)], at: 0)
        #expect(Self.published(first) == ["a@3"])
        let again = m.schedule([try Self.entry("a", 3)], at: 0)
        #expect(again.isEmpty)   // still in flight
        m.published(a, version: 3)
        // Published but not yet marked (the mark failed): marked done, not sent again.
        let afterPublish = m.schedule([try Self.entry("a", 3)], at: 1)
        #expect(afterPublish == [.markDone(a, through: 3)])
        // Reconcile queued it again: it is sent once more.
        m.forget(a)
        let requeued = m.schedule([try Self.entry("a", 3)], at: 2)
        #expect(Self.published(requeued) == ["a@3"])
    }

    @Test func losingTheLeaseForgetsEverything() throws {
        var m = Self.machine()
        let a = try ServiceName(validating: "a")
        _ = m.schedule([try Self.entry("a", 1)], at: 0)
        m.failed(a, version: 1, reason: "timeout", at: 0)
        m.leadershipLost()
        #expect(m.blocked(at: 0).isEmpty)
        let fresh = m.schedule([try Self.entry("a", 1)], at: 0)
        #expect(Self.published(fresh) == ["a@1"])
    }
}
