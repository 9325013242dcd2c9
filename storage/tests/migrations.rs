//! How a node migrates during a rolling deploy (storage/src/migrate.rs), on real databases: a
//! database a newer release migrated is accepted, an edited migration is refused, and on Postgres
//! nodes take turns on sqlx's own lock without deadlocking a concurrent index build, and rebuild an
//! index such a build left INVALID. The policy that keeps this safe (expand-only migrations) is
//! checked by `migration_policy.rs`; the same with real `liveshop serve` processes is
//! `http/tests/rolling.rs`.

use std::time::Duration;

use liveshop_storage::testing::fresh_store;
use liveshop_storage::{Backend, SqlStore};
use sqlx::migrate::{Migrate, Migration, MigrationType};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Executor, PgConnection, SqlSafeStr};

/// A version no migration of this tree will have for a long time: "a newer release".
const FUTURE: i64 = 29_991_231_000_000;

async fn raw(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.expect("raw connection")
}

/// A migration of a newer release, as this binary would be handed it.
fn future_migration(version: i64, sql: &str, no_tx: bool) -> Migration {
    Migration::new(
        version,
        "future".into(),
        MigrationType::Simple,
        AssertSqlSafe(sql.to_owned()).into_sql_str(),
        no_tx,
    )
}

/// What a newer release's node would have done: an additive migration applied and recorded.
async fn record_newer_release(conn: &mut AnyConnection) {
    conn.execute("CREATE TABLE future_things (id TEXT NOT NULL PRIMARY KEY, note TEXT)")
        .await
        .expect("new table");
    conn.execute("ALTER TABLE streams ADD COLUMN future_note TEXT")
        .await
        .expect("new column");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'future things', TRUE, $2, 0)",
    )
    .bind(FUTURE)
    .bind(vec![7u8; 48])
    .execute(&mut *conn)
    .await
    .expect("recorded");
}

/// The error and its sources, joined, as the log line of a failed start shows them.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

async fn a_database_a_newer_release_migrated_is_accepted(backend: Backend) {
    let (db, store) = fresh_store(backend).await;
    let mut conn = raw(db.url()).await;
    record_newer_release(&mut conn).await;

    // An old node restarting on it (a crash, a scale-out, a rollback).
    let restarted = SqlStore::connect(db.url()).await.expect("connect");
    restarted
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("{backend:?}: {}", chain(&e)));
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
        .fetch_all(&mut conn)
        .await
        .expect("versions");
    assert!(versions.contains(&FUTURE), "{versions:?}");
    restarted.close().await;
    store.close().await;
}

async fn an_edited_migration_is_refused(backend: Backend) {
    let (db, store) = fresh_store(backend).await;
    let mut conn = raw(db.url()).await;
    let first: i64 = sqlx::query_scalar("SELECT MIN(version) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .expect("a version");
    sqlx::query("UPDATE _sqlx_migrations SET checksum = $1 WHERE version = $2")
        .bind(vec![0u8; 48])
        .bind(first)
        .execute(&mut conn)
        .await
        .expect("tampered");
    let err = store
        .migrate()
        .await
        .expect_err("an edited migration is refused");
    let text = chain(&err);
    assert!(
        text.contains(&format!(
            "migration {first} was previously applied but has been modified"
        )),
        "{backend:?}: {text}"
    );
    store.close().await;
}

macro_rules! both {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn on_sqlite() {
                    super::$case(liveshop_storage::Backend::Sqlite).await;
                }

                #[tokio::test]
                async fn on_postgres() {
                    super::$case(liveshop_storage::Backend::Postgres).await;
                }
            }
        )*
    };
}

both! {
    a_database_a_newer_release_migrated_is_accepted,
    an_edited_migration_is_refused,
}

/// Nodes of every release take turns on one lock: while a session holds sqlx's own migration lock
/// (what a node of a release that lets sqlx lock does), this binary waits for it.
#[tokio::test]
async fn nodes_take_turns_on_the_lock_sqlx_takes() {
    let (db, store) = fresh_store(Backend::Postgres).await;
    let mut holder = PgConnection::connect(db.url()).await.expect("connect");
    holder.lock().await.expect("sqlx's lock");

    let waiting = SqlStore::connect(db.url()).await.expect("connect");
    let task = tokio::spawn(async move { waiting.migrate().await.map(|()| waiting) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !task.is_finished(),
        "migrating did not wait for the lock sqlx holds"
    );

    holder.unlock().await.expect("unlock");
    let waiting = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("migrates once the lock is free")
        .expect("task")
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    waiting.close().await;
    store.close().await;
}

/// Polls pg_stat_activity until a `CREATE INDEX CONCURRENTLY` waits on a lock.
async fn wait_until_the_build_waits(conn: &mut PgConnection) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND query LIKE '%CREATE INDEX CONCURRENTLY%' AND wait_event_type = 'Lock' \
             AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index build never waited for the open write transaction"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn index_is_valid(conn: &mut PgConnection, index: &str) -> bool {
    sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = $1",
    )
    .bind(index)
    .fetch_one(&mut *conn)
    .await
    .expect("the index exists")
}

/// Two new nodes start together while an old one writes: the first builds an index concurrently
/// (it waits for the old node's open write transaction), the second waits for the migration lock
/// meanwhile. Blocked inside Postgres (`pg_advisory_lock`, what sqlx does) the second node would
/// hold a snapshot the build waits for, a deadlock Postgres breaks by failing one of them; polling,
/// both start and the index is valid.
#[tokio::test]
async fn a_concurrent_index_build_does_not_deadlock_with_a_node_waiting_for_the_lock() {
    let (db, store) = fresh_store(Backend::Postgres).await;
    let build = future_migration(
        FUTURE,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS future_chat_text ON chat_messages (text)",
        true,
    );
    let mut old_node = PgConnection::connect(db.url()).await.expect("connect");
    let mut open_write = old_node.begin().await.expect("begin");
    open_write
        .execute("LOCK TABLE chat_messages IN ROW EXCLUSIVE MODE")
        .await
        .expect("an open write transaction");

    let first = SqlStore::connect(db.url()).await.expect("connect");
    let first_build = build.clone();
    let first = tokio::spawn(async move {
        first
            .migrate_with_extra(vec![first_build])
            .await
            .map(|()| first)
    });
    let mut observer = PgConnection::connect(db.url()).await.expect("connect");
    wait_until_the_build_waits(&mut observer).await;

    let second = SqlStore::connect(db.url()).await.expect("connect");
    let second = tokio::spawn(async move {
        second
            .migrate_with_extra(vec![build])
            .await
            .map(|()| second)
    });
    // Long enough for the second node to be waiting, and for Postgres to look for deadlocks
    // (deadlock_timeout is 1 s by default) once the build goes on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!first.is_finished() && !second.is_finished());
    open_write.commit().await.expect("commit");

    for (name, task) in [("first", first), ("second", second)] {
        let node = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap_or_else(|_| panic!("the {name} node migrates in time"))
            .expect("task")
            .unwrap_or_else(|e| panic!("the {name} node failed to migrate: {}", chain(&e)));
        node.close().await;
    }
    assert!(index_is_valid(&mut observer, "future_chat_text").await);
    store.close().await;
}

/// A concurrent build that failed (or whose node was killed) leaves an INVALID index and no
/// record; the next node to migrate drops it and builds it again, where `IF NOT EXISTS` alone would
/// record the migration over an index that never serves.
#[tokio::test]
async fn an_index_an_interrupted_build_left_invalid_is_built_again() {
    let (db, store) = fresh_store(Backend::Postgres).await;
    let mut conn = PgConnection::connect(db.url()).await.expect("connect");
    conn.execute(
        "INSERT INTO tenants (id, slug, name, created_at) \
         VALUES ('t1', 'one', 'Same', 0), ('t2', 'two', 'Same', 0)",
    )
    .await
    .expect("tenants");
    let failed = conn
        .execute("CREATE UNIQUE INDEX CONCURRENTLY future_tenant_name ON tenants (name)")
        .await;
    assert!(failed.is_err(), "the unique build fails on duplicates");
    assert!(!index_is_valid(&mut conn, "future_tenant_name").await);

    let rebuild = future_migration(
        FUTURE,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS future_tenant_name ON tenants (name)",
        true,
    );
    store
        .migrate_with_extra(vec![rebuild])
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    assert!(index_is_valid(&mut conn, "future_tenant_name").await);
    let unique: bool = sqlx::query_scalar(
        "SELECT i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE c.relname = 'future_tenant_name'",
    )
    .fetch_one(&mut conn)
    .await
    .expect("index");
    assert!(!unique, "the migration's index, not the failed one");
    store.close().await;
}
