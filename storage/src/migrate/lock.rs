//! The Postgres migration lock, waited for by polling.
//!
//! sqlx takes a session advisory lock with `SELECT pg_advisory_lock(key)`, which blocks inside
//! Postgres. A node blocked there holds a snapshot, and `CREATE INDEX CONCURRENTLY` waits for every
//! transaction holding an older snapshot to end: the node building the index under the lock waits
//! for the node waiting for the lock, a deadlock Postgres breaks by failing one of them (and a
//! failed concurrent build leaves an INVALID index behind). Polling `pg_try_advisory_lock` keeps a
//! waiting node idle between short statements, so a concurrent build never waits for it.
//!
//! The key is sqlx's own (derived from the database's name), so nodes of releases that still let
//! sqlx lock take turns with these too.

use std::time::{Duration, Instant};

use sqlx::AnyConnection;

/// How often a waiting node asks for the lock again.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often a waiting node says it is still waiting.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Takes the migration lock of the connection's database, waiting as long as another node holds
/// it (its session ends, and the lock with it, when that node dies). Returns the key to release.
pub(super) async fn acquire(conn: &mut AnyConnection) -> Result<i64, sqlx::Error> {
    let database: String = sqlx::query_scalar("SELECT current_database()::TEXT")
        .fetch_one(&mut *conn)
        .await?;
    let key = key_of(&database);
    let started = Instant::now();
    let mut next_log = LOG_EVERY;
    loop {
        let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        if taken {
            return Ok(key);
        }
        if started.elapsed() >= next_log {
            tracing::info!(
                waited_s = started.elapsed().as_secs(),
                "waiting for the migration lock: another node is applying migrations"
            );
            next_log += LOG_EVERY;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Releases the lock (closing the session would too: a failure here is only logged).
pub(super) async fn release(conn: &mut AnyConnection, key: i64) {
    let released = sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .fetch_one(&mut *conn)
        .await;
    if !matches!(released, Ok(true)) {
        tracing::warn!(
            ?released,
            "releasing the migration lock failed; it goes with the session"
        );
    }
}

/// sqlx's migration lock key for a database: `0x3d32ad9e × CRC-32(name)`. Both factors are below
/// 2³², and 0x3d32ad9e below 2³⁰, so the product stays below 2⁶² and cannot overflow.
pub(crate) fn key_of(database: &str) -> i64 {
    0x3d32_ad9e_i64 * i64::from(crc32(database.as_bytes()))
}

/// CRC-32 (ISO-HDLC, as in zlib and Ethernet), bit by bit: run once per start on a short name.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffff_u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn each_database_has_its_own_key() {
        assert_ne!(key_of("a"), key_of("b"));
        assert!(key_of("some database name") > 0);
    }
}
