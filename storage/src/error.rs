//! Turning sqlx errors into the engine's [`StorageError`].

use liveshop_engine::storage::StorageError;
use sqlx::error::{DatabaseError, ErrorKind};

/// Named constraints of the schema and what their refusal means, for readable `Constraint` texts.
const KNOWN_CONSTRAINTS: &[(&str, &str)] = &[
    (
        "drops_no_oversell",
        "drop would be oversold (reserved + sold > quantity)",
    ),
    (
        "holdings_within_limit",
        "a user would exceed the drop's per-user limit",
    ),
    (
        "claims_one_per_buyer_single",
        "a claim in a one-per-buyer drop must be of one unit",
    ),
    (
        "claims_one_per_buyer",
        "a user would exceed the drop's per-user limit",
    ),
    (
        "idempotency",
        "duplicate idempotency key for this drop and user",
    ),
    (
        "claims_quantity_positive",
        "claim quantity must be positive",
    ),
    ("claims_status_known", "unknown claim status"),
    (
        "drops_quantity_valid",
        "drop quantity, limit and hold must not be negative",
    ),
    ("drops_status_known", "unknown drop status"),
    ("streams_status_known", "unknown stream status"),
];

/// The database failed or could not be reached.
pub(crate) fn unavailable(err: sqlx::Error) -> StorageError {
    StorageError::Unavailable(Box::new(err))
}

/// Constraint refusals become `Constraint` (with a readable text), values the database cannot hold
/// `Invalid`; everything else (connection, timeout, deadlock, server failure) `Unavailable`. The
/// first two blame the row, so a batch that fails with them is split to set the row aside
/// (`liveshop_engine::storage::write_isolating`); the last blames the database.
pub(crate) fn classify(err: sqlx::Error) -> StorageError {
    match err.as_database_error() {
        Some(db) if is_constraint(db) => StorageError::Constraint(describe(db)),
        Some(db) if is_data_exception(db) => StorageError::Invalid(db.message().to_owned()),
        _ => unavailable(err),
    }
}

/// A value the database cannot hold: Postgres' SQLSTATE class 22 "data exception" (a NUL byte in
/// text is 22021, an unsupported `\u0000` escape in JSON 22P05, a number out of range 22003);
/// SQLite's `SQLITE_TOOBIG` (18) and `SQLITE_MISMATCH` (20), in the low byte of its extended code.
fn is_data_exception(db: &dyn DatabaseError) -> bool {
    let Some(code) = db.code() else {
        return false;
    };
    if code.len() == 5 && code.starts_with("22") {
        return true;
    }
    code.parse::<i64>()
        .is_ok_and(|extended| matches!(extended & 0xff, 18 | 20))
}

/// Like [`classify`], but a unique violation whose constraint mentions `needle` becomes
/// `Conflict(field)`.
pub(crate) fn conflict_on(err: sqlx::Error, needle: &str, field: &'static str) -> StorageError {
    if let Some(db) = err.as_database_error()
        && db.kind() == ErrorKind::UniqueViolation
        && names(db).contains(needle)
    {
        return StorageError::Conflict(field);
    }
    classify(err)
}

fn is_constraint(db: &dyn DatabaseError) -> bool {
    matches!(
        db.kind(),
        ErrorKind::UniqueViolation
            | ErrorKind::CheckViolation
            | ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
    )
}

/// Constraint name (Postgres) and message (SQLite names the columns or the constraint there).
fn names(db: &dyn DatabaseError) -> String {
    format!("{} {}", db.constraint().unwrap_or_default(), db.message())
}

fn describe(db: &dyn DatabaseError) -> String {
    let names = names(db);
    KNOWN_CONSTRAINTS
        .iter()
        .find(|(needle, _)| names.contains(needle))
        .map_or_else(|| db.message().to_owned(), |(_, text)| (*text).to_owned())
}
