import ConfbusCore
@testable import ConfbusEngine
import ConfbusTestSupport
import Foundation
import Testing

/// A commit's notification can reach the listener before the commit's own answer reaches this
/// node: the version is then this node's own and is not read back from the store.
struct NotifiedVersionTests {
    @Test func anOwnCommitInFlightIsNotReadBackAndAnotherNodesIs() async throws {
        let f = UseCaseTests.Fixture()
        f.tree.set("alpha", defaults: "pool: 5")
        _ = try await f.distributor.reloader.reload()
        let alpha = UseCaseTests.name("alpha")
        let v1 = try #require(f.distributor.reads.latest(alpha))

        // Our commit of version 2 is in flight when its notification comes; any read of the store
        // fails from here on, so a refresh that reads it throws.
        await f.store.setUnavailable(true)
        f.distributor.pipeline.inFlight.begin([alpha])
        let refreshed = Task { try await f.distributor.reads.refresh(alpha, notified: 2) }
        try await Task.sleep(for: .milliseconds(50))
        // The commit's answer arrives and the commit settles.
        var v2 = v1
        v2.version = 2
        f.distributor.pipeline.cache.offer(v2)
        f.distributor.pipeline.inFlight.end([alpha])
        try await refreshed.value
        #expect(f.distributor.reads.latest(alpha)?.version == 2)

        // With no commit of ours in flight, a version not held is another node's: it is read.
        await #expect(throws: (any Error).self, "a version this node does not hold is read from the store") {
            try await f.distributor.reads.refresh(alpha, notified: 3)
        }
        await f.store.setUnavailable(false)
        try await f.distributor.reads.refresh(alpha, notified: 2)
    }
}

extension NotifiedVersionTests {
    /// A listener waiting for a commit that never ends still stops when it is cancelled (shutdown).
    @Test func waitingForACommitEndsOnCancellation() async throws {
        let inFlight = CommitsInFlight()
        let alpha = UseCaseTests.name("alpha")
        inFlight.begin([alpha])
        let waiting = Task { await inFlight.settled(alpha) }
        try await Task.sleep(for: .milliseconds(50))
        waiting.cancel()
        let ended = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await waiting.value; return true }
            // Past 5 s the commit is ended here, so a wait that ignored its cancellation fails the test instead of hanging it.
            group.addTask { try? await Task.sleep(for: .seconds(5)); inFlight.end([alpha]); return false }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
        #expect(ended, "a cancelled wait returns although the commit is still in flight")
        inFlight.end([alpha])
    }
}
