import ConfbusCore
import ConfbusEngine
import Foundation
import Synchronization

/// What every `ConfbusStore` must do, as checks that any implementation runs: the in-memory one
/// in the Engine's component tests and PostgreSQL in the integration tests, so the fake the
/// component tests lean on cannot drift from the real thing. A check throws
/// `ConfbusStoreContract.Failure` naming what broke.
public enum ConfbusStoreContract {
    /// Gives `body` a new, empty store for its duration.
    public typealias Factory = @Sendable (_ body: @Sendable (any ConfbusStore) async throws -> Void) async throws -> Void

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public struct Check: Sendable, CustomStringConvertible {
        public let name: String
        let run: @Sendable (@escaping Factory) async throws -> Void
        public var description: String { name }
    }

    public static func run(_ check: Check, factory: @escaping Factory) async throws {
        try await check.run(factory)
    }

    public static let checks: [Check] = [
        Check(name: "versions are numbered 1, 2, 3 per service; history is newest first", run: numbering),
        Check(name: "a config equal to the latest makes no version but stores its layer", run: unchanged),
        Check(name: "a version keeps the provenance of its values", run: provenance),
        Check(name: "the plan sees what the store holds, in the order asked", run: bases),
        Check(name: "a plan that throws stores nothing and its error arrives as itself", run: throwingPlan),
        Check(name: "a plan may leave services out; changes are matched by service", run: partialPlan),
        Check(name: "concurrent commits never lose each other's edits", run: concurrentEdits),
        Check(name: "an idempotency key answers the first request's answer", run: idempotency),
        Check(name: "every version is queued; the outbox gives each service's newest", run: outbox),
        Check(name: "one lease holder; a stale lease marks nothing", run: lease),
        Check(name: "a lapsed lease is taken over with a higher epoch", run: leaseExpiry),
        Check(name: "requeue queues the latest version, never the one given", run: requeue),
        Check(name: "instances: registrations, acks, health, counts, expiry", run: instances),
        Check(name: "the audit log: commits, refusals, newest first, by service", run: audit),
        Check(name: "export and import keep numbers, times and checksums", run: archive),
        Check(name: "rollouts: stored whole, one running per service, advanced, listed", run: rollouts),
        Check(name: "a rollout's candidate is held back; other writes are refused; release and rollback end it", run: rolloutCommits),
    ]

    // MARK: Helpers

    static func expect(_ condition: Bool, _ message: @autoclosure () -> String, line: Int = #line) throws {
        if !condition { throw Failure(description: "line \(line): \(message())") }
    }

    static func name(_ raw: String) -> ServiceName { try! ServiceName(validating: raw) }

    static func audit(_ action: String = "test", services: [ServiceName]) -> AuditRecord {
        AuditRecord(actor: "contract", requestID: UUID().uuidString, action: action, outcome: "accepted", services: services.map(\.rawValue))
    }

    static func new(_ service: ServiceName, _ config: JSONValue, source: VersionSource = .override) -> NewVersion {
        NewVersion(service: service, config: config, source: source, author: "contract", reason: "contract", environment: "test")
    }

    /// Commits `config` (and `layer`, when given) to one service.
    @discardableResult
    static func put(_ store: any ConfbusStore, _ service: ServiceName, _ config: JSONValue, layer: JSONValue? = nil,
                    action: String = "test") async throws -> CommitOutcome {
        try await store.commit(CommitRequest(services: [service], audit: audit(action, services: [service])) { _ in
            [PlannedChange(version: new(service, config), overrideLayer: layer)]
        })[0]
    }

    // MARK: Checks

    static func numbering(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b) = (name("alpha"), name("beta"))
            for n in 1...3 {
                let outcome = try await put(store, a, ["n": .integer(n)])
                try expect(outcome.isCommitted && outcome.version.version == n, "commit \(n) made version \(outcome.version.version)")
                try expect(outcome.version.checksum == JSONValue.object(["n": .integer(n)]).checksum, "the checksum is the config's")
            }
            try await put(store, b, ["x": true])
            try expect(try await store.latest(a)?.version == 3, "latest of alpha is 3")
            try expect(try await store.latest(b)?.version == 1, "beta numbers on its own")
            try expect(try await store.latestVersions().map(\.service) == [a, b], "latestVersions is every service by name")
            try expect(try await store.version(a, 2)?.config == ["n": 2], "version 2 holds its config")
            try expect(try await store.version(a, 4) == nil, "no version 4")
            try expect(try await store.history(a, limit: 10, before: nil).map(\.version) == [3, 2, 1], "history newest first")
            try expect(try await store.history(a, limit: 1, before: 3).map(\.version) == [2], "history before and limit")
            try expect(try await store.latest(name("gamma")) == nil, "an unknown service has no version")
        }
    }

    static func unchanged(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let a = name("alpha")
            try await put(store, a, ["n": 1])
            let again = try await put(store, a, ["n": 1], layer: ["n": 1])
            try expect(!again.isCommitted && again.version.version == 1, "an equal config makes no version")
            try expect(try await store.overrideLayers()[a] == ["n": 1], "but its layer is stored")
            try await put(store, a, ["n": 2])
            try expect(try await store.overrideLayer(of: a, version: 2) == ["n": 1], "the next version records the layer in force")
            try expect(try await store.overrideLayer(of: a, version: 1) == nil, "version 1 had none")
            try await put(store, a, ["n": 3], layer: .object([:]))
            try expect(try await store.overrideLayers()[a] == nil, "an empty layer clears it")
        }
    }

    static func provenance(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let a = name("alpha")
            let layers: JSONValue = ["/n": ["layer": "defaults", "source": "alpha/defaults.yaml", "line": 1, "column": 4],
                                     "/m": ["layer": "override", "source": "ops override"]]
            let version = NewVersion(service: a, config: ["n": 1, "m": 2], source: .override, author: "contract", reason: nil, environment: "test",
                                     layers: layers)
            try await store.commit(CommitRequest(services: [a], audit: audit(services: [a])) { _ in [PlannedChange(version: version, overrideLayer: ["m": 2])] })
            try await put(store, a, ["n": 2])
            try expect(try await store.layers(of: a, version: 1) == layers, "version 1 keeps its layers")
            let second = try await store.layers(of: a, version: 2)
            try expect(second == nil, "a version committed without them has none, not \(String(describing: second))")
            try expect(try await store.layers(of: a, version: 3) == nil, "no version 3")
        }
    }

    static func bases(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b) = (name("alpha"), name("beta"))
            try await put(store, a, ["n": 1], layer: ["k": "v"])
            let seen = Box<[CommitBase]>([])
            _ = try await store.commit(CommitRequest(services: [b, a], audit: audit(services: [b, a])) { bases in
                seen.set(bases)
                return bases.map { PlannedChange(version: new($0.service, ["n": 2]), overrideLayer: nil) }
            })
            let bases = seen.get()
            try expect(bases.map(\.service) == [b, a], "bases come in the order asked, not name order")
            try expect(bases[0].latestVersion == 0 && bases[0].latestChecksum == nil && bases[0].overrideLayer == nil, "a new service's base is empty")
            try expect(bases[1].latestVersion == 1 && bases[1].latestChecksum == JSONValue.object(["n": 1]).checksum,
                       "an existing service's base is its latest")
            try expect(bases[1].overrideLayer == ["k": "v"], "the base carries the stored layer")
            let (latestA, latestB) = (try await store.latest(a), try await store.latest(b))
            try expect(latestA?.version == 2 && latestB?.version == 1, "both committed in one request")
        }
    }

    static func throwingPlan(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b) = (name("alpha"), name("beta"))
            try await put(store, a, ["n": 1])
            let backlog = try await store.outboxStatus().backlog
            let auditRows = try await store.auditLog(service: nil, limit: 100).count
            do {
                _ = try await store.commit(CommitRequest(services: [a, b], audit: audit(services: [a, b])) { _ in
                    throw ConfbusError(code: .schemaViolation, service: "alpha", message: "refused by the plan")
                })
                try expect(false, "the commit should have thrown")
            } catch let error as ConfbusError {
                try expect(error.code == .schemaViolation && error.message == "refused by the plan", "the plan's own error arrives")
            }
            let (latestA, latestB) = (try await store.latest(a), try await store.latest(b))
            try expect(latestA?.version == 1 && latestB == nil, "nothing was committed")
            try expect(try await store.outboxStatus().backlog == backlog, "nothing was queued")
            try expect(try await store.auditLog(service: nil, limit: 100).count == auditRows, "nothing was audited")
        }
    }

    static func partialPlan(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b, c) = (name("alpha"), name("beta"), name("gamma"))
            let outcomes = try await store.commit(CommitRequest(services: [a, b, c], audit: audit("files", services: [a, b, c])) { _ in
                // Out of order, and without beta.
                [PlannedChange(version: new(c, ["n": 3]), overrideLayer: nil), PlannedChange(version: new(a, ["n": 1]), overrideLayer: nil)]
            })
            try expect(outcomes.map(\.version.service) == [c, a], "one outcome per change, in the plan's order")
            let (latestA, latestB, latestC) = (try await store.latest(a), try await store.latest(b), try await store.latest(c))
            try expect(latestA?.config == ["n": 1] && latestB == nil && latestC?.config == ["n": 3], "each change went to its own service")
            let row = try await store.auditLog(service: nil, limit: 1).first
            try expect(row?.services.sorted() == ["alpha", "gamma"], "the audit row names the services changed: \(row?.services ?? [])")
        }
    }

    static func concurrentEdits(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let a = name("alpha")
            let writers = 16
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<writers {
                    group.addTask {
                        _ = try await store.commit(CommitRequest(services: [a], audit: audit(services: [a])) { bases in
                            // Each writer adds one to what the store holds under its lock.
                            guard case .integer(let n)? = bases[0].overrideLayer?["count"] ?? .integer(0) else { return [] }
                            let layer: JSONValue = ["count": .integer(n + 1)]
                            return [PlannedChange(version: new(a, layer), overrideLayer: layer)]
                        })
                    }
                }
                try await group.waitForAll()
            }
            try expect(try await store.overrideLayers()[a] == ["count": .integer(writers)], "every writer's edit survived")
            try expect(try await store.latest(a)?.version == writers, "one version per writer, no gaps")
        }
    }

    static func idempotency(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let a = name("alpha")
            func request(_ n: Int) -> CommitRequest {
                CommitRequest(services: [a], audit: audit(services: [a]),
                              idempotency: IdempotencyRecord(key: "key-1", requestHash: "hash-1") { outcomes in
                                  "answer \(outcomes.map(\.version.version))"
                              }) { _ in [PlannedChange(version: new(a, ["n": .integer(n)]), overrideLayer: nil)] }
            }
            _ = try await store.commit(request(1))
            do {
                _ = try await store.commit(request(2))
                try expect(false, "a second commit with the key should replay")
            } catch let replay as IdempotentReplay {
                try expect(replay.requestHash == "hash-1" && replay.answer == "answer [1]", "the replay carries the first answer")
            }
            try expect(try await store.latest(a)?.version == 1, "the replay committed nothing")
            let stored = try await store.idempotentAnswer("key-1")
            try expect(stored?.requestHash == "hash-1" && stored?.answer == "answer [1]", "the answer is stored with the key")
            try expect(try await store.idempotentAnswer("other") == nil, "an unused key has no answer")
        }
    }

    static func outbox(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b, c) = (name("alpha"), name("beta"), name("gamma"))
            try expect(try await store.outboxStatus() == OutboxStatus(backlog: 0, oldestAge: nil), "an empty outbox")
            try await put(store, a, ["n": 1])
            try await put(store, b, ["n": 1])
            try await put(store, a, ["n": 2])
            try await put(store, c, ["n": 1])
            let status = try await store.outboxStatus()
            try expect(status.backlog == 4 && (status.oldestAge ?? -1) >= 0, "every committed version is queued (\(status))")
            let pending = try await store.pendingOutbox(limit: 10, excluding: [])
            try expect(pending.map { "\($0.service):\($0.version)" } == ["alpha:2", "beta:1", "gamma:1"],
                       "the newest per service, longest waiting first: \(pending.map { "\($0.service):\($0.version)" })")
            try expect(try await store.pendingOutbox(limit: 1, excluding: [a]).map(\.service) == [b], "excluding and limit")
            guard let lease = try await store.acquireLease(holder: "node-a", ttl: .seconds(30)) else { throw Failure(description: "no lease") }
            try expect(try await store.markPublished(a, through: 2, lease: lease), "a current lease marks")
            try expect(try await store.pendingOutbox(limit: 10, excluding: []).map(\.service) == [b, c], "alpha is done")
            try expect(try await store.outboxStatus().backlog == 2, "both of alpha's entries are gone")
            try await put(store, b, ["n": 2])
            _ = try await store.markPublished(b, through: 1, lease: lease)
            try expect(try await store.pendingOutbox(limit: 10, excluding: []).map { "\($0.service):\($0.version)" } == ["gamma:1", "beta:2"],
                       "a mark through 1 leaves beta's version 2 queued")
        }
    }

    static func lease(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let a = name("alpha")
            try await put(store, a, ["n": 1])
            guard let first = try await store.acquireLease(holder: "node-a", ttl: .seconds(30)) else { throw Failure(description: "no lease") }
            try expect(try await store.acquireLease(holder: "node-b", ttl: .seconds(30)) == nil, "another node cannot take a current lease")
            try expect(try await store.acquireLease(holder: "node-a", ttl: .seconds(30)) == first, "renewing keeps the epoch")
            try await store.releaseLease(first)
            guard let second = try await store.acquireLease(holder: "node-b", ttl: .seconds(30)) else {
                throw Failure(description: "a released lease is free")
            }
            try expect(second.epoch > first.epoch, "a takeover raises the epoch")
            try expect(!(try await store.markPublished(a, through: 1, lease: first)), "the old holder's mark is refused")
            try expect(try await store.outboxStatus().backlog == 1, "and changes nothing")
            try expect(try await store.acquireLease(holder: "node-a", ttl: .seconds(30)) == nil, "the old holder cannot take it back")
        }
    }

    static func leaseExpiry(_ factory: @escaping Factory) async throws {
        try await factory { store in
            guard let first = try await store.acquireLease(holder: "node-a", ttl: .milliseconds(300)) else { throw Failure(description: "no lease") }
            try await Task.sleep(for: .milliseconds(500))
            guard let taken = try await store.acquireLease(holder: "node-b", ttl: .seconds(30)) else {
                throw Failure(description: "a lapsed lease can be taken")
            }
            try expect(taken.epoch == first.epoch + 1, "the epoch grows by one on a takeover")
            try expect(try await store.acquireLease(holder: "node-a", ttl: .seconds(30)) == nil, "the lapsed holder is out")
        }
    }

    static func requeue(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let a = name("alpha")
            let v1 = try await put(store, a, ["n": 1]).version
            try await put(store, a, ["n": 2])
            guard let lease = try await store.acquireLease(holder: "node-a", ttl: .seconds(30)) else { throw Failure(description: "no lease") }
            _ = try await store.markPublished(a, through: 2, lease: lease)
            try await store.requeue([v1])
            let pending = try await store.pendingOutbox(limit: 10, excluding: [])
            try expect(pending.map(\.version) == [2], "requeue queued the latest, not version 1: \(pending.map(\.version))")
            try await store.requeue([v1, v1])
            try expect(try await store.outboxStatus().backlog == 1, "requeue twice queues it once")
            try await store.requeue([])
        }
    }

    static func instances(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let a = name("alpha")
            try await put(store, a, ["n": 1])
            try await put(store, a, ["n": 2])
            try await store.recordRegistration(a, instance: "i-1", version: nil, features: ["rollout"])
            try await store.recordRegistration(a, instance: "i-2", version: nil, features: [])
            try await store.recordAck(a, instance: "i-1", version: 2, status: "applied", detail: nil)
            try await store.recordAck(a, instance: "i-2", version: 1, status: "applied", detail: nil)
            try await store.recordAck(a, instance: "i-2", version: 2, status: "rejected", detail: "no")
            try await store.recordHealth(a, instance: "i-1", status: "healthy", version: nil)
            let records = try await store.instances(a)
            try expect(records.map(\.instance) == ["i-1", "i-2"], "instances by id")
            try expect(records[0].appliedVersion == 2 && records[0].health == "healthy" && records[0].healthAt != nil, "ack and health recorded")
            try expect(records[1].appliedVersion == 1 && records[1].ackStatus == "rejected" && records[1].detail == "no",
                       "a rejection keeps the applied version")
            try expect(records[0].features == ["rollout"] && records[1].features == [], "features as registered")
            let version2 = try await store.version(a, 2)
            try expect(records[0].laggingSince == nil, "i-1 runs the latest")
            try expect(records[1].laggingSince == version2.map { max($0.createdAt, records[1].firstSeen) },
                       "i-2 lags since version 2 was made (or it was first seen)")
            let counts = try await store.instanceCounts()[a]
            try expect(counts?.total == 2 && counts?.lagging == 1, "one of two lags")
            // Health that says which version runs raises the applied version, never lowers it.
            try await store.recordHealth(a, instance: "i-2", status: "online", version: 2)
            try await store.recordHealth(a, instance: "i-1", status: "online", version: 1)
            let raised = try await store.instances(a)
            try expect(raised[1].appliedVersion == 2 && raised[1].ackStatus == "rejected", "health raised i-2 to version 2, its last ack kept")
            try expect(raised[0].appliedVersion == 2, "an older version in health does not lower i-1")
            // A registration that says which version runs raises it too, and replaces the features.
            try await store.recordRegistration(a, instance: "i-2", version: 1, features: ["rollout"])
            let registered = try await store.instances(a)
            try expect(registered[1].appliedVersion == 2 && registered[1].features == ["rollout"], "registration: version kept at 2, features replaced")
            try expect(registered[1].laggingSince == nil, "i-2 runs the latest now")
            try await store.recordHealth(a, instance: "i-1", status: "healthy", version: nil)
            try expect(try await store.expireInstances(olderThan: .seconds(3600)) == 0, "nobody is an hour silent")
            // Margins wide enough for a loaded machine: i-2 is 1.2 s silent, i-1 was heard just now.
            try await Task.sleep(for: .milliseconds(1200))
            try await store.recordHealth(a, instance: "i-1", status: "healthy", version: nil)
            try expect(try await store.expireInstances(olderThan: .milliseconds(600)) == 1, "the silent one is forgotten")
            try expect(try await store.instances(a).map(\.instance) == ["i-1"], "only the one heard from is left")
        }
    }

    static func rollouts(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b) = (name("alpha"), name("beta"))
            try await put(store, a, ["n": 1])
            try await put(store, a, ["n": 2])
            try await put(store, b, ["n": 1])
            // Whole milliseconds: what every store keeps of a time.
            let t0 = Date(timeIntervalSince1970: 1_800_000_000.25)
            let instances = ["i-1", "i-2", "i-3"].map { RolloutMachine.Instance(id: $0, takesPart: true, health: "online") }
            let policy = RolloutMachine.Policy(steps: [34, 100], bake: .milliseconds(1500), ackTimeout: .seconds(60), maxRejected: 1)
            var (machine, _) = RolloutMachine.start(id: "r-a1", service: a, stableVersion: 1, candidateVersion: 2, policy: policy,
                                                    instances: instances, now: t0)
            let record = RolloutRecord(machine: machine, actor: "ops", reason: "pool", startedAt: t0, updatedAt: t0)
            try await store.createRollout(record)
            try expect(try await store.rollout(id: "r-a1") == record, "a rollout reads back as stored")
            do {
                let (second, _) = RolloutMachine.start(id: "r-a2", service: a, stableVersion: 2, candidateVersion: 3, policy: policy,
                                                       instances: instances, now: t0)
                try await store.createRollout(RolloutRecord(machine: second, actor: "ops", reason: nil, startedAt: t0, updatedAt: t0))
                try expect(false, "a second running rollout of alpha must be refused")
            } catch let error as ConfbusError {
                try expect(error.code == .rolloutInProgress, "refused as rollout_in_progress, not \(error.code)")
            }
            let (other, _) = RolloutMachine.start(id: "r-b1", service: b, stableVersion: 1, candidateVersion: 2, policy: policy,
                                                  instances: instances, now: t0)
            try await store.createRollout(RolloutRecord(machine: other, actor: "ops", reason: nil, startedAt: t0.addingTimeInterval(1),
                                                        updatedAt: t0.addingTimeInterval(1)))
            try expect(try await store.runningRollouts().map(\.machine.id) == ["r-a1", "r-b1"], "both run, by service")

            // Advanced and rolled back: stored as it is now, and alpha may start another.
            let t1 = t0.addingTimeInterval(2)
            _ = machine.abort(now: t1, reason: "aborted by ops")
            var changed = record
            changed.machine = machine
            try await store.saveRollout(changed, now: t1, audit: nil)
            let saved = try await store.rollout(id: "r-a1")
            try expect(saved?.machine == machine && saved?.updatedAt == t1 && saved?.startedAt == t0, "the saved state reads back")
            try expect(saved?.revision == record.revision + 1, "a save raises the revision")
            do {
                try await store.saveRollout(changed, now: t1, audit: nil)
                try expect(false, "a save from a stale read must be refused")
            } catch is RolloutMoved {}
            try expect(try await store.runningRollouts().map(\.machine.id) == ["r-b1"], "a finished rollout is not running")
            let (again, _) = RolloutMachine.start(id: "r-a3", service: a, stableVersion: 2, candidateVersion: 3, policy: policy,
                                                  instances: instances, now: t1)
            try await store.createRollout(RolloutRecord(machine: again, actor: "ops", reason: nil, startedAt: t1, updatedAt: t1))
            try expect(try await store.rollouts(of: a, limit: 10).map(\.machine.id) == ["r-a3", "r-a1"], "alpha's rollouts, newest first")
            try expect(try await store.rollouts(of: a, limit: 1).map(\.machine.id) == ["r-a3"], "and the limit")
            try expect(try await store.rollout(id: "nope") == nil, "an unknown id is nil")
        }
    }

    static func rolloutCommits(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b) = (name("alpha"), name("beta"))
            try await put(store, a, ["n": 1], layer: ["n": 1])
            try await put(store, b, ["n": 1])
            let t0 = Date(timeIntervalSince1970: 1_800_000_000)
            func start(_ id: String, _ config: JSONValue) async throws -> CommitOutcome {
                let begin = RolloutCommit.start { candidate in
                    RolloutRecord(machine: RolloutMachine(id: id, service: a, stableVersion: candidate.version - 1, candidateVersion: candidate.version,
                                                          policy: .standard, step: 0, cohort: ["i-1"], phase: .awaitingAcks(since: t0)),
                                  actor: "ops", reason: nil, startedAt: t0, updatedAt: t0)
                }
                return try await store.commit(CommitRequest(services: [a], audit: audit("rollout.start", services: [a]), rollout: begin) { _ in
                    [PlannedChange(version: new(a, config, source: .rollout), overrideLayer: config)]
                })[0]
            }
            let candidate = try await start("r-1", ["n": 2])
            try expect(candidate.isCommitted && candidate.version.version == 2, "the candidate is committed as version 2")
            try expect(try await store.latest(a)?.version == 1, "the released version stays 1 while the rollout runs")
            try expect(try await store.latestVersions().first { $0.service == a }?.version == 1, "and so for every service's latest")
            try expect(try await store.version(a, 2)?.source == .rollout, "the candidate reads back with source rollout")
            try expect(try await store.rollout(id: "r-1")?.machine.candidateVersion == 2, "the rollout is stored with its candidate")
            let pending = try await store.pendingOutbox(limit: 10, excluding: []).first { $0.service == a }
            try expect(pending == nil || pending?.version == 1, "nothing of the candidate is queued for config/update")

            for attempt in ["an edit", "a batch"] {
                do {
                    let services = attempt == "an edit" ? [a] : [a, b]
                    _ = try await store.commit(CommitRequest(services: services, audit: audit(services: services)) { bases in
                        bases.map { PlannedChange(version: new($0.service, ["n": 9]), overrideLayer: nil) }
                    })
                    try expect(false, "\(attempt) of alpha during its rollout must be refused")
                } catch let error as ConfbusError {
                    try expect(error.code == .rolloutInProgress, "\(attempt) refused as rollout_in_progress, not \(error.code)")
                }
            }
            try expect(try await store.latest(b)?.version == 1, "the refused batch stored nothing for beta")
            let seen = Mutex<CommitBase?>(nil)
            _ = try await store.commit(CommitRequest(services: [a, b], audit: audit(services: [a, b])) { bases in
                seen.withLock { $0 = bases[0] }
                return [PlannedChange(version: new(b, ["n": 2]), overrideLayer: nil)]
            })
            let base = seen.withLock { $0 }
            try expect(base?.inRollout == true && base?.releasedVersion == 1 && base?.latestVersion == 2,
                       "the plan sees alpha in its rollout: released 1, latest 2 (\(String(describing: base)))")
            try expect(try await store.latest(b)?.version == 2, "a plan that leaves the rolling service out commits the others")

            // Promoted: the candidate is released and queued; alpha takes writes again.
            var record = try await store.rollout(id: "r-1")!
            var machine = record.machine
            _ = machine.promote(now: t0.addingTimeInterval(1))
            record.machine = machine
            try await store.releaseRollout(record, now: t0.addingTimeInterval(1), audit: audit("rollout.promote", services: [a]))
            try expect(try await store.latest(a)?.version == 2, "the released version is the candidate")
            try expect(try await store.pendingOutbox(limit: 10, excluding: []).first { $0.service == a }?.version == 2, "and it is queued")
            try expect(try await store.rollout(id: "r-1")?.machine.phase.state == "completed", "the rollout completed")
            try expect(try await put(store, a, ["n": 4]).version.version == 3, "writes to alpha go on after the rollout")

            // Rolled back: the stable config as a new version, in the same transaction as the rollout's end.
            _ = try await start("r-2", ["n": 5])
            var second = try await store.rollout(id: "r-2")!
            var aborted = second.machine
            _ = aborted.abort(now: t0.addingTimeInterval(2), reason: "aborted by ops")
            second.machine = aborted
            let end = CommitRequest(services: [a], audit: audit("rollout.rollback", services: [a]), rollout: .end(second, audit: nil)) { _ in
                [PlannedChange(version: new(a, ["n": 4], source: .rollback), overrideLayer: ["n": 4])]
            }
            try expect(try await store.commit(end)[0].version.version == 5, "the rollback is version 5")
            try expect(try await store.latest(a)?.version == 5, "and it is released")
            try expect(try await store.rollout(id: "r-2")?.machine.phase.state == "rolled_back", "the rollout rolled back with it")
            do {
                _ = try await store.commit(end)
                try expect(false, "a second end of the same rollout (a stale revision) must be refused")
            } catch is RolloutMoved {}
            try expect(try await store.latest(a)?.version == 5, "and it stored nothing")
        }
    }

    static func audit(_ factory: @escaping Factory) async throws {
        try await factory { store in
            let (a, b) = (name("alpha"), name("beta"))
            try await put(store, a, ["n": 1], action: "override.put")
            try await put(store, a, ["n": 1], action: "files")
            try await put(store, b, ["n": 1], action: "files")
            try await store.recordRefusal(AuditRecord(actor: "op", requestID: "r", action: "override.patch", outcome: "refused",
                                                      services: ["alpha"], detail: "/n: must be a string"))
            let all = try await store.auditLog(service: nil, limit: 10)
            try expect(all.map(\.action) == ["override.patch", "files", "override.put"],
                       "newest first; files that change nothing are not audited: \(all.map(\.action))")
            try expect(all[0].outcome == "refused" && all[0].detail == "/n: must be a string" && all[0].at != nil, "the refusal as recorded")
            try expect(all[2].changes == [["service": "alpha", "old_version": 0, "new_version": 1,
                                           "checksum": .string(JSONValue.object(["n": 1]).checksum)]],
                       "the commit's changes: \(all[2].changes)")
            try expect(try await store.auditLog(service: a, limit: 10).map(\.action) == ["override.patch", "override.put"], "by service")
            try expect(try await store.auditLog(service: nil, limit: 1).count == 1, "limit")
        }
    }

    static func archive(_ factory: @escaping Factory) async throws {
        try await factory { source in
            let (a, b) = (name("alpha"), name("beta"))
            try await put(source, a, ["n": 1])
            try await put(source, a, ["n": 2], layer: ["n": 2])
            try await put(source, b, ["s": "x"])
            let full = try await source.exportAll(history: true)
            try expect(full.map(\.service) == [a, b] && full[0].versions.map(\.stored.version) == [1, 2], "export with history")
            try expect(full[0].overrideLayer == ["n": 2] && full[0].versions[1].overrideLayer == ["n": 2], "layers exported")
            try expect(try await source.exportAll(history: false)[0].versions.map(\.stored.version) == [2], "without history, the latest only")
            do {
                try await source.importAll(full, audit: audit("import", services: [a, b]))
                try expect(false, "importing over existing services is refused")
            } catch let error as ConfbusError {
                try expect(error.code == .alreadyExists, "refused as already_exists, not \(error.code)")
            }
            try expect(try await source.latest(a)?.version == 2, "the refused import changed nothing")
            try await factory { target in
                try await target.importAll(full, audit: audit("import", services: [a, b]))
                let again = try await target.exportAll(history: true)
                try expect(again == full, "an imported export exports the same")
                let queued = try await target.pendingOutbox(limit: 10, excluding: []).map { "\($0.service):\($0.version)" }
                try expect(queued.sorted() == ["alpha:2", "beta:1"], "each service's latest is queued: \(queued)")
                try await put(target, a, ["n": 3])
                try expect(try await target.latest(a)?.version == 3, "numbering goes on after an import")
                try expect(try await target.auditLog(service: nil, limit: 10).contains { $0.action == "import" }, "the import is audited")
            }
        }
    }
}

/// A value a `@Sendable` closure sets and the check reads afterwards.
final class Box<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func set(_ new: T) { lock.withLock { value = new } }
    func get() -> T { lock.withLock { value } }
}
