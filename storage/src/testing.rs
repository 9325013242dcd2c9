//! Throwaway databases for tests (feature `test-util`): a fresh SQLite file or a fresh, uniquely
//! named Postgres database, removed again when the guard is dropped, also when a test panics.
//!
//! ```no_run
//! # async fn example() {
//! use liveshop_storage::Backend;
//! use liveshop_storage::testing::fresh_store;
//!
//! let (db, store) = fresh_store(Backend::Postgres).await;
//! // ... use `store`, or start a server on `db.url()` ...
//! # drop((store, db));
//! # }
//! ```

use std::path::PathBuf;

use sqlx::migrate::MigrateDatabase;

use crate::{Backend, SqlStore};

/// Environment variable naming the Postgres server (any database on it) that test databases are
/// created on.
pub const TEST_DATABASE_URL_VAR: &str = "LIVESHOP_TEST_DATABASE_URL";
/// Used when [`TEST_DATABASE_URL_VAR`] is not set.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A test database that exists for as long as this guard does.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    backend: Backend,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    /// Remove the SQLite file and its WAL companions.
    Files(PathBuf),
    /// `DROP DATABASE ... WITH (FORCE)` on the server.
    Database,
}

impl TestDb {
    /// Connection URL of the database, for [`SqlStore::connect`] or a server under test.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Files(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            Cleanup::Database => {
                // Drop may run inside or outside a runtime (and during a panic): do the async
                // work on a thread of its own with a small runtime.
                let url = self.url.clone();
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    runtime
                        .block_on(sqlx::Postgres::force_drop_database(&url))
                        .map_err(std::io::Error::other)
                })
                .join();
                if !matches!(dropped, Ok(Ok(()))) {
                    tracing::warn!(url = %self.url, "could not drop test database");
                }
            }
        }
    }
}

fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh SQLite file URL under the system temp folder (the file is created on connect).
pub fn fresh_sqlite() -> TestDb {
    let path = std::env::temp_dir().join(format!("liveshop_test_{}.db", random_hex()));
    TestDb {
        url: format!("sqlite://{}?mode=rwc", path.display()),
        backend: Backend::Sqlite,
        cleanup: Cleanup::Files(path),
    }
}

/// Creates a uniquely named database (`liveshop_test_<hex>`) on the server named by
/// `LIVESHOP_TEST_DATABASE_URL` (default [`DEFAULT_TEST_DATABASE_URL`]).
///
/// # Panics
/// When the server cannot be reached or refuses to create the database: tests cannot go on.
pub async fn fresh_postgres() -> TestDb {
    let base = std::env::var(TEST_DATABASE_URL_VAR)
        .unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned());
    let url = with_database(&base, &format!("liveshop_test_{}", random_hex()));
    if let Err(err) = sqlx::Postgres::create_database(&url).await {
        panic!("cannot create a test database via {TEST_DATABASE_URL_VAR}={base}: {err}");
    }
    TestDb {
        url,
        backend: Backend::Postgres,
        cleanup: Cleanup::Database,
    }
}

/// A fresh empty database of the given backend.
pub async fn fresh(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => fresh_sqlite(),
        Backend::Postgres => fresh_postgres().await,
    }
}

/// A fresh database with the schema applied, and a store connected to it.
///
/// Keep the guard alive as long as the store is used.
///
/// # Panics
/// When the database cannot be created, connected to or migrated.
pub async fn fresh_store(backend: Backend) -> (TestDb, SqlStore) {
    let db = fresh(backend).await;
    let store = SqlStore::connect(db.url())
        .await
        .unwrap_or_else(|err| panic!("connect to {}: {err:?}", db.url()));
    store
        .migrate()
        .await
        .unwrap_or_else(|err| panic!("migrate {}: {err:?}", db.url()));
    (db, store)
}

/// `base` with its database name (the URL path) replaced by `name`, keeping any query string.
fn with_database(base: &str, name: &str) -> String {
    let (without_query, query) = match base.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (base, None),
    };
    let authority_start = without_query.find("://").map_or(0, |i| i + 3);
    let path_start = without_query[authority_start..]
        .find('/')
        .map_or(without_query.len(), |i| authority_start + i);
    let mut url = format!("{}/{name}", &without_query[..path_start]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_name_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "t1"),
            "postgres://u@h:5432/t1"
        );
        assert_eq!(with_database("postgres://u@h", "t1"), "postgres://u@h/t1");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
    }
}
