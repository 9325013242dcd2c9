//! Schema migrations, one folder per dialect, embedded in the binary.

use liveshop_engine::storage::StorageError;
use sqlx::migrate::Migrator;

use crate::{Backend, SqlStore};

/// Migrations for SQLite files.
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");
/// Migrations for Postgres databases.
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");

impl SqlStore {
    /// Brings the schema up to date (idempotent; safe to call on every start).
    pub async fn migrate(&self) -> Result<(), StorageError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE,
            Backend::Postgres => &POSTGRES,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|err| StorageError::Unavailable(Box::new(err)))
    }
}
