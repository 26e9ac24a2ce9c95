import ConfbusCore
import Foundation

/// A progressive rollout (CONTRACT.md §8) as a pure state machine: it is given the time and what the
/// instances report, and answers with what confbus must do (publish a cohort, release, roll back).
/// It reads no clock and does no I/O, so every path is tested on a fake clock; the adapter persists
/// it after each step and replays nothing.
///
/// A step publishes its cohort, waits until every member has acked the candidate (at most
/// `maxRejected` rejected) within `ackTimeout`, then bakes: no member may be degraded or offline
/// for `bake`. The last step passed, the candidate is released; any failure rolls back.
public struct RolloutMachine: Sendable, Equatable {
    public struct Policy: Sendable, Equatable {
        /// Percentages of the eligible instances, rising, the last one 100.
        public var steps: [Int]
        public var bake: Duration
        public var ackTimeout: Duration
        public var maxRejected: Int

        public static let standard = Policy(steps: [10, 50, 100], bake: .seconds(30), ackTimeout: .seconds(60), maxRejected: 0)

        public init(steps: [Int], bake: Duration, ackTimeout: Duration, maxRejected: Int) {
            self.steps = steps
            self.bake = bake
            self.ackTimeout = ackTimeout
            self.maxRejected = maxRejected
        }

        /// The problems of a policy an operator asked for, each naming its field (empty: valid).
        public var problems: [String] {
            var out: [String] = []
            if steps.isEmpty { out.append("steps must list at least one percentage") }
            if steps.contains(where: { !(1...100).contains($0) }) { out.append("steps must be percentages from 1 to 100") }
            if zip(steps, steps.dropFirst()).contains(where: { $0 >= $1 }) { out.append("steps must rise") }
            if let last = steps.last, last != 100 { out.append("the last step must be 100") }
            if bake < .zero { out.append("bake must not be negative") }
            if ackTimeout <= .zero { out.append("ack_timeout must be positive") }
            if bake > .seconds(86_400) || ackTimeout > .seconds(86_400) { out.append("bake and ack_timeout are at most a day (86400s)") }
            if maxRejected < 0 { out.append("max_rejected must not be negative") }
            return out
        }
    }

    /// What the machine is doing.
    public enum Phase: Sendable, Equatable {
        /// The step's cohort was published at `since`; waiting for its acks.
        case awaitingAcks(since: Date)
        /// Every member acked at `since`; watching their health until the bake is over.
        case baking(since: Date)
        case completed(at: Date)
        case rolledBack(at: Date, reason: String)

        public var isFinished: Bool {
            switch self {
            case .completed, .rolledBack: true
            case .awaitingAcks, .baking: false
            }
        }

        /// `running`, `completed` or `rolled_back` (the API's `state`).
        public var state: String {
            switch self {
            case .awaitingAcks, .baking: "running"
            case .completed: "completed"
            case .rolledBack: "rolled_back"
            }
        }
    }

    /// One instance of the service as confbus knows it (registrations, acks, health).
    public struct Instance: Sendable, Equatable {
        public var id: String
        /// Registered with `"features": ["rollout"]` and seen within the instance TTL.
        public var takesPart: Bool
        /// `online`, `degraded`, `offline`, or nil when it never said.
        public var health: String?
        public var appliedVersion: Int?
        /// The last ack: its version and status (`applied` or `rejected`), and its detail.
        public var ack: Ack?

        public struct Ack: Sendable, Equatable {
            public var version: Int
            public var status: String
            public var detail: String?

            public init(version: Int, status: String, detail: String? = nil) {
                self.version = version
                self.status = status
                self.detail = detail
            }
        }

        public init(id: String, takesPart: Bool, health: String? = nil, appliedVersion: Int? = nil, ack: Ack? = nil) {
            self.id = id
            self.takesPart = takesPart
            self.health = health
            self.appliedVersion = appliedVersion
            self.ack = ack
        }

        var isUnwell: Bool { health == "degraded" || health == "offline" }
    }

    /// What confbus must do, in order.
    public enum Action: Sendable, Equatable {
        /// Publish the candidate retained on `config/rollout/<service>` for these instances.
        case publishCohort([String])
        /// Publish the candidate on `config/update/<service>` and clear the rollout topic.
        case release
        /// Commit the stable config (and override layer) as a new version, publish it, clear the rollout topic.
        case rollBack(reason: String)
    }

    /// A cohort member's answer to the candidate.
    public enum Answer: String, Sendable {
        case applied, rejected, pending
    }

    public let id: String
    public let service: ServiceName
    public let stableVersion: Int
    public let candidateVersion: Int
    public let policy: Policy
    /// The index into `policy.steps` of the step running (or last run).
    public private(set) var step: Int
    /// The instances the candidate is for, in the order they were chosen (each step's contains the previous one's).
    public private(set) var cohort: [String]
    public private(set) var phase: Phase

    /// A machine as stored (the adapter reads one back after a restart).
    public init(id: String, service: ServiceName, stableVersion: Int, candidateVersion: Int, policy: Policy,
                step: Int, cohort: [String], phase: Phase) {
        self.id = id
        self.service = service
        self.stableVersion = stableVersion
        self.candidateVersion = candidateVersion
        self.policy = policy
        self.step = step
        self.cohort = cohort
        self.phase = phase
    }

    /// A rollout of `candidateVersion` (just committed) over `stableVersion`: its first step's cohort, published now.
    public static func start(id: String, service: ServiceName, stableVersion: Int, candidateVersion: Int, policy: Policy,
                             instances: [Instance], now: Date) -> (RolloutMachine, [Action]) {
        var machine = begin(id: id, service: service, stableVersion: stableVersion, candidateVersion: candidateVersion,
                            policy: policy, instances: instances, now: now)
        // An empty cohort (or one that already runs the candidate) goes on to its bake at once.
        let next = machine.advance(now: now, instances: instances)
        return (machine, [.publishCohort(machine.cohort)] + next)
    }

    /// The first step's cohort, awaiting its acks from `now`, with no move made yet (what is stored
    /// when a rollout starts; the relaying node makes every move after).
    public static func begin(id: String, service: ServiceName, stableVersion: Int, candidateVersion: Int, policy: Policy,
                             instances: [Instance], now: Date) -> RolloutMachine {
        var machine = RolloutMachine(id: id, service: service, stableVersion: stableVersion, candidateVersion: candidateVersion,
                                     policy: policy, step: 0, cohort: [], phase: .awaitingAcks(since: now))
        machine.cohort = machine.cohort(for: 0, instances: instances)
        return machine
    }

    // MARK: Cohorts

    /// Instances in the rollout's own order: by SHA-256 of "<rollout id>.<instance>", so the order is
    /// fixed for a rollout, differs between rollouts, and needs nothing stored.
    public static func order(_ instances: [String], rollout id: String) -> [String] {
        instances.map { instance in (instance, SHA256.hash(Array("\(id).\(instance)".utf8))) }
            .sorted { a, b in a.1.lexicographicallyPrecedes(b.1) }
            .map(\.0)
    }

    /// Step `index`'s cohort: the previous one, then the first ceil(p·n/100) eligible instances (taking
    /// part, not degraded or offline) in the rollout's order, n being how many are eligible now.
    func cohort(for index: Int, instances: [Instance]) -> [String] {
        let eligible = instances.filter { $0.takesPart && !$0.isUnwell }.map(\.id)
        let share = (policy.steps[index] * eligible.count + 99) / 100
        var chosen = cohort
        for instance in Self.order(eligible, rollout: id).prefix(share) where !chosen.contains(instance) { chosen.append(instance) }
        return chosen
    }

    /// Each cohort member's answer to the candidate.
    public func answers(_ instances: [Instance]) -> [String: Answer] {
        let byID = Dictionary(instances.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        var out: [String: Answer] = [:]
        for member in cohort {
            guard let instance = byID[member] else { out[member] = .pending; continue }
            if let ack = instance.ack, ack.version == candidateVersion {
                out[member] = ack.status == "rejected" ? .rejected : .applied
            } else if (instance.appliedVersion ?? 0) >= candidateVersion {
                out[member] = .applied
            } else {
                out[member] = .pending
            }
        }
        return out
    }

    // MARK: Transitions

    /// What the time and the instances' reports change.
    public mutating func advance(now: Date, instances: [Instance]) -> [Action] {
        switch phase {
        case .completed, .rolledBack:
            return []
        case .awaitingAcks(let since):
            if let unwell = unwellMember(instances) { return rollBack(now, "\(unwell.id) went \(unwell.health ?? "offline") in step \(step + 1)") }
            let answers = answers(instances)
            if let refusal = tooManyRejected(answers, instances) { return rollBack(now, refusal) }
            let pending = cohort.filter { answers[$0] == .pending }
            if pending.isEmpty {
                phase = .baking(since: now)
                return advance(now: now, instances: instances)
            }
            if Self.elapsed(since, now) >= policy.ackTimeout {
                return rollBack(now, "\(pending.count) of \(cohort.count) did not ack within \(Self.text(policy.ackTimeout)) in step \(step + 1)")
            }
            return []
        case .baking(let since):
            if let unwell = unwellMember(instances) { return rollBack(now, "\(unwell.id) went \(unwell.health ?? "offline") during the bake of step \(step + 1)") }
            // A member that takes its word back (applied, then rejected) counts as rejecting.
            if let refusal = tooManyRejected(answers(instances), instances) { return rollBack(now, refusal) }
            guard Self.elapsed(since, now) >= policy.bake else { return [] }
            guard step + 1 < policy.steps.count else {
                phase = .completed(at: now)
                return [.release]
            }
            step += 1
            cohort = cohort(for: step, instances: instances)
            phase = .awaitingAcks(since: now)
            return [.publishCohort(cohort)] + advance(now: now, instances: instances)
        }
    }

    /// `POST /v1/rollouts/{id}/promote`: released at once.
    public mutating func promote(now: Date) -> [Action] {
        guard !phase.isFinished else { return [] }
        phase = .completed(at: now)
        return [.release]
    }

    /// `POST /v1/rollouts/{id}/abort`: rolled back at once.
    public mutating func abort(now: Date, reason: String) -> [Action] {
        guard !phase.isFinished else { return [] }
        return rollBack(now, reason)
    }

    /// When the machine next needs to be asked, with no report arriving before (nil when finished).
    public var deadline: Date? {
        switch phase {
        case .awaitingAcks(let since): since.addingTimeInterval(policy.ackTimeout.seconds)
        case .baking(let since): since.addingTimeInterval(policy.bake.seconds)
        case .completed, .rolledBack: nil
        }
    }

    private mutating func rollBack(_ now: Date, _ reason: String) -> [Action] {
        phase = .rolledBack(at: now, reason: reason)
        return [.rollBack(reason: reason)]
    }

    /// Why the step fails on rejections (nil while at most `maxRejected` rejected): the count and the
    /// first member that rejected, with its detail.
    private func tooManyRejected(_ answers: [String: Answer], _ instances: [Instance]) -> String? {
        let rejected = cohort.filter { answers[$0] == .rejected }
        guard rejected.count > policy.maxRejected else { return nil }
        let detail = instances.first { $0.id == rejected[0] }?.ack?.detail.map { ": \($0)" } ?? ""
        return "\(rejected.count) of \(cohort.count) rejected the candidate in step \(step + 1) (at most \(policy.maxRejected) may); \(rejected[0])\(detail)"
    }

    private func unwellMember(_ instances: [Instance]) -> Instance? {
        let members = Set(cohort)
        return instances.first { members.contains($0.id) && $0.isUnwell }
    }

    static func elapsed(_ since: Date, _ now: Date) -> Duration { .milliseconds(Int64((now.timeIntervalSince(since) * 1000).rounded())) }

    /// `60s`, `1.5s`.
    public static func text(_ duration: Duration) -> String {
        let value = duration.seconds
        return value == value.rounded() ? "\(Int(value))s" : "\(value)s"
    }
}
