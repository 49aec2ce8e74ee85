use super::schema::MIGRATIONS;
use super::sql::{
    list_sql, CATEGORY_COLUMN, DELETE_ENDED_SQL, FINISH_SQL, INSERT_SQL, START_SQL, USER_COLUMN,
    WAITING_SQL,
};
use super::*;
use crate::store::suite::{claim_req, new_task};

#[tokio::test]
async fn tasks_stored_before_names_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        // A database as the previous release left it (schema 1).
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch("PRAGMA user_version = 1").unwrap();
        for params in [
            r#"{"type":"docker","name":"dtest","image":"busybox"}"#,
            r#"[{"image":"busybox","tag":"1.36"}]"#,
        ] {
            conn.execute(
                "INSERT INTO tasks (category, state, deletable, username, params, init)
                 VALUES ('x', 'completed', 0, 'u', ?1, 1)",
                [params],
            )
            .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    let names: Vec<String> = store
        .list(Owner::Anyone, None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["busybox:1.36", "dtest"]);
    store.close().await.unwrap();
}

/// The newest tasks deleted, the store opened again: their ids are
/// not given again (the writer gives ids; `task_ids` keeps the highest).
#[tokio::test]
async fn ids_deleted_from_the_top_are_not_given_again_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let first = store.insert(new_task("x", "u", None)).await.unwrap();
    let newest = store.insert(new_task("x", "u", None)).await.unwrap();
    assert!(newest.id > first.id);
    assert!(store
        .delete_if(newest.id, &[TaskState::Waiting])
        .await
        .unwrap());
    store.close().await.unwrap();
    drop(store);
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let next = store.insert(new_task("x", "u", None)).await.unwrap();
    assert!(
        next.id > newest.id,
        "id {} was given again (newest was {})",
        next.id,
        newest.id
    );
    store.close().await.unwrap();
}

/// A database as release 3 left it, rebuilt by migration 4: every row
/// and sealed param kept, ids never given twice, the state still checked.
#[tokio::test]
async fn the_state_check_rebuild_keeps_rows_secrets_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let conn = Connection::open(&path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch("PRAGMA user_version = 3").unwrap();
        for (state, name) in [("completed", "one"), ("waiting", "two"), ("error", "three")] {
            conn.execute(
                "INSERT INTO tasks (category, state, deletable, username, params, init, name, ended)
                 VALUES ('x', ?1, 1, 'u', '{}', 1, ?2, 9)",
                [state, name],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO task_secrets (task_id, sealed) VALUES (2, x'00112233')",
            [],
        )
        .unwrap();
        // The newest task was deleted: its id must not come back.
        conn.execute("DELETE FROM tasks WHERE id = 3", []).unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let listed: Vec<(i64, TaskState, String)> = store
        .list(Owner::Anyone, None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.state, t.name))
        .collect();
    assert_eq!(
        listed,
        [
            (2, TaskState::Waiting, "two".to_string()),
            (1, TaskState::Completed, "one".to_string())
        ]
    );
    let next = store.insert(new_task("x", "u", None)).await.unwrap();
    assert_eq!(next.id, 4, "an id given before is given again");
    store.close().await.unwrap();

    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, MIGRATIONS.len());
    let sealed: Vec<u8> = conn
        .query_row(
            "SELECT sealed FROM task_secrets WHERE task_id = 2",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sealed, [0x00, 0x11, 0x22, 0x33]);
    let bad = conn.execute("UPDATE tasks SET state = 'lost' WHERE id = 1", []);
    assert!(format!("{bad:?}").contains("CHECK"), "{bad:?}");
    let indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'tasks'
               AND name LIKE 'tasks_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 5);
    // Foreign keys hold again after the migrations: a sealed param of
    // a deleted task goes with it.
    conn.execute_batch("PRAGMA foreign_keys = ON; DELETE FROM tasks WHERE id = 2")
        .unwrap();
    let left: i64 = conn
        .query_row("SELECT count(*) FROM task_secrets", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

/// A task's writes (store, claim, finish) build no temporary b-tree of
/// their own: SQLite builds one for a CHECK of `IN (more than two
/// values)` on every execution, which cost a quarter of each write.
#[test]
fn task_writes_build_no_temporary_tables() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open_in(dir.path()).unwrap());
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let ephemeral = |sql: &str| -> usize {
        // EXPLAIN runs nothing: its parameters may stay unbound.
        let mut st = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
        let mut rows = st.raw_query();
        let mut n = 0;
        while let Some(row) = rows.next().unwrap() {
            n += usize::from(row.get::<_, String>(1).unwrap() == "OpenEphemeral");
        }
        n
    };
    assert_eq!(ephemeral(INSERT_SQL), 0);
    assert_eq!(ephemeral(FINISH_SQL), 0);
    assert_eq!(ephemeral("UPDATE tasks SET progress = 1 WHERE id = 1"), 0);
    assert_eq!(ephemeral(WAITING_SQL), 0);
    assert_eq!(ephemeral(START_SQL), 0);
    // The claim reads the columns it admits by where it expects them.
    let columns: Vec<&str> = COLUMNS.split(", ").collect();
    assert_eq!(columns[CATEGORY_COLUMN], "category");
    assert_eq!(columns[USER_COLUMN], "username");
    assert!(WAITING_SQL.starts_with(&format!("SELECT {COLUMNS}\n")));
}

/// What only the file shows: a claim takes the sealed params out of the
/// database (the run has them), the secret is never in the file in clear,
/// and claims go on after a restart where they stopped.
#[tokio::test]
async fn claimed_secrets_leave_the_file_and_claims_go_on_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let a1 = store
        .insert(new_task("a", "u", Some(r#"{"password":"hunter2"}"#)))
        .await
        .unwrap();
    let a2 = store.insert(new_task("a", "u", None)).await.unwrap();
    let got = store.claim(claim_req(1, &[("a", None)], 5)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, a1.id);
    assert_eq!(got[0].full_params, r#"{"password":"hunter2"}"#);
    // The claim took the sealed params out: the run has them.
    let sealed_rows = || -> i64 {
        Connection::open(dir.path().join(DB_FILE))
            .unwrap()
            .query_row("SELECT count(*) FROM task_secrets", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(sealed_rows(), 0);

    // The secret is not in the database file in clear.
    store.close().await.unwrap();
    let bytes = std::fs::read(dir.path().join(DB_FILE)).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"hunter2"));

    // Reopen: a2 is next.
    let store = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(SqliteStore::schema_version(), 8);
    let got = store.claim(claim_req(1, &[("a", None)], 6)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, a2.id);
    store.close().await.unwrap();
}

/// Every shape of a page, and a retention batch, reads an index in
/// order and stops early: no table scan, no sort of every task.
#[test]
fn pages_and_retention_read_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    drop(store);
    // The server never runs ANALYZE: the planner chooses from the
    // schema alone, the same with 10 tasks as with 100,000.
    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    let plan = |sql: &str, args: Vec<rusqlite::types::Value>| -> String {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = st
            .query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        rows.join("; ")
    };
    for (user, category, want) in [
        (None, None, "USING INTEGER PRIMARY KEY (rowid<?)"),
        (
            Some("u"),
            None,
            "USING INDEX tasks_user (username=? AND id<?)",
        ),
        (
            None,
            Some("c"),
            "USING INDEX tasks_category (category=? AND id<?)",
        ),
        (Some("u"), Some("c"), "USING INDEX tasks_"),
    ] {
        let page = Page {
            before: Some(100),
            limit: 100,
        };
        let (sql, args) = list_sql(user, category, Some(page));
        let p = plan(&sql, args);
        assert!(p.contains(want), "{sql}: {p}");
        assert!(
            !p.contains("SCAN") && !p.contains("TEMP B-TREE"),
            "{sql}: {p}"
        );
        // The first page (no `before`) too.
        let (sql, args) = list_sql(
            user,
            category,
            Some(Page {
                before: None,
                limit: 100,
            }),
        );
        let p = plan(&sql, args);
        assert!(!p.contains("TEMP B-TREE"), "{sql}: {p}");
    }
    let p = plan(
        DELETE_ENDED_SQL,
        vec![
            rusqlite::types::Value::Integer(1),
            rusqlite::types::Value::Integer(500),
        ],
    );
    assert!(p.contains("USING INDEX tasks_ended (ended<?)"), "{p}");
    assert!(p.contains("USING INTEGER PRIMARY KEY (rowid=?)"), "{p}");
    assert!(!p.contains("SCAN"), "{p}");
    assert!(!p.contains("TEMP B-TREE"), "{p}");
    // The claim keeps to the waiting tasks whatever else is indexed.
    let p = plan(WAITING_SQL, vec![]);
    assert!(p.contains("USING INDEX tasks_waiting"), "{p}");
    assert!(!p.contains("TEMP B-TREE"), "{p}");
}

#[tokio::test]
async fn one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteStore::open_in(dir.path()).unwrap();
    let err = SqliteStore::open_in(dir.path()).unwrap_err();
    assert!(
        format!("{err:#}").contains("in use by another stevedore"),
        "{err:#}"
    );
    first.close().await.unwrap();
    let again = SqliteStore::open_in(dir.path()).unwrap();
    again.close().await.unwrap();
}

#[test]
fn refuses_a_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let c = Connection::open(&path).unwrap();
    c.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(c);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(format!("{err:#}").contains("newer"), "{err:#}");
}
