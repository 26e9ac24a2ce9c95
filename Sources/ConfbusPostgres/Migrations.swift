import Logging
import PostgresNIO

/// The schema, as numbered migrations applied at start-up. They run in one transaction under an
/// advisory lock, so two nodes starting at once apply each migration exactly once.
public enum Migrations {
    static let lockKey: Int64 = 0x636F_6E66_6275_7301 // "confbus" + 1

    static let steps: [(version: Int, statements: [PostgresQuery])] = [
        (1, [
            """
            CREATE TABLE services (
                name text PRIMARY KEY,
                latest_version integer NOT NULL DEFAULT 0 CHECK (latest_version >= 0),
                latest_checksum text,
                override_layer text,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """,
            """
            CREATE TABLE config_versions (
                service text NOT NULL REFERENCES services (name),
                version integer NOT NULL CHECK (version >= 1),
                config text NOT NULL,
                checksum text NOT NULL,
                source text NOT NULL,
                author text NOT NULL,
                reason text,
                environment text NOT NULL,
                layers text,
                override_layer text,
                batch_id uuid,
                created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (service, version)
            )
            """,
            """
            CREATE TABLE outbox (
                id bigserial PRIMARY KEY,
                service text NOT NULL,
                version integer NOT NULL,
                queued_at timestamptz NOT NULL DEFAULT clock_timestamp(),
                UNIQUE (service, version),
                FOREIGN KEY (service, version) REFERENCES config_versions (service, version)
            )
            """,
            """
            CREATE TABLE instances (
                service text NOT NULL,
                instance text NOT NULL,
                first_seen timestamptz NOT NULL DEFAULT clock_timestamp(),
                last_seen timestamptz NOT NULL DEFAULT clock_timestamp(),
                health text,
                health_at timestamptz,
                applied_version integer,
                ack_status text,
                detail text,
                PRIMARY KEY (service, instance)
            )
            """,
        ]),
        (2, [
            """
            CREATE TABLE audit (
                id bigserial PRIMARY KEY,
                at timestamptz NOT NULL DEFAULT clock_timestamp(),
                actor text NOT NULL,
                request_id text NOT NULL,
                action text NOT NULL,
                outcome text NOT NULL CHECK (outcome IN ('accepted', 'refused')),
                services text[] NOT NULL,
                changes text NOT NULL,
                reason text,
                detail text
            )
            """,
            "CREATE INDEX audit_services ON audit USING gin (services)",
        ]),
        (3, [
            """
            CREATE TABLE idempotency_keys (
                key text PRIMARY KEY,
                request_hash text NOT NULL,
                answer text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT clock_timestamp()
            )
            """,
        ]),
        (4, [
            // The relay lease (RELIABILITY P21): one row, one holder, an epoch that grows on every takeover.
            """
            CREATE TABLE relay_lease (
                id integer PRIMARY KEY CHECK (id = 1),
                holder text NOT NULL,
                epoch bigint NOT NULL,
                expires_at timestamptz NOT NULL
            )
            """,
            "ALTER TABLE services ADD COLUMN published_version integer NOT NULL DEFAULT 0",
            "ALTER TABLE services ADD COLUMN publisher_epoch bigint NOT NULL DEFAULT 0",
            "CREATE INDEX instances_last_seen ON instances (last_seen)",
        ]),
        (5, [
            // Which key the database's secrets are sealed under (CONTRACT.md §10); no row, none is.
            """
            CREATE TABLE secret_key (
                id integer PRIMARY KEY CHECK (id = 1),
                key_id text NOT NULL,
                created_at timestamptz NOT NULL DEFAULT now(),
                rotated_at timestamptz
            )
            """,
        ]),
        (6, [
            // What each instance registered with (`"features": ["rollout"]`, CONTRACT.md §8).
            "ALTER TABLE instances ADD COLUMN features text[] NOT NULL DEFAULT '{}'",
        ]),
        (7, [
            // Progressive rollouts (CONTRACT.md §8): the machine's state after each step, one running per service.
            """
            CREATE TABLE rollouts (
                id text PRIMARY KEY,
                service text NOT NULL REFERENCES services (name),
                state text NOT NULL CHECK (state IN ('running', 'completed', 'rolled_back')),
                steps integer[] NOT NULL,
                bake_ms bigint NOT NULL CHECK (bake_ms >= 0),
                ack_timeout_ms bigint NOT NULL CHECK (ack_timeout_ms > 0),
                max_rejected integer NOT NULL CHECK (max_rejected >= 0),
                stable_version integer NOT NULL,
                candidate_version integer NOT NULL,
                step integer NOT NULL,
                cohort text[] NOT NULL,
                phase text NOT NULL CHECK (phase IN ('awaiting_acks', 'baking', 'completed', 'rolled_back')),
                phase_since timestamptz NOT NULL,
                outcome text,
                actor text NOT NULL,
                reason text,
                started_at timestamptz NOT NULL,
                updated_at timestamptz NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX rollouts_one_running ON rollouts (service) WHERE state = 'running'",
            "CREATE INDEX rollouts_by_service ON rollouts (service, started_at DESC)",
        ]),
        (8, [
            // The version config/update and a plain GET carry: below latest_version only while a
            // rollout's candidate waits for its release.
            "ALTER TABLE services ADD COLUMN released_version integer NOT NULL DEFAULT 0",
            "UPDATE services SET released_version = latest_version",
            // The version a rejected ack was for (applied_version keeps what the instance runs).
            "ALTER TABLE instances ADD COLUMN ack_version integer",
            "ALTER TABLE rollouts ADD COLUMN revision integer NOT NULL DEFAULT 1",
            // Each cohort member's answer when the rollout ended, as JSON.
            "ALTER TABLE rollouts ADD COLUMN members text",
        ]),
        (9, [
            // A service whose broker held a version this database lost (CONTRACT.md §11), as JSON,
            // until an operator next writes it.
            "ALTER TABLE services ADD COLUMN diverged text",
        ]),
    ]

    public static var latestVersion: Int { steps.last?.version ?? 0 }

    /// Applies what is missing; returns the versions applied now.
    @discardableResult
    public static func run(on client: PostgresClient, logger: Logger) async throws -> [Int] {
        try await client.withTransaction(logger: logger) { connection in
            try await connection.query("SELECT pg_advisory_xact_lock(\(lockKey))", logger: logger)
            try await connection.query(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
                logger: logger)
            var applied = Set<Int>()
            for try await version in try await connection.query("SELECT version FROM schema_migrations", logger: logger).decode(Int.self) {
                applied.insert(version)
            }
            var now: [Int] = []
            for step in steps where !applied.contains(step.version) {
                for statement in step.statements { try await connection.query(statement, logger: logger) }
                try await connection.query("INSERT INTO schema_migrations (version) VALUES (\(step.version))", logger: logger)
                now.append(step.version)
            }
            if !now.isEmpty { logger.info("applied database migrations", metadata: ["migrations": "\(now)"]) }
            return now
        }
    }
}
