import Logging
import PostgresNIO
import ServiceLifecycle
import ConfbusEngine
import Synchronization

/// The PostgreSQL servers `database_url` names, one connection pool each. Every query goes to the
/// current primary (`PrimaryChoice`); with none — all down, all in recovery, or only a returning
/// old primary — it fails at once with `DatabaseUnavailable` (503 over HTTP) instead of waiting
/// on a pool. `probe` asks every server in parallel; `Startup` calls it every second, so a
/// promotion is followed within about a second, without a restart.
public final class DatabaseCluster: Service, Sendable {
    /// One server: its pool, replaced by a new one when the server stops answering, so requests
    /// queued on the old pool fail at once (the pool would keep them up to a minute, retrying).
    final class Member: Sendable {
        /// `host:port`, as logged and shown; never the credentials.
        let endpoint: String
        let configuration: PostgresClient.Configuration?
        let pool: Mutex<(client: PostgresClient, retire: AsyncStream<Void>.Continuation)>
        /// Probe rounds in a row it did not answer.
        let missedRounds = Mutex(0)

        init(endpoint: String, configuration: PostgresClient.Configuration?, client: PostgresClient) {
            self.endpoint = endpoint
            self.configuration = configuration
            pool = Mutex((client, AsyncStream<Void>.makeStream().continuation))
        }

        var client: PostgresClient { pool.withLock { $0.client } }
    }

    let members: [Member]
    private let choice: Mutex<(PrimaryChoice, generation: UInt64)>
    private let launches = AsyncStream<(PostgresClient, AsyncStream<Void>)>.makeStream()
    private let logger: Logger

    public init(url: String, logger: Logger) throws {
        let configurations = try PostgresClient.Configuration.cluster(url: url)
        members = configurations.map {
            Member(endpoint: "\($0.host ?? "?"):\($0.port ?? 5432)", configuration: $0,
                   client: PostgresClient(configuration: $0, backgroundLogger: logger))
        }
        // One server is written through from the start, as before there were several; the first
        // probe confirms it (or finds it in recovery). With several, nothing until a probe chose.
        choice = Mutex((PrimaryChoice(primary: members.count == 1 ? 0 : nil), 0))
        self.logger = logger
        for member in members { launch(member, member.client) }
    }

    /// One server that is the primary by definition (tests, tools); its pool is never replaced.
    public init(client: PostgresClient, endpoint: String = "database", logger: Logger) {
        members = [Member(endpoint: endpoint, configuration: nil, client: client)]
        choice = Mutex((PrimaryChoice(primary: 0), 0))
        self.logger = logger
    }

    private func launch(_ member: Member, _ client: PostgresClient) {
        let (retired, retire) = AsyncStream<Void>.makeStream()
        member.pool.withLock { $0 = (client, retire) }
        launches.continuation.yield((client, retired))
    }

    /// A new pool for `member`; the old one shuts down, failing what waits on it.
    private func replacePool(of member: Member) {
        guard let configuration = member.configuration else { return }
        let old = member.pool.withLock { $0.retire }
        launch(member, PostgresClient(configuration: configuration, backgroundLogger: logger))
        old.finish()
    }

    /// Runs every member's pool (and each replacement).
    public func run() async throws {
        // Last to get the graceful shutdown (the first service), so everything else has finished with it.
        await cancelWhenGracefulShutdown { await self.runPools() }
    }

    private func runPools() async {
        await withDiscardingTaskGroup { group in
            for await (client, retired) in launches.stream {
                group.addTask {
                    await withTaskGroup(of: Void.self) { pool in
                        pool.addTask { await client.run() }
                        pool.addTask { for await _ in retired {} }
                        await pool.next()
                        pool.cancelAll()
                    }
                }
            }
        }
    }

    /// The pool of the current primary.
    public func primary() throws(DatabaseUnavailable) -> PostgresClient {
        guard let index = choice.withLock({ $0.0.primary }) else { throw DatabaseUnavailable() }
        return members[index].client
    }

    /// Grows by one each time the primary changes (or is lost): a LISTEN connection on the old
    /// one is given up when it moves.
    public var generation: UInt64 { choice.withLock { $0.generation } }

    /// Asks every server whether it is in recovery and on which timeline (each bounded by
    /// `timeout`), and chooses the primary. Throws when there is none to write through.
    public func probe(timeout: Duration) async throws(DatabaseUnavailable) {
        let answers = await withTaskGroup(of: (Int, PrimaryChoice.Answer).self) { group in
            for (index, member) in members.enumerated() {
                group.addTask { (index, await Self.ask(member.client, within: timeout, logger: self.logger)) }
            }
            var answers = [PrimaryChoice.Answer](repeating: .unreachable, count: members.count)
            for await (index, answer) in group { answers[index] = answer }
            return answers
        }
        let (change, newlyFenced, timeline) = choice.withLock { state in
            let fencedBefore = state.0.fenced
            let change = state.0.observe(answers)
            if change != .none { state.generation += 1 }
            // Said once when a server is first refused, not every second while it stays so.
            return (change, state.0.fenced.filter { !fencedBefore.contains($0) }, state.0.newestTimeline)
        }
        // A server that missed two rounds in a row gets a new pool, once per outage: whatever waits
        // on the old one is failed now (503), not left to the pool's minute of retries. (One slow
        // answer under load is not enough: replacing a pool cuts what runs on it.)
        for (index, answer) in answers.enumerated() {
            let missed = members[index].missedRounds.withLock { missed in
                missed = answer == .unreachable ? missed + 1 : 0
                return missed
            }
            if missed == 2 { replacePool(of: members[index]) }
        }
        switch change {
        case .chose(let member, let timeline):
            logger.notice("writing through the PostgreSQL primary", metadata: ["db.primary": "\(members[member].endpoint)", "db.timeline": "\(timeline)"])
        case .lost:
            logger.warning("no PostgreSQL primary to write through", metadata: ["db.answers": "\(describe(answers))"])
        case .none: break
        }
        for member in newlyFenced {
            logger.error("refusing a PostgreSQL server out of recovery on an older timeline (a returning old primary)",
                         metadata: ["db.server": "\(members[member].endpoint)", "db.answer": "\(describe([answers[member]]))",
                                    "db.newest_timeline": "\(timeline)"])
        }
        _ = try primary()
    }

    private func describe(_ answers: [PrimaryChoice.Answer]) -> String {
        answers.map { answer in
            switch answer {
            case .primary(let timeline): "primary (timeline \(timeline))"
            case .standby(let timeline): "in recovery (timeline \(timeline.map(String.init) ?? "?"))"
            case .unreachable: "unreachable"
            }
        }.joined(separator: ", ")
    }

    /// One server's answer. The timeline of a primary is its WAL insert timeline (the first eight
    /// hex digits of the current WAL file's name: it moves at promotion, before any checkpoint);
    /// of a standby, its last restart point's.
    static func ask(_ client: PostgresClient, within timeout: Duration, logger: Logger) async -> PrimaryChoice.Answer {
        await Deadline.race(timeout, otherwise: .unreachable) {
            do {
                let rows = try await client.query("""
                    SELECT pg_is_in_recovery(),
                           CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,
                           (SELECT timeline_id FROM pg_control_checkpoint())
                    """, logger: logger)
                for try await (recovering, walFile, checkpointTimeline) in rows.decode((Bool, String?, Int32?).self) {
                    if recovering { return .standby(timeline: checkpointTimeline.map(Int.init)) }
                    guard let walFile, let timeline = Int(walFile.prefix(8), radix: 16) else { return .unreachable }
                    return .primary(timeline: timeline)
                }
                return .unreachable
            } catch {
                return .unreachable
            }
        }
    }

    // MARK: The pool's API, on the primary

    public func withConnection<Result>(isolation: isolated (any Actor)? = #isolation,
                                       _ closure: (PostgresConnection) async throws -> sending Result) async throws -> sending Result {
        try await primary().withConnection(isolation: isolation, closure)
    }

    public func withTransaction<Result>(logger: Logger, isolation: isolated (any Actor)? = #isolation,
                                        _ closure: (PostgresConnection) async throws -> sending Result) async throws -> sending Result {
        try await primary().withTransaction(logger: logger, isolation: isolation, closure)
    }

    @discardableResult
    public func query(_ query: PostgresQuery, logger: Logger) async throws -> PostgresRowSequence {
        try await primary().query(query, logger: logger)
    }
}

/// No server to write through: the probe found none out of recovery on the newest timeline.
public struct DatabaseUnavailable: Error, Sendable, CustomStringConvertible {
    public init() {}
    public var description: String { "no PostgreSQL primary is reachable" }
}
