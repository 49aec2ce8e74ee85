//! Versioned schema migrations of the PostgreSQL database, as for SQLite:
//! applied in order, each in its own transaction, recorded in
//! `schema_migrations`. Append new ones; never edit a released one.

use anyhow::{bail, Context};

/// The migrations; the version of each is its position from 1.
pub const MIGRATIONS: &[&str] = &[
    // 1: tasks (ids from an identity: unique across nodes, never reused),
    // their sealed full params, nodes and their heartbeats, sessions,
    // remembered credentials and shared settings.
    r#"
    CREATE TABLE tasks (
        id           BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        node         TEXT    NOT NULL,
        category     TEXT    NOT NULL,
        state        TEXT    NOT NULL CHECK (state IN ('waiting', 'running', 'completed', 'error')),
        detail_state TEXT    NOT NULL DEFAULT '',
        progress     INTEGER NOT NULL DEFAULT 0,
        result       INTEGER NOT NULL DEFAULT 0,
        deletable    BOOLEAN NOT NULL,
        username     TEXT    NOT NULL,
        name         TEXT    NOT NULL DEFAULT '',
        params       TEXT    NOT NULL,
        init         BIGINT  NOT NULL,
        started      BIGINT,
        ended        BIGINT
    );
    CREATE INDEX tasks_waiting ON tasks (node, id) WHERE state = 'waiting';
    CREATE INDEX tasks_running ON tasks (node, id) WHERE state = 'running';
    CREATE INDEX tasks_user ON tasks (username, id);
    CREATE TABLE task_secrets (
        task_id BIGINT PRIMARY KEY REFERENCES tasks (id) ON DELETE CASCADE,
        sealed  BYTEA  NOT NULL
    );
    CREATE TABLE nodes (
        name      TEXT        PRIMARY KEY,
        started   TIMESTAMPTZ NOT NULL DEFAULT now(),
        heartbeat TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE sessions (
        key        TEXT   PRIMARY KEY,
        username   TEXT   NOT NULL,
        login_time BIGINT NOT NULL,
        expires    BIGINT NOT NULL
    );
    CREATE TABLE credentials (
        username TEXT  NOT NULL,
        registry TEXT  NOT NULL,
        sealed   BYTEA NOT NULL,
        PRIMARY KEY (username, registry)
    );
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    // 2: retention reads the finished tasks by end. Only finished tasks
    // have an `ended`, so submits do not touch it. (No index on category
    // here: the claim's plan must stay on `tasks_waiting`, and with SQLite
    // an index on category took it over; add one only with an EXPLAIN of the
    // claim on a loaded database.)
    r#"
    CREATE INDEX tasks_ended ON tasks (ended) WHERE ended IS NOT NULL;
    "#,
    // 3: a page of one category (`list_page`) reads that category's tasks
    // newest first; without it, a rare category's page read every task
    // (p99 16 ms with 100,000 stored, growing with them). PostgreSQL weighs it
    // against `tasks_waiting` with the table's statistics: the claim stays
    // on the waiting tasks where few wait, and may use it for a rare
    // category in a long backlog, where it is the shorter read.
    // `store::postgres::tasks::tests::pages_and_claims_read_indexes` checks both
    // plans on a loaded database.
    r#"
    CREATE INDEX tasks_category ON tasks (category, id);
    "#,
    // 4: the fingerprint of the password hash a session was made under, so
    // that a password change ends the sessions made before it (those made
    // before this migration have none, and are refused).
    r#"
    ALTER TABLE sessions ADD COLUMN stamp TEXT NOT NULL DEFAULT '';
    "#,
    // 5: the audit log of every node's state-changing API calls, read
    // newest first and pruned by time.
    r#"
    CREATE TABLE audit_log (
        id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts       BIGINT NOT NULL,
        level    TEXT   NOT NULL,
        category TEXT   NOT NULL,
        username TEXT   NOT NULL,
        message  TEXT   NOT NULL
    );
    CREATE INDEX audit_log_ts ON audit_log (ts);
    "#,
    // 6: registries added through the API, their logins sealed under the
    // shared key (the preferences live in `settings`).
    r#"
    CREATE TABLE registries (
        id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name       TEXT    NOT NULL UNIQUE,
        url        TEXT    NOT NULL,
        trust_cert BOOLEAN NOT NULL,
        version    TEXT    NOT NULL DEFAULT '',
        sealed     BYTEA
    );
    "#,
    // 7: each task's log lines (`store::task_log`), numbered from 0 per
    // task, deleted with their task.
    r#"
    CREATE TABLE task_log (
        task_id BIGINT  NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        seq     BIGINT  NOT NULL,
        ts      BIGINT  NOT NULL,
        level   TEXT    NOT NULL,
        message TEXT    NOT NULL,
        PRIMARY KEY (task_id, seq)
    );
    "#,
    // 8: scheduled tasks, beside the tasks they submit so that a firing and
    // its task commit together. The full params are sealed in the row
    // (bound to the schedule's id), only when something was masked.
    r#"
    CREATE TABLE schedules (
        id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        owner      TEXT    NOT NULL,
        name       TEXT    NOT NULL,
        category   TEXT    NOT NULL,
        params     TEXT    NOT NULL,
        sealed     BYTEA,
        cron       TEXT    NOT NULL,
        timezone   TEXT    NOT NULL,
        paused     BOOLEAN NOT NULL DEFAULT false,
        next_run   BIGINT  NOT NULL,
        last_run   BIGINT,
        last_task  BIGINT,
        last_error TEXT,
        created    BIGINT  NOT NULL
    );
    CREATE INDEX schedules_owner ON schedules (owner, id);
    CREATE INDEX schedules_next ON schedules (next_run) WHERE NOT paused;
    "#,
    // 9: whether a silent node's waiting tasks have been told so (their
    // `detail_state` names the node): the reaper marks each silent node
    // once, and the node's next heartbeat clears the mark and the details.
    r#"
    ALTER TABLE nodes ADD COLUMN marked_silent BOOLEAN NOT NULL DEFAULT false;
    "#,
    // 10: webhooks (`store::webhooks`), their secret sealed in the row
    // (bound to the webhook's id), and the outbox of their deliveries: one
    // row per webhook and event id, claimed by one node at a time.
    // A configured webhook's deliveries have a negative `webhook`.
    r#"
    CREATE TABLE webhooks (
        id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        owner      TEXT    NOT NULL,
        all_users  BOOLEAN NOT NULL DEFAULT false,
        url        TEXT    NOT NULL,
        events     TEXT    NOT NULL,
        categories TEXT,
        sealed     BYTEA   NOT NULL,
        created    BIGINT  NOT NULL
    );
    CREATE INDEX webhooks_owner ON webhooks (owner, id);
    CREATE TABLE webhook_deliveries (
        id            BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        webhook       BIGINT  NOT NULL,
        event_id      TEXT    NOT NULL,
        event         TEXT    NOT NULL,
        body          TEXT    NOT NULL,
        status        TEXT    NOT NULL DEFAULT 'pending',
        attempts      INTEGER NOT NULL DEFAULT 0,
        last_code     INTEGER,
        last_error    TEXT,
        next_attempt  BIGINT,
        claimed_by    TEXT,
        claimed_until BIGINT,
        created       BIGINT  NOT NULL,
        delivered     BIGINT,
        UNIQUE (webhook, event_id)
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt)
        WHERE status = 'pending';
    CREATE INDEX webhook_deliveries_of ON webhook_deliveries (webhook, id);
    "#,
];

/// The schema version this build migrates to.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

/// Any 64-bit number of our own: the advisory lock that lets one node at a
/// time migrate.
const MIGRATION_LOCK: i64 = 0x5374_6576_6564_6f72; // "Stevedor"

/// Apply the pending migrations.
pub(super) async fn migrate(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .or_else(|e| {
            // Two nodes creating it at once: the loser sees a unique violation.
            if e.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) {
                Ok(())
            } else {
                Err(e)
            }
        })
        .context("creating schema_migrations")?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let current: i32 = super::one_value(
        &tx,
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
    )
    .await?;
    let current = current as usize;
    if current > MIGRATIONS.len() {
        bail!(
            "the database has schema version {current}, newer than this build knows ({})",
            MIGRATIONS.len()
        );
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = (i + 1) as i32;
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("migration {version}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(version, "applied database migration");
    }
    tx.commit().await?;
    Ok(())
}
