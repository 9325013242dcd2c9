//! Schema migrations, one folder per dialect, embedded in the binary, applied at every start in a
//! way a rolling deploy survives.
//!
//! During a rolling deploy nodes of two releases share one database: the first new node applies
//! the new migrations while old nodes keep serving, and an old node may restart (a crash, a
//! scale-out, a rollback) on the migrated database. So:
//! - migrations this binary does not know, newer than its own, are a newer release's: logged and
//!   tolerated (sqlx would refuse to start). That is safe because every migration is expand-only
//!   (`storage/tests/migrations.rs` enforces it; docs/OPERATIONS.md has the policy);
//! - a migration this binary knows whose text differs from what was applied (an edited migration)
//!   is still refused: sqlx compares checksums;
//! - on Postgres, nodes take turns on sqlx's migration lock, but wait for it by polling
//!   ([`lock`]), never blocked inside Postgres, so a `CREATE INDEX CONCURRENTLY` of the node
//!   holding it cannot deadlock with a node waiting for it; indexes that such a build left INVALID
//!   when it was interrupted are dropped before migrations run again ([`leftovers`]).

mod leftovers;
mod lock;

use std::collections::BTreeMap;

use liveshop_engine::storage::StorageError;
use sqlx::AnyConnection;
use sqlx::migrate::{MigrateError, Migration, Migrator};
use sqlx::{Connection, Row};

use crate::{Backend, SqlStore};

/// Migrations for SQLite files.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
/// Migrations for Postgres databases.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

/// Where sqlx records applied migrations (its default table name).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// Why migrating failed. Each is fatal at start: the node does not serve.
#[derive(Debug, thiserror::Error)]
enum MigrationFailed {
    /// The database could not be reached or a bookkeeping query failed.
    #[error("reading the applied migrations failed")]
    Database(#[source] sqlx::Error),
    /// sqlx refused or failed a migration (an edited migration's checksum, a failing statement).
    #[error("applying migrations failed")]
    Apply(#[source] MigrateError),
}

/// The applied migrations compared with the ones this binary carries.
#[derive(Debug, Default, PartialEq, Eq)]
struct Comparison {
    /// Versions this binary has that the database has not applied yet: this node applies them.
    pending: Vec<i64>,
    /// Applied versions newer than every migration of this binary: a newer release applied them.
    newer: Vec<i64>,
    /// Applied versions this binary lacks although they are older than its newest migration: a
    /// migration added out of order on another branch, or a database of a different lineage.
    unknown_older: Vec<i64>,
}

/// Compares the versions this binary knows with the versions the database has applied.
fn compare(known: &[i64], applied: &[i64]) -> Comparison {
    let newest_known = known.iter().copied().max();
    let mut comparison = Comparison {
        pending: known
            .iter()
            .copied()
            .filter(|v| !applied.contains(v))
            .collect(),
        ..Comparison::default()
    };
    for &version in applied.iter().filter(|v| !known.contains(v)) {
        match newest_known {
            Some(newest) if version < newest => comparison.unknown_older.push(version),
            _ => comparison.newer.push(version),
        }
    }
    comparison.pending.sort_unstable();
    comparison.newer.sort_unstable();
    comparison.unknown_older.sort_unstable();
    comparison
}

/// `20270101000000 (add_x), ...` for a log line.
fn describe(versions: &[i64], descriptions: &BTreeMap<i64, String>) -> String {
    versions
        .iter()
        .map(|v| match descriptions.get(v) {
            Some(d) => format!("{v} ({d})"),
            None => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl SqlStore {
    /// Brings the schema up to date (idempotent; safe to call on every start, on any number of
    /// nodes at once). Tolerates migrations of a newer release (see the module documentation).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let embedded = match self.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        self.migrate_set(embedded.iter().cloned().collect()).await
    }

    /// As [`SqlStore::migrate`], with `extra` migrations after this binary's own: a test plays a
    /// newer release's node with it, through the very code a node runs at start.
    #[cfg(feature = "test-util")]
    pub async fn migrate_with_extra(&self, extra: Vec<Migration>) -> Result<(), StorageError> {
        let embedded = match self.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        let mut migrations: Vec<Migration> = embedded.iter().cloned().collect();
        migrations.extend(extra);
        self.migrate_set(migrations).await
    }

    async fn migrate_set(&self, migrations: Vec<Migration>) -> Result<(), StorageError> {
        let mut migrator = Migrator::with_migrations(migrations);
        // Applied migrations of a newer release are expected during a rolling deploy.
        migrator.set_ignore_missing(true);
        // Postgres: `lock` takes sqlx's lock itself, by polling. SQLite has no lock (one node).
        migrator.set_locking(false);
        let result = match self.backend {
            Backend::Sqlite => {
                let mut conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::unavailable)?;
                run(&migrator, &mut conn, self.backend).await
            }
            Backend::Postgres => {
                // A session of its own, closed afterwards, so the lock never outlives it.
                let conn = self
                    .pool
                    .acquire()
                    .await
                    .map_err(crate::error::unavailable)?;
                let mut conn = conn.detach();
                let result = match lock::acquire(&mut conn).await {
                    Ok(key) => {
                        let result = run(&migrator, &mut conn, self.backend).await;
                        lock::release(&mut conn, key).await;
                        result
                    }
                    Err(err) => Err(MigrationFailed::Database(err)),
                };
                if let Err(err) = conn.close().await {
                    tracing::debug!(error = %err, "closing the migration connection failed");
                }
                result
            }
        };
        result.map_err(|err| StorageError::Unavailable(Box::new(err)))?;
        if self.backend == Backend::Postgres {
            self.prepare_warm_connections().await;
        }
        Ok(())
    }

    /// The connections the pool opened before the tables existed could not prepare the group
    /// commit (`after_connect` does it for later ones): prepare it on each of them now, holding
    /// them all at once so each is a different connection.
    async fn prepare_warm_connections(&self) {
        let mut held = Vec::new();
        for _ in 0..self.pool.num_idle() {
            match self.pool.try_acquire() {
                Some(conn) => held.push(conn),
                None => break,
            }
        }
        for conn in &mut held {
            crate::claims::prepare_group_commit(&mut *conn).await;
        }
    }
}

/// Compares, logs, clears leftovers when something is to be applied, and applies (with the
/// Postgres lock held by the caller).
async fn run(
    migrator: &Migrator,
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<(), MigrationFailed> {
    let applied = applied(conn, backend)
        .await
        .map_err(MigrationFailed::Database)?;
    let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
    let versions: Vec<i64> = applied.keys().copied().collect();
    let comparison = compare(&known, &versions);
    if !comparison.newer.is_empty() {
        tracing::warn!(
            newer = describe(&comparison.newer, &applied),
            newest_known = known.iter().max().copied().unwrap_or_default(),
            "the database has migrations newer than this binary: a newer release applied them; \
             they are expand-only, so this node runs on the schema as it is (roll forward when you can)"
        );
    }
    if !comparison.unknown_older.is_empty() {
        tracing::warn!(
            unknown = describe(&comparison.unknown_older, &applied),
            "the database has migrations this binary does not know, older than its newest one \
             (added out of order, or another lineage's database); running on it anyway"
        );
    }
    if !comparison.pending.is_empty() {
        if backend == Backend::Postgres {
            leftovers::drop_invalid_indexes(conn)
                .await
                .map_err(MigrationFailed::Database)?;
        }
        let names: BTreeMap<i64, String> = migrator
            .iter()
            .map(|m| (m.version, m.description.to_string()))
            .collect();
        tracing::info!(
            pending = describe(&comparison.pending, &names),
            "applying migrations"
        );
    }
    // `run_direct` is what `Migrator::run` calls once it holds a connection; called directly, the
    // future stays `Send` for any connection lifetime (`run` on a `&mut` connection is not, a
    // known sqlx limitation), so a node may migrate inside a spawned task.
    migrator
        .run_direct(None, conn, false)
        .await
        .map_err(MigrationFailed::Apply)
}

/// The applied migrations, version to description (empty on a database never migrated).
async fn applied(
    conn: &mut AnyConnection,
    backend: Backend,
) -> Result<BTreeMap<i64, String>, sqlx::Error> {
    let exists_sql = match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'"
        }
    };
    let exists: i64 = sqlx::query_scalar(exists_sql).fetch_one(&mut *conn).await?;
    if exists == 0 {
        return Ok(BTreeMap::new());
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version, description FROM {MIGRATIONS_TABLE} ORDER BY version"
    )))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get::<i64, _>(0)?, row.try_get::<String, _>(1)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_has_everything_pending() {
        let c = compare(&[1, 2, 3], &[]);
        assert_eq!(c.pending, vec![1, 2, 3]);
        assert!(c.newer.is_empty() && c.unknown_older.is_empty());
    }

    #[test]
    fn versions_of_a_newer_release_are_newer_not_pending() {
        let c = compare(&[1, 2, 3], &[1, 2, 3, 5, 4]);
        assert_eq!(
            c,
            Comparison {
                pending: vec![],
                newer: vec![4, 5],
                unknown_older: vec![],
            }
        );
    }

    #[test]
    fn an_unknown_version_below_the_newest_known_is_told_apart() {
        let c = compare(&[1, 3], &[1, 2, 3]);
        assert_eq!(c.unknown_older, vec![2]);
        assert!(c.newer.is_empty() && c.pending.is_empty());
    }

    #[test]
    fn a_binary_behind_on_a_database_ahead_applies_only_its_own_gaps() {
        // The binary knows 1, 2, 4; the database has 1, 3 (an out-of-order branch) and 5.
        let c = compare(&[1, 2, 4], &[1, 3, 5]);
        assert_eq!(c.pending, vec![2, 4]);
        assert_eq!(c.unknown_older, vec![3]);
        assert_eq!(c.newer, vec![5]);
    }

    #[test]
    fn descriptions_are_listed_with_their_versions() {
        let names = BTreeMap::from([(7, "add_x".to_owned())]);
        assert_eq!(describe(&[7, 9], &names), "7 (add_x), 9");
    }
}
