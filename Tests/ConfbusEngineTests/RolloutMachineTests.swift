import ConfbusCore
@testable import ConfbusEngine
import Foundation
import Testing

/// The rollout state machine of CONTRACT.md §8 on a fake clock: no I/O, every path.
struct RolloutMachineTests {
    typealias Machine = RolloutMachine
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let service = try! ServiceName(validating: "billing-api")
    let policy = Machine.Policy(steps: [10, 50, 100], bake: .seconds(30), ackTimeout: .seconds(60), maxRejected: 0)

    func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    /// Ten instances taking part, online, running the stable version 4.
    var fleet: [Machine.Instance] {
        (1...10).map { Machine.Instance(id: "web-\($0)", takesPart: true, health: "online", appliedVersion: 4, ack: .init(version: 4, status: "applied")) }
    }

    func start(_ instances: [Machine.Instance], policy: Machine.Policy? = nil) -> (Machine, [Machine.Action]) {
        Machine.start(id: "r-1", service: service, stableVersion: 4, candidateVersion: 5, policy: policy ?? self.policy,
                      instances: instances, now: t0)
    }

    /// `instances` with every cohort member having acked version 5 `applied`.
    func acked(_ instances: [Machine.Instance], _ machine: Machine, status: String = "applied",
               only: Set<String>? = nil, detail: String? = nil) -> [Machine.Instance] {
        instances.map { instance in
            guard machine.cohort.contains(instance.id), only?.contains(instance.id) ?? true else { return instance }
            var next = instance
            next.ack = .init(version: 5, status: status, detail: detail)
            if status == "applied" { next.appliedVersion = 5 }
            return next
        }
    }

    @Test func aPolicyIsCheckedFieldByField() {
        #expect(Machine.Policy.standard.problems.isEmpty)
        #expect(Machine.Policy(steps: [], bake: .zero, ackTimeout: .seconds(1), maxRejected: 0).problems == ["steps must list at least one percentage"])
        #expect(Machine.Policy(steps: [50, 10, 100], bake: .zero, ackTimeout: .seconds(1), maxRejected: 0).problems == ["steps must rise"])
        #expect(Machine.Policy(steps: [10, 50], bake: .zero, ackTimeout: .seconds(1), maxRejected: 0).problems == ["the last step must be 100"])
        #expect(Machine.Policy(steps: [0, 100], bake: .seconds(-1), ackTimeout: .zero, maxRejected: -1).problems == [
            "steps must be percentages from 1 to 100", "bake must not be negative", "ack_timeout must be positive", "max_rejected must not be negative",
        ])
    }

    @Test func theOrderIsFixedPerRolloutAndEachStepContainsThePrevious() {
        let ids = fleet.map(\.id)
        #expect(Machine.order(ids, rollout: "r-1") == Machine.order(ids.reversed(), rollout: "r-1"))
        #expect(Machine.order(ids, rollout: "r-1") != Machine.order(ids, rollout: "r-2"))
        // Pinned: sha256("r-1.web-N") in byte order.
        let expected = ids.map { ($0, SHA256.hexDigest(Array("r-1.\($0)".utf8))) }.sorted { $0.1 < $1.1 }.map(\.0)
        #expect(Machine.order(ids, rollout: "r-1") == expected)

        var (machine, actions) = start(fleet)
        #expect(actions == [.publishCohort([expected[0]])], "10 % of 10 is one instance, the first in the order")
        var instances = acked(fleet, machine)
        #expect(machine.advance(now: at(1), instances: instances) == [])
        #expect(machine.phase == .baking(since: at(1)))
        let first = machine.cohort
        #expect(machine.advance(now: at(31), instances: instances) == [.publishCohort(Array(expected.prefix(5)))])
        #expect(machine.cohort.starts(with: first) && machine.cohort.count == 5)
        instances = acked(instances, machine)
        _ = machine.advance(now: at(32), instances: instances)
        #expect(machine.advance(now: at(62), instances: instances) == [.publishCohort(expected)])
        #expect(machine.step == 2 && machine.cohort.count == 10)
    }

    @Test func everyStepPassedReleasesTheCandidate() {
        var (machine, _) = start(fleet)
        var instances = fleet
        var actions: [Machine.Action] = []
        var now = 0.0
        while !machine.phase.isFinished && now < 1000 {
            now += 5
            instances = acked(instances, machine)
            actions += machine.advance(now: at(now), instances: instances)
        }
        #expect(actions.filter { if case .publishCohort = $0 { true } else { false } }.count == 2)
        #expect(actions.last == .release)
        #expect(machine.phase.state == "completed")
        #expect(machine.advance(now: at(now + 100), instances: instances) == [], "a finished rollout does nothing more")
    }

    @Test func aRejectedAckRollsBackWithItsReason() {
        var (machine, _) = start(fleet)
        let instances = acked(fleet, machine, status: "rejected", detail: "pool too large")
        let actions = machine.advance(now: at(2), instances: instances)
        guard case .rollBack(let reason)? = actions.first else { Issue.record("expected a roll back, got \(actions)"); return }
        #expect(reason.contains("1 of 1 rejected") && reason.contains(machine.cohort[0]) && reason.contains("pool too large"), "\(reason)")
        #expect(machine.phase.state == "rolled_back")
    }

    @Test func upToMaxRejectedMayRejectAndTheStepStillPasses() {
        var tolerant = policy
        tolerant.steps = [50, 100]
        tolerant.maxRejected = 1
        var (machine, _) = start(fleet, policy: tolerant)
        let one = Set([machine.cohort[0]])
        var instances = acked(fleet, machine, status: "rejected", only: one)
        instances = acked(instances, machine, only: Set(machine.cohort).subtracting(one))
        #expect(machine.advance(now: at(3), instances: instances) == [])
        #expect(machine.phase == .baking(since: at(3)))
        instances = acked(instances, machine, status: "rejected", only: [machine.cohort[1]])
        guard case .rollBack? = machine.advance(now: at(4), instances: instances).first else {
            Issue.record("a second rejection passes max_rejected"); return
        }
    }

    @Test func anAckTimeoutRollsBack() {
        var (machine, _) = start(fleet)
        #expect(machine.deadline == at(60))
        #expect(machine.advance(now: at(59.9), instances: fleet) == [])
        guard case .rollBack(let reason)? = machine.advance(now: at(60), instances: fleet).first else {
            Issue.record("the ack timeout rolls back"); return
        }
        #expect(reason == "1 of 1 did not ack within 60s in step 1")
    }

    @Test func aMemberGoingOfflineOrDegradedRollsBackOthersDoNot() {
        var (machine, _) = start(fleet)
        var instances = acked(fleet, machine)
        _ = machine.advance(now: at(1), instances: instances)
        // Someone outside the cohort going offline changes nothing.
        let outsider = fleet.map(\.id).first { !machine.cohort.contains($0) }!
        instances = instances.map { var i = $0; if i.id == outsider { i.health = "offline" }; return i }
        #expect(machine.advance(now: at(10), instances: instances) == [])
        #expect(machine.deadline == at(31))
        instances = instances.map { var i = $0; if i.id == machine.cohort[0] { i.health = "degraded" }; return i }
        #expect(machine.advance(now: at(11), instances: instances) == [.rollBack(reason: "\(machine.cohort[0]) went degraded during the bake of step 1")])
    }

    @Test func theCohortIsChosenAmongHealthyInstancesThatTakePart() {
        var instances = fleet
        instances[0].takesPart = false
        instances[1].health = "offline"
        let (machine, _) = start(instances, policy: Machine.Policy(steps: [100], bake: .zero, ackTimeout: .seconds(1), maxRejected: 0))
        #expect(machine.cohort.count == 8 && !machine.cohort.contains("web-1") && !machine.cohort.contains("web-2"))
    }

    @Test func withNoInstanceTakingPartEveryStepPassesAtOnce() {
        var (machine, actions) = start(fleet.map { var i = $0; i.takesPart = false; return i })
        #expect(actions == [.publishCohort([])])
        var now = 0.0
        while !machine.phase.isFinished && now < 200 { now += 10; actions += machine.advance(now: at(now), instances: []) }
        #expect(actions.last == .release && now == 90, "three bakes of 30 s")
    }

    @Test func promoteReleasesAndAbortRollsBackOnlyWhileRunning() {
        var (machine, _) = start(fleet)
        #expect(machine.promote(now: at(1)) == [.release])
        #expect(machine.abort(now: at(2), reason: "too late") == [])
        var (other, _) = start(fleet)
        #expect(other.abort(now: at(1), reason: "aborted by ops: wrong pool") == [.rollBack(reason: "aborted by ops: wrong pool")])
        #expect(other.promote(now: at(2)) == [])
        #expect(other.phase == .rolledBack(at: at(1), reason: "aborted by ops: wrong pool"))
    }

    @Test func anAppliedVersionFromHealthCountsAsAnAck() {
        var (machine, _) = start(fleet)
        let member = machine.cohort[0]
        let instances = fleet.map { var i = $0; if i.id == member { i.appliedVersion = 5 }; return i }
        #expect(machine.answers(instances)[member] == .applied)
        _ = machine.advance(now: at(1), instances: instances)
        #expect(machine.phase == .baking(since: at(1)))
    }
}
