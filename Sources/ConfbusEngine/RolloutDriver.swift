import ConfbusCore
import Foundation
import Logging
import ServiceLifecycle

/// The port to the bus for rollouts: the retained `config/rollout/<service>` message.
public protocol RolloutPublisher: Sendable {
    /// Publishes `payload` retained on the service's rollout topic, or clears it (nil: an empty
    /// retained message); returns once the broker has acknowledged it.
    func publishRollout(_ service: ServiceName, payload: JSONValue?) async throws
}

/// Runs on every node: keeps the node's `RolloutBoard` current from the store, and on the node
/// that holds the relay lease advances every running rollout and keeps each rollout topic what
/// the store says (the cohort of the step running; empty once it has ended).
public struct RolloutDriver: Service {
    public struct Options: Sendable {
        /// How often the relaying node looks at running rollouts (acks and health are read then).
        public var interval: Duration = .milliseconds(250)
        /// How often the other nodes refresh their board, and the relaying node looks while none runs
        /// (one started on this node wakes it at once).
        public var idleInterval: Duration = .seconds(1)

        public init() {}
    }

    let rollouts: Rollouts
    let store: any RolloutStore & VersionStore
    let publisher: any RolloutPublisher
    let relay: RelayStatus
    let readiness: Readiness
    let reloader: TreeReload
    let options: Options
    let logger: Logger

    public init(rollouts: Rollouts, store: any RolloutStore & VersionStore, publisher: any RolloutPublisher, relay: RelayStatus,
                readiness: Readiness, reloader: TreeReload, options: Options = Options(), logger: Logger) {
        self.rollouts = rollouts
        self.store = store
        self.publisher = publisher
        self.relay = relay
        self.readiness = readiness
        self.reloader = reloader
        self.options = options
        self.logger = logger
    }

    /// What this node last published on each rollout topic while relaying (the rollout, its step
    /// and cohort); a topic cleared is forgotten. Forgotten whole when the lease is lost, so a new
    /// tenure publishes again.
    actor Published {
        var topics: [ServiceName: String] = [:]
        var leading = false

        /// Whether this node starts leading now.
        func lead(_ now: Bool) -> Bool {
            defer { leading = now }
            if !now { topics = [:] }
            return now && !leading
        }

        func get(_ service: ServiceName) -> String? { topics[service] }
        func set(_ service: ServiceName, _ key: String?) { topics[service] = key }
        var services: [ServiceName] { Array(topics.keys) }
    }

    public func run() async throws {
        let published = Published()
        await cancelWhenGracefulShutdown {
            while !(await readiness.waitUntilLoaded(timeout: .seconds(60))) {
                if Task.isCancelled { return }
            }
            while !Task.isCancelled {
                let leading = relay.isRelaying
                let running = await pass(leading: leading, published: published)
                await rollouts.signal.wait(timeout: leading && running ? options.interval : options.idleInterval)
            }
        }
    }

    /// One look; returns whether any rollout still runs.
    @discardableResult
    func pass(leading: Bool, published: Published) async -> Bool {
        let running: [RolloutRecord]
        do {
            running = try await store.runningRollouts()
        } catch {
            return false
        }
        var current: [RolloutRecord] = []
        for var record in running {
            if leading {
                do {
                    record = try await rollouts.advance(record)
                } catch is RolloutMoved {
                    continue
                } catch {
                    logger.warning("rollout not advanced; will retry", metadata: ["confbus.rollout": "\(record.machine.id)",
                                                                                  "error.type": "\(type(of: error))"])
                }
                if record.machine.phase.isFinished { continue }
            }
            current.append(record)
        }
        await refreshBoard(current)
        if leading { await publishTopics(current, published: published) } else { _ = await published.lead(false) }
        // A file change that waited for a rollout (ended here, by an operator, or on another node) is committed now.
        if !rollouts.board.takeEnded().isEmpty {
            do {
                let report = try await reloader.reload(author: "confbus", reason: "a rollout ended")
                if !report.committed.isEmpty { logger.info("committed file changes that waited for a rollout", metadata: ["count": "\(report.committed.count)"]) }
            } catch {
                logger.warning("reload after a rollout failed", metadata: ["error.type": "\(type(of: error))"])
            }
        }
        return !current.isEmpty
    }

    private func refreshBoard(_ running: [RolloutRecord]) async {
        let board = rollouts.board
        let known = board.all
        var next: [ServiceName: RolloutBoard.Entry] = [:]
        for record in running {
            let service = record.machine.service
            if let entry = known[service], entry.candidate.version == record.machine.candidateVersion {
                next[service] = .init(record: record, candidate: entry.candidate)
            } else if let candidate = try? await store.version(service, record.machine.candidateVersion) {
                next[service] = .init(record: record, candidate: candidate)
            }
        }
        board.replace(next)
    }

    /// Makes every rollout topic what the store says: the running step's cohort, or empty.
    private func publishTopics(_ running: [RolloutRecord], published: Published) async {
        if await published.lead(true) {
            // A new tenure: rollouts that ended while no node was relaying may have left their topic.
            if let recent = try? await store.rolloutsUpdated(since: Date().addingTimeInterval(-3600)) {
                for record in recent where record.machine.phase.isFinished { await published.set(record.machine.service, "unknown") }
            }
        }
        let board = rollouts.board.all
        var wanted: [ServiceName: (key: String, payload: JSONValue)] = [:]
        for record in running {
            let m = record.machine
            guard let candidate = board[m.service]?.candidate else { continue }
            wanted[m.service] = ("\(m.id)/\(m.step)/\(m.cohort.joined(separator: ","))", Self.payload(m, candidate: candidate))
        }
        for (service, entry) in wanted where await published.get(service) != entry.key {
            do {
                try await publisher.publishRollout(service, payload: entry.payload)
                await published.set(service, entry.key)
            } catch {
                logger.warning("rollout topic not published; will retry", metadata: ["confbus.service": "\(service)"])
            }
        }
        for service in await published.services where wanted[service] == nil {
            do {
                try await publisher.publishRollout(service, payload: nil)
                await published.set(service, nil)
            } catch {
                logger.warning("rollout topic not cleared; will retry", metadata: ["confbus.service": "\(service)"])
            }
        }
    }

    /// The retained rollout message (CONTRACT.md §8): the candidate document with the rollout, its
    /// stable version, the step (from 1) and the cohort.
    static func payload(_ machine: RolloutMachine, candidate: StoredVersion) -> JSONValue {
        guard case .object(var document) = candidate.document else { return candidate.document }
        document["rollout"] = .string(machine.id)
        document["stable_version"] = .integer(machine.stableVersion)
        document["step"] = .integer(machine.step + 1)
        document["cohort"] = .array(machine.cohort.map(JSONValue.string))
        return .object(document)
    }
}
