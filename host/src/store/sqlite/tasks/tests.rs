use super::schema::MIGRATIONS;
use super::sql::{
    list_sql, CATEGORY_COLUMN, DELETE_ENDED_SQL, FINISH_SQL, INSERT_SQL, START_SQL, USER_COLUMN,
    WAITING_SQL,
};
use super::*;

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

fn new_task(cat: &str, user: &str, full: Option<&str>) -> NewTask {
    NewTask {
        category: cat.into(),
        user: user.into(),
        deletable: false,
        name: String::new(),
        shown_params: r#"{"password":"******"}"#.into(),
        full_params: full.map(str::to_string),
        init: 1,
        node: None,
    }
}

#[tokio::test]
async fn claim_is_fifo_within_allowances_and_secrets_are_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let a1 = store
        .insert(new_task("a", "u", Some(r#"{"password":"hunter2"}"#)))
        .await
        .unwrap();
    let a2 = store.insert(new_task("a", "u", None)).await.unwrap();
    let b1 = store.insert(new_task("b", "v", None)).await.unwrap();
    let c1 = store.insert(new_task("c", "v", None)).await.unwrap();
    assert!(a1.id < a2.id && a2.id < b1.id && b1.id < c1.id);

    // One of `a` at most, `b` unbounded, `c` not at all.
    let got = store
        .claim(ClaimRequest {
            users: Vec::new(),
            max: 10,
            categories: vec![("a".into(), Some(1)), ("b".into(), None)],
            now: 5,
        })
        .await
        .unwrap();
    let ids: Vec<i64> = got.iter().map(|c| c.task.id).collect();
    assert_eq!(ids, vec![a1.id, b1.id]);
    assert_eq!(got[0].full_params, r#"{"password":"hunter2"}"#);
    assert_eq!(got[0].task.params.get(), r#"{"password":"******"}"#);
    assert_eq!(got[0].task.state, TaskState::Running);
    assert_eq!(got[0].task.start, Some(5));
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
    assert_eq!(SqliteStore::schema_version(), 5);
    let got = store
        .claim(ClaimRequest {
            users: Vec::new(),
            max: 1,
            categories: vec![("a".into(), None)],
            now: 6,
        })
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].task.id, a2.id);
    let done = Finish {
        id: a1.id,
        state: TaskState::Completed,
        result: 0,
        detail: "ok".into(),
        progress: 100,
        end: 7,
    };
    assert!(store.finish(done.clone()).await.unwrap());
    assert!(
        !store.finish(done).await.unwrap(),
        "a finished task is not finished twice"
    );
    let t = store.get(a1.id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.progress, t.end),
        (TaskState::Completed, 100, Some(7))
    );

    let counts = store.counts().await.unwrap();
    assert!(
        counts
            .iter()
            .any(|c| c.category == "a" && c.state == TaskState::Completed && c.count == 1),
        "{counts:?}"
    );
    assert!(
        counts
            .iter()
            .any(|c| c.category == "a" && c.state == TaskState::Running && c.count == 1),
        "{counts:?}"
    );
    // `c` still waits: the oldest waiting submit time is its `init`.
    assert!(
        counts.iter().any(|c| c.category == "c"
            && c.state == TaskState::Waiting
            && c.count == 1
            && c.oldest_init == c1.init),
        "{counts:?}"
    );

    // Filters.
    assert_eq!(store.list(Owner::User("v"), None).await.unwrap().len(), 2);
    assert_eq!(store.list(Owner::Anyone, Some("a")).await.unwrap().len(), 2);
    assert_eq!(
        store.list(Owner::User("v"), Some("c")).await.unwrap()[0].id,
        c1.id
    );
    assert!(store
        .delete_finished(Owner::User("v"), None)
        .await
        .unwrap()
        .is_empty());
    let gone = store.delete_finished(Owner::User("u"), None).await.unwrap();
    assert_eq!(gone.iter().map(|t| t.id).collect::<Vec<_>>(), [a1.id]);
    assert!(!store.delete_if(c1.id, &[TaskState::Running]).await.unwrap());
    assert!(store.delete_if(c1.id, &[TaskState::Waiting]).await.unwrap());

    // Recovery takes the running ones only.
    let ids = store.interrupt_running(4, "interrupted", 9).await.unwrap();
    assert_eq!(ids, vec![a2.id, b1.id]);

    // Ids are never reused after deletes.
    let max = store
        .list(Owner::Anyone, None)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .max()
        .unwrap();
    let n = store.insert(new_task("a", "u", None)).await.unwrap();
    assert!(n.id > c1.id && n.id > max);
    store.close().await.unwrap();
    assert!(
        store.insert(new_task("a", "u", None)).await.is_err(),
        "closed store refuses writes"
    );
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
