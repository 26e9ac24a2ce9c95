import ConfbusCore
import ConfbusEngine
import ConfbusTestSupport
import Foundation
import Logging
import Synchronization
import Testing

/// The Engine's use cases on the in-memory store and an in-memory tree: no server, no files.
struct UseCaseTests {
    static let schema = """
        type: object
        additionalProperties: false
        properties:
          pool: { type: integer, minimum: 1, maximum: 100 }
          tags: { type: object, additionalProperties: { type: integer } }
          name: { type: string }
        """

    /// A tree whose files a test can change between reloads.
    final class Tree: ConfigSource, Sendable {
        let files = Mutex<[String: [String: String]]>([:])

        func set(_ service: String, defaults: String) {
            files.withLock { $0[service] = ["schema.yaml": UseCaseTests.schema, "defaults.yaml": defaults] }
        }

        var snapshot: InMemoryConfigSource { InMemoryConfigSource(files: files.withLock { $0 }) }
        func listServices() -> (services: [ServiceName], errors: [ConfbusError]) { snapshot.listServices() }
        func load(_ service: ServiceName, environment: String) -> ServiceFiles { snapshot.load(service, environment: environment) }
        func parseValue(_ text: String, source: String) throws(ConfbusError) -> JSONValue { try snapshot.parseValue(text, source: source) }
    }

    struct Fixture {
        let tree = Tree()
        let store = InMemoryConfbusStore()
        let distributor: Distributor

        init(maxDocumentBytes: Int = 1 << 20) {
            let resolver = ServiceResolver(options: .init(environment: "test"), overrides: OverrideVariables(environment: [:]))
            distributor = Distributor(options: .init(environment: "test", maxPayloadBytes: maxDocumentBytes), source: tree,
                                      resolver: resolver, store: store, logger: Logger(label: "use-case-tests"))
        }
    }

    static let admin = OperatorContext(actor: "ops", requestID: "r-1", reason: "test")
    static func name(_ raw: String) -> ServiceName { try! ServiceName(validating: raw) }

    @Test func reloadCommitsWhatChangedAndKeepsABrokenServiceLocal() async throws {
        let f = Fixture()
        f.tree.set("alpha", defaults: "pool: 5")
        f.tree.set("beta", defaults: "pool: 7")
        let first = try await f.distributor.reloader.reload(reason: "start")
        #expect(first.committed.map(\.service.rawValue).sorted() == ["alpha", "beta"])

        f.tree.set("alpha", defaults: "pool: 500")   // above the maximum
        f.tree.set("beta", defaults: "pool: 8")
        let second = try await f.distributor.reloader.reload(reason: "edit")
        #expect(second.committed.map(\.service.rawValue) == ["beta"])
        #expect(second.failed.keys.map(\.rawValue) == ["alpha"])
        #expect(f.distributor.reads.invalidServices.keys.map(\.rawValue) == ["alpha"])
        #expect(f.distributor.reads.latest(Self.name("alpha"))?.config == ["pool": 5], "the last valid version stays live")
        #expect(try await f.store.latest(Self.name("beta"))?.version == 2)

        let third = try await f.distributor.reloader.reload(reason: "again")
        #expect(third.committed.isEmpty && third.unchanged.map(\.rawValue) == ["beta"], "an unchanged tree commits nothing")
    }

    /// A group of services the database refuses as a whole is committed again one service at a time.
    @Test func aRefusedGroupIsCommittedOneServiceAtATime() async throws {
        let f = Fixture()
        for name in ["alpha", "beta", "gamma"] { f.tree.set(name, defaults: "pool: 5") }
        await f.store.refuseCommits { $0.count > 1 }
        let report = try await f.distributor.reloader.reload()
        #expect(report.committed.map(\.service.rawValue).sorted() == ["alpha", "beta", "gamma"])
        #expect(report.failed.isEmpty)
        #expect(try await f.store.latestVersions().map(\.version) == [1, 1, 1])
    }

    @Test func concurrentEditsAndReloadsNeverLoseAnEdit() async throws {
        let f = Fixture()
        f.tree.set("alpha", defaults: "pool: 5")
        _ = try await f.distributor.reloader.reload()
        let service = Self.name("alpha")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for n in 0..<20 {
                group.addTask {
                    _ = try await f.distributor.overrides.edit(service, .patch(["tags": .object(["t\(n)": .integer(n)])]),
                                                               expectedVersion: nil, by: Self.admin)
                }
                if n % 5 == 0 { group.addTask { _ = try await f.distributor.reloader.reload() } }
            }
            try await group.waitForAll()
        }
        guard case .object(let tags)? = f.distributor.reads.latest(service)?.config["tags"] else {
            Issue.record("no tags in the latest version")
            return
        }
        #expect(tags.count == 20, "every patch survived the reloads: \(tags.keys.sorted())")
        #expect(try await f.store.latest(service)?.version == 21)
    }

    @Test func anInvalidEditIsRefusedAuditedAndStoresNothing() async throws {
        let f = Fixture()
        f.tree.set("alpha", defaults: "pool: 5")
        _ = try await f.distributor.reloader.reload()
        let service = Self.name("alpha")
        await #expect(throws: ConfbusError.self) {
            _ = try await f.distributor.overrides.edit(service, .replace(["pool": "many"]), expectedVersion: nil, by: Self.admin)
        }
        #expect(try await f.store.latest(service)?.version == 1)
        #expect(try await f.store.overrideLayers()[service] == nil)
        let refusal = try #require(try await f.store.auditLog(service: service, limit: 1).first)
        #expect(refusal.outcome == "refused" && refusal.action == "override.put")
        #expect(refusal.detail?.contains("many") == false, "the refusal names the path and rule, never the value")

        // If-Match against a version that is not the latest: 412's code, nothing stored.
        do {
            _ = try await f.distributor.overrides.edit(service, .replace(["pool": 6]), expectedVersion: 7, by: Self.admin)
            Issue.record("a stale If-Match must be refused")
        } catch let error as ConfbusError {
            #expect(error.code == .versionConflict)
        }
    }

    @Test func aDocumentTooLargeToPublishIsNeverCommitted() async throws {
        let f = Fixture(maxDocumentBytes: 400)
        f.tree.set("alpha", defaults: "pool: 5")
        _ = try await f.distributor.reloader.reload()
        let big = String(repeating: "x", count: 500)
        do {
            _ = try await f.distributor.overrides.edit(Self.name("alpha"), .replace(["name": .string(big)]), expectedVersion: nil, by: Self.admin)
            Issue.record("a document above max_document_bytes must be refused")
        } catch let error as ConfbusError {
            #expect(error.code == .tooLargeToPublish)
        }
        #expect(try await f.store.outboxStatus().backlog == 1, "only version 1 was ever queued")
    }

    @Test func aBatchLandsWholeOrNotAtAll() async throws {
        let f = Fixture()
        f.tree.set("alpha", defaults: "pool: 5")
        f.tree.set("beta", defaults: "pool: 6")
        _ = try await f.distributor.reloader.reload()
        let bad = try BatchRequest(["updates": [["service": "alpha", "patch": ["pool": 9]], ["service": "beta", "patch": ["pool": 0]]]])
        do {
            _ = try await f.distributor.batches.apply(bad, by: Self.admin)
            Issue.record("a batch with one invalid entry must be refused")
        } catch let error as ConfbusError {
            #expect(error.issues.map(\.index) == [1], "the failing entry is named by index")
        }
        #expect(try await f.store.latest(Self.name("alpha"))?.version == 1, "alpha was not committed either")

        let good = try BatchRequest(["updates": [["service": "alpha", "patch": ["pool": 9]], ["service": "beta", "patch": ["pool": 10]]]])
        let result = try await f.distributor.batches.apply(good, by: Self.admin)
        #expect(result.items.map(\.changed) == [true, true])
        let versions = try await f.store.latestVersions()
        #expect(versions.map(\.version) == [2, 2] && Set(versions.compactMap(\.batchID)).count == 1, "one batch id on both")
    }

    @Test func instanceReportsNeedAKnownServiceAndAnExistingVersion() async throws {
        let f = Fixture()
        f.tree.set("alpha", defaults: "pool: 5")
        let service = Self.name("alpha")
        // The first registration of a service with files makes its version 1.
        try await f.distributor.instances.register(service, payload: Array(#"{"instance": "i-1"}"#.utf8))
        #expect(try await f.store.latest(service)?.version == 1)
        do {
            try await f.distributor.instances.acknowledge(service, instance: "i-1", payload: Array(#"{"version": 2, "status": "applied"}"#.utf8))
            Issue.record("an ack above the latest must be refused")
        } catch {
            #expect(error.code == .invalidPayload)
        }
        do {
            try await f.distributor.instances.register(Self.name("ghost"), payload: Array(#"{"instance": "i-1"}"#.utf8))
            Issue.record("a service without files must be refused")
        } catch {
            #expect(error.code == .unknownService)
        }
        await f.store.setUnavailable(true)
        do {
            try await f.distributor.instances.health(service, instance: "i-1", payload: Array(#"{"status": "online"}"#.utf8))
            Issue.record("a store that is down must refuse")
        } catch {
            #expect(error.code == .storeUnavailable)
        }
    }

    /// A publisher that refuses one service, as a broker ACL does (reason 0x87).
    final class RefusingPublisher: UpdatePublisher {
        let refused: ServiceName
        let published = Mutex<[String]>([])
        struct Refused: Error {}

        init(refused: ServiceName) { self.refused = refused }

        func publishUpdate(_ version: StoredVersion) async throws {
            if version.service == refused { throw Refused() }
            published.withLock { $0.append("\(version.service):\(version.version)") }
        }
    }

    @Test func theRelayPublishesEveryOtherServiceWhenOneIsRefused() async throws {
        let f = Fixture()
        for name in ["alpha", "beta", "gamma", "delta"] { f.tree.set(name, defaults: "pool: 5") }
        _ = try await f.distributor.reloader.reload()
        let publisher = RefusingPublisher(refused: Self.name("alpha"))
        let readiness = Readiness()
        readiness.setLoaded()
        let relay = OutboxRelay(store: f.store, publisher: publisher, signal: f.distributor.pipeline.signal, readiness: readiness,
                                options: .init(node: "n1"), logger: Logger(label: "relay"))
        let task = Task { try await relay.run() }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(10)
        // Published, then marked done in one statement at the end of the pass.
        while ContinuousClock.now < deadline {
            let marked = await f.store.publishedVersions().count
            if publisher.published.withLock({ $0.count }) >= 3, marked >= 3 { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(publisher.published.withLock { $0.sorted() } == ["beta:1", "delta:1", "gamma:1"])
        let published = await f.store.publishedVersions()
        #expect(published[Self.name("alpha")] == nil && published[Self.name("beta")] == 1, "only what the broker took is marked")
        #expect(try await f.store.outboxStatus().backlog == 1, "alpha stays queued for its retry")
    }

    /// The handoff of this node's commits is dropped when the relay takes the lease: another node
    /// may have committed (and published) a newer version meanwhile, and the outbox decides.
    @Test func aNewTenureNeverPublishesAStaleHandoff() async throws {
        let f = Fixture()
        f.tree.set("alpha", defaults: "pool: 5")
        _ = try await f.distributor.reloader.reload()   // version 1, handed to this node's relay
        let alpha = Self.name("alpha")
        // Another node commits version 2 (straight to the store, not through this node's pipeline).
        _ = try await f.store.commit(CommitRequest(services: [alpha], audit: AuditRecord(actor: "b", requestID: "r", action: "test",
                                                                                           outcome: "accepted", services: ["alpha"])) { _ in
            [PlannedChange(version: NewVersion(service: alpha, config: ["pool": 6], source: .override, author: "b", reason: nil,
                                               environment: "test"), overrideLayer: nil)]
        })
        let publisher = RefusingPublisher(refused: Self.name("nobody"))
        let readiness = Readiness()
        readiness.setLoaded()
        let relay = OutboxRelay(store: f.store, publisher: publisher, signal: f.distributor.pipeline.signal, readiness: readiness,
                                options: .init(node: "n1"), logger: Logger(label: "relay"), handoff: f.distributor.pipeline.handoff)
        let task = Task { try await relay.run() }
        defer { task.cancel() }
        let deadline = ContinuousClock.now + .seconds(10)
        while await f.store.publishedVersions()[alpha] != 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(publisher.published.withLock { $0 } == ["alpha:2"], "version 1 was never sent over version 2")
    }

    @Test func aRolloutHoldsItsCandidateBackDefersFileChangesAndReleasesOnAcks() async throws {
        let f = Fixture()
        let alpha = Self.name("alpha")
        f.tree.set("alpha", defaults: "pool: 5")
        _ = try await f.distributor.reloader.reload(reason: "start")
        for instance in ["a-1", "a-2"] {
            try await f.store.recordRegistration(alpha, instance: instance, version: 1, features: ["rollout"])
        }
        try await f.store.recordRegistration(alpha, instance: "old-1", version: 1, features: [])
        let rollouts = f.distributor.rollouts
        let policy = RolloutMachine.Policy(steps: [50, 100], bake: .zero, ackTimeout: .seconds(60), maxRejected: 0)
        let view = try await rollouts.start(alpha, RolloutRequest(change: .patch(["pool": 9]), reason: "bigger", policy: policy), by: Self.admin)
        #expect(view.record.machine.cohort.count == 1, "half of the two that take part")
        #expect(f.distributor.reads.latest(alpha)?.version == 1, "the candidate is not what everyone reads")
        #expect(rollouts.board.candidate(for: alpha, instance: view.record.machine.cohort[0])?.version == 2)
        #expect(rollouts.board.candidate(for: alpha, instance: "old-1") == nil)
        await #expect(throws: ConfbusError.self) {
            _ = try await f.distributor.overrides.edit(alpha, .patch(["pool": 3]), expectedVersion: nil, by: Self.admin)
        }
        // A file change waits for the rollout, without making the service invalid.
        f.tree.set("alpha", defaults: "pool: 6")
        let deferred = try await f.distributor.reloader.reload(reason: "edit")
        #expect(deferred.deferred == [alpha] && deferred.failed.isEmpty && deferred.committed.isEmpty)

        // The first member acks: step 2 takes both; both acked, it is released.
        try await f.store.recordAck(alpha, instance: view.record.machine.cohort[0], version: 2, status: "applied", detail: nil)
        let stepped = try await rollouts.advance(try #require(try await f.store.rollout(id: view.record.machine.id)))
        #expect(stepped.machine.step == 1 && stepped.machine.cohort.count == 2)
        for instance in stepped.machine.cohort { try await f.store.recordAck(alpha, instance: instance, version: 2, status: "applied", detail: nil) }
        let done = try await rollouts.advance(stepped)
        #expect(done.machine.phase.state == "completed")
        #expect(done.members?.map(\.answer) == [.applied, .applied])
        #expect(f.distributor.reads.latest(alpha)?.version == 2 && f.distributor.reads.latest(alpha)?.config["pool"] == .integer(9))
        #expect(rollouts.board.running(alpha) == nil)
        let actions = try await f.store.auditLog(service: alpha, limit: 10).map(\.action).filter { $0.hasPrefix("rollout.") }
        #expect(actions == ["rollout.complete", "rollout.step", "rollout.start"])
        // A move from the stale read changes nothing.
        await #expect(throws: RolloutMoved.self) { _ = try await rollouts.advance(stepped) }
    }
}
