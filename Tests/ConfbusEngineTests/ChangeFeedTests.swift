import ConfbusCore
@testable import ConfbusEngine
import Foundation
import Testing

/// The node's change feed: what the live cache and the rollout board tell it, and to whom.
struct ChangeFeedTests {
    let billing = try! ServiceName(validating: "billing-api")
    let report = try! ServiceName(validating: "report-worker")

    func version(_ service: ServiceName, _ n: Int) -> StoredVersion {
        StoredVersion(service: service, version: n, config: ["n": .integer(n)], checksum: "c\(n)", source: .override, author: "t", reason: nil,
                      createdAt: Date(), environment: "test")
    }

    func record(_ service: ServiceName, revision: Int) -> RolloutBoard.Entry {
        let machine = RolloutMachine(id: "r-1", service: service, stableVersion: 1, candidateVersion: 2,
                                     policy: .init(steps: [50, 100], bake: .seconds(1), ackTimeout: .seconds(1), maxRejected: 0),
                                     step: 0, cohort: [], phase: .baking(since: Date()))
        return .init(record: RolloutRecord(machine: machine, actor: "t", reason: nil, startedAt: Date(), updatedAt: Date(), revision: revision),
                     candidate: version(service, 2))
    }

    /// Collects what one subscriber sees until `count` changes arrived.
    func take(_ count: Int, from stream: AsyncStream<ChangeFeed.Change>) async -> [ChangeFeed.Change] {
        var seen: [ChangeFeed.Change] = []
        for await change in stream {
            seen.append(change)
            if seen.count == count { break }
        }
        return seen
    }

    @Test func aVersionTheCacheTakesIsToldOnceAndAnOlderOneNot() async {
        let cache = LiveCache()
        let stream = cache.changes.subscribe()
        cache.offer(version(billing, 2))
        cache.offer(version(billing, 1))  // older: not taken, not told
        cache.offer(version(billing, 2))  // the same: not told
        cache.offer(version(report, 1))
        #expect(await take(2, from: stream) == [.init(.version, billing), .init(.version, report)])
    }

    @Test func theBoardTellsARolloutThatStartsMovesAndEndsButNotOneThatStands() async {
        let feed = ChangeFeed()
        let board = RolloutBoard(changes: feed)
        let stream = feed.subscribe()
        board.replace([billing: record(billing, revision: 1)])
        board.replace([billing: record(billing, revision: 1)])  // unchanged: nothing
        board.replace([billing: record(billing, revision: 2)])
        board.set(record(report, revision: 1))
        board.replace([billing: record(billing, revision: 2)])  // report-worker's ended
        #expect(await take(4, from: stream) == [.init(.rollout, billing), .init(.rollout, billing), .init(.rollout, report), .init(.rollout, report)])
        #expect(board.takeEnded() == [report])
    }

    @Test func aDroppedSubscriberIsForgottenAndFinishAllEndsTheRest() async {
        let feed = ChangeFeed()
        do {
            let dropped = feed.subscribe()
            #expect(feed.subscriberCount == 1)
            _ = dropped
        }
        #expect(feed.subscriberCount == 0)
        let kept = feed.subscribe()
        feed.publish(.init(.instance, billing))
        feed.finishAll()
        var seen: [ChangeFeed.Change] = []
        for await change in kept { seen.append(change) }
        #expect(seen == [.init(.instance, billing)])
        #expect(feed.subscriberCount == 0)
    }

    /// A subscriber that does not read keeps only the newest changes; the producer never waits.
    @Test func aSlowSubscriberLosesItsOldestChanges() async {
        let feed = ChangeFeed(buffer: 2)
        let stream = feed.subscribe()
        for n in 1...5 { feed.publish(.init(.version, try! ServiceName(validating: "s-\(n)"))) }
        feed.finishAll()
        var seen: [String] = []
        for await change in stream { seen.append(change.service.rawValue) }
        #expect(seen == ["s-4", "s-5"])
    }
}
