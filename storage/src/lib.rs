//! SQLite and Postgres implementation of the engine's storage boundary
//! ([`liveshop_engine::storage::Storage`]).
//!
//! One [`SqlStore`] serves both databases through sqlx's `Any` driver: ids are TEXT, instants BIGINT
//! unix milliseconds, money and counts BIGINT, and every query is written once with `$n` placeholders.
//! Only the migrations come in two dialects. The invariants of contract v1 (no oversell, per-user
//! limit) are enforced by CHECK constraints as well as by the engine.

mod chat;
mod claims;
mod connect;
mod drops;
mod error;
mod fence;
mod measure;
mod migrate;
mod moderation;
mod reach;
mod rows;
mod sql;
mod store;
mod streams;
mod tenants;
#[cfg(feature = "test-util")]
pub mod testing;

pub use connect::Backend;
pub use reach::{DEADLINE, PROBE_EVERY, PROBE_TIMEOUT, SLOW};

use sqlx::AnyPool;

/// The database behind the engine: a pool over SQLite or Postgres with one set of queries.
///
/// Cheap to clone (the pool is reference counted) and safe to share between tasks.
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Postgres only: whether the server is reachable, bounding every call (see [`reach`]).
    reach: Option<std::sync::Arc<reach::Reach>>,
}
