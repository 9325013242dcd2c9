//! Opening a pool from a URL, with per-backend settings.

use std::time::Duration;

use liveshop_engine::storage::{StorageError, StorageResult};
use sqlx::any::AnyPoolOptions;
use sqlx::{Connection, Executor};

use crate::SqlStore;
use crate::error::unavailable;
use crate::reach::Reach;

/// Which database a [`SqlStore`] talks to; the few dialect differences (migrations, pool sizing)
/// hang off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file (WAL mode), for single-node deployments, development and tests.
    Sqlite,
    /// A Postgres server, for production and scale-out.
    Postgres,
}

impl Backend {
    /// Picks the backend from a connection URL's scheme (`sqlite:`, `postgres:` or `postgresql:`).
    pub fn from_url(url: &str) -> Option<Self> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }

    /// Short lower-case name, for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Connections per pool. SQLite serialises writers anyway (WAL lets readers run beside them), so a
/// few connections suffice; Postgres gets more to overlap round trips.
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
/// Connections kept open (and their group commit statement prepared) even when idle, so a rush
/// does not wait for a connection to be opened while buyers wait for their batch.
const POSTGRES_MIN_CONNECTIONS: u32 = 4;
/// How long a caller waits for a pooled connection before the store reports itself unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// A pooled connection idle for longer than this is pinged before it is handed out. sqlx's default
/// pings on EVERY acquire: one more round trip before each group commit, and under load every
/// round trip waits for the engine and the database backend to be scheduled.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(30);

/// Applied on every new SQLite connection. `journal_mode` sticks to the file; the others are
/// per connection. sqlx already sets foreign_keys and a 5 s busy timeout; they are repeated here so
/// the settings are visible in one place.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA foreign_keys = ON",
];

/// A connection error that is not about the database being down.
#[derive(Debug, thiserror::Error)]
#[error("unsupported database url (expected sqlite:, postgres: or postgresql:)")]
struct UnsupportedUrl;

impl SqlStore {
    /// Opens a pool on `url`, choosing the backend from its scheme. A SQLite URL without a `mode`
    /// gets `mode=rwc`, so the file is created when missing. Does not run migrations
    /// (see [`SqlStore::migrate`]).
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)
            .ok_or_else(|| StorageError::Unavailable(Box::new(UnsupportedUrl)))?;
        let url = match backend {
            Backend::Sqlite => sqlite_url_with_create(url),
            Backend::Postgres => url.to_owned(),
        };
        let reach = (backend == Backend::Postgres).then(|| Reach::new(&url));
        let watch = reach.clone();
        let options = AnyPoolOptions::new()
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .before_acquire(move |conn, meta| {
                let stale = watch
                    .as_ref()
                    .is_some_and(|r| r.predates_abandonment(meta.age));
                Box::pin(async move {
                    if stale {
                        // It may hold a transaction a given-up call left open: close it.
                        return Ok(false);
                    }
                    if meta.idle_for > PING_WHEN_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            });
        let options = match backend {
            Backend::Sqlite => options
                .max_connections(SQLITE_MAX_CONNECTIONS)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        for pragma in SQLITE_PRAGMAS {
                            conn.execute(*pragma).await?;
                        }
                        Ok(())
                    })
                }),
            Backend::Postgres => options
                .max_connections(POSTGRES_MAX_CONNECTIONS)
                .min_connections(POSTGRES_MIN_CONNECTIONS)
                .after_connect(|conn, _meta| {
                    Box::pin(async move {
                        crate::claims::prepare_group_commit(conn).await;
                        Ok(())
                    })
                }),
        };
        let pool = options.connect(&url).await.map_err(unavailable)?;
        tracing::debug!(backend = backend.as_str(), "storage pool opened");
        Ok(Self {
            pool,
            backend,
            reach,
        })
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs one storage call: on Postgres within [`crate::DEADLINE`], and failing at once while
    /// the server is known to be unreachable (see [`crate::reach`]); on SQLite (a local file)
    /// as it is.
    pub(crate) async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = StorageResult<T>>,
    ) -> StorageResult<T> {
        match &self.reach {
            Some(reach) => reach.bounded(call).await,
            None => call.await,
        }
    }

    /// Closes the pool, waiting for checked-out connections to come back (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Adds `mode=rwc` to a SQLite file URL that names no mode, so a missing file is created.
fn sqlite_url_with_create(url: &str) -> String {
    if url.contains(":memory:") || url.contains("mode=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_the_scheme() {
        assert_eq!(Backend::from_url("sqlite://x.db"), Some(Backend::Sqlite));
        assert_eq!(Backend::from_url("sqlite::memory:"), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db"),
            Some(Backend::Postgres)
        );
        assert_eq!(Backend::from_url("mysql://h/db"), None);
    }

    #[test]
    fn sqlite_urls_create_the_file_unless_a_mode_is_given() {
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db"),
            "sqlite://a.db?mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            sqlite_url_with_create("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
        assert_eq!(sqlite_url_with_create("sqlite::memory:"), "sqlite::memory:");
    }

    #[cfg(feature = "test-util")]
    #[tokio::test]
    async fn sqlite_connections_use_wal_and_the_configured_pragmas() {
        use sqlx::Row;

        let db = crate::testing::fresh_sqlite();
        let store = SqlStore::connect(db.url()).await.unwrap();
        let mut conn = store.pool.acquire().await.unwrap();
        for (pragma, expected) in [
            ("PRAGMA journal_mode", "wal"),
            ("PRAGMA synchronous", "1"),
            ("PRAGMA busy_timeout", "5000"),
            ("PRAGMA foreign_keys", "1"),
        ] {
            let row = sqlx::query(pragma).fetch_one(&mut *conn).await.unwrap();
            let value = row
                .try_get::<String, _>(0)
                .or_else(|_| row.try_get::<i64, _>(0).map(|v| v.to_string()))
                .unwrap();
            assert_eq!(value, expected, "{pragma}");
        }
        drop(conn);
        store.close().await;
    }
}
