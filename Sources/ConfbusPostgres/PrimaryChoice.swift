/// Which of the configured PostgreSQL servers confbus writes through, decided from what each one
/// last answered: the server that is not in recovery, on the newest timeline ever seen. A server
/// out of recovery on an older timeline than one already seen is a returning old primary (its
/// writes since the fork are on a branch the new primary does not have): it is never chosen
/// again, however it answers. A pure state machine; `DatabaseCluster` feeds it each probe round.
public struct PrimaryChoice: Sendable, Equatable {
    /// What one server answered to the probe, or that it did not.
    public enum Answer: Sendable, Equatable {
        case primary(timeline: Int)
        case standby(timeline: Int?)
        case unreachable
    }

    /// What a round changed, for the log and for those who follow the primary.
    public enum Change: Sendable, Equatable {
        case none
        case chose(member: Int, timeline: Int)
        case lost
    }

    /// The member written through, if any.
    public private(set) var primary: Int?
    /// The newest timeline any server has shown: a primary below it is refused.
    public private(set) var newestTimeline = 0
    /// Members that answered as primaries on an older timeline in the last round.
    public private(set) var fenced: [Int] = []

    public init(primary: Int? = nil) {
        self.primary = primary
    }

    /// Takes one round of answers (one per member, in the order of `database_url`). Among the
    /// primaries on the newest timeline the current one is kept; otherwise the first listed.
    public mutating func observe(_ answers: [Answer]) -> Change {
        for answer in answers {
            switch answer {
            case .primary(let timeline), .standby(let timeline?): newestTimeline = max(newestTimeline, timeline)
            default: break
            }
        }
        var candidates: [Int] = []
        fenced = []
        for (member, answer) in answers.enumerated() {
            guard case .primary(let timeline) = answer else { continue }
            if timeline < newestTimeline { fenced.append(member) } else { candidates.append(member) }
        }
        let before = primary
        primary = primary.flatMap { candidates.contains($0) ? $0 : nil } ?? candidates.first
        guard primary != before else { return .none }
        guard let primary else { return .lost }
        return .chose(member: primary, timeline: newestTimeline)
    }
}
