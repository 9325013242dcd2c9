//! Why a storage call failed, in terms the callers act on.

/// Why a storage call failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A unique value is already taken; the text names which (e.g. `slug`, `sku`).
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A database constraint that guards an invariant refused the write (e.g. an oversell).
    #[error("constraint violated: {0}")]
    Constraint(String),
    /// The database refused a value of the row itself (a byte or a number it cannot hold): the
    /// text says what, for the log. Validation should have caught it; the row is at fault, not the
    /// database, so writing it again will fail again.
    #[error("value refused: {0}")]
    Invalid(String),
    /// The write carried a [`Fence::Owner`](super::Fence::Owner) token older than one that has
    /// already written for the same scope: the writer lost its ownership to a newer owner and
    /// nothing was written. The rows are not at fault (the new owner may write them), so this is
    /// not a row fault; the stale owner must stop writing for the scope, not retry.
    #[error("fenced off: a newer owner holds {scope} (this write had token {token})")]
    Fenced {
        /// The scope of the refused fence (e.g. a stream id).
        scope: String,
        /// The stale token the write carried.
        token: u64,
    },
    /// The database failed or could not be reached.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StorageError {
    /// Whether the rows written are at fault (a conflict, a constraint, a refused value) rather
    /// than the database (unreachable, timed out, failed) or the writer (fenced off by a newer
    /// owner). A batch that fails for its rows is split to find and set aside the ones at fault
    /// ([`write_isolating`](super::write_isolating)); a batch that fails for the database is
    /// retried or failed closed as a whole, and one that is fenced off is left to the new owner.
    pub fn is_row_fault(&self) -> bool {
        !matches!(self, Self::Unavailable(_) | Self::Fenced { .. })
    }
}

/// Result of storage calls.
pub type StorageResult<T> = Result<T, StorageError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fenced_write_is_not_the_rows_fault() {
        let fenced = StorageError::Fenced {
            scope: "str_1".to_owned(),
            token: 3,
        };
        assert!(!fenced.is_row_fault());
        assert!(!StorageError::Unavailable("down".into()).is_row_fault());
        assert!(StorageError::Constraint("oversold".to_owned()).is_row_fault());
    }
}
