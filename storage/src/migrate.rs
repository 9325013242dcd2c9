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
            .map_err(|err| StorageError::Unavailable(Box::new(err)))?;
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
