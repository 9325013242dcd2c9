//! Fencing tokens: room for a write to say which owner makes it, so that in cluster mode storage
//! can refuse the writes of a node that has lost its ownership but does not know it yet (a paused
//! process, a partition, a lease that lapsed mid-batch).

/// Who makes a durable write for a stream or one of its drops.
///
/// - Single-node mode passes [`Fence::Unfenced`]: one process owns every stream, there is nobody
///   to fence off, and storage does no extra work (no extra query, no extra row).
/// - Cluster mode passes [`Fence::Owner`] with the token of the lease the node holds
///   for `scope`. Issuing tokens (a counter that grows with every new lease, e.g. in Redis) and
///   choosing the scope are cluster mode's job; storage only compares them: it keeps, per scope,
///   the highest token that has written, and in the same transaction as the write refuses a lower
///   one with [`StorageError::Fenced`](super::StorageError::Fenced) (writing nothing), or records
///   an equal or higher one and writes.
///
/// Storage does not check that the rows written belong to the scope: the owner names the scope its
/// lease covers (the stream, for the stream's drops and chat too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// No ownership to check (single-node mode).
    Unfenced,
    /// Written by the holder of lease `token` on `scope`.
    Owner {
        /// What the lease covers, e.g. a stream id.
        scope: String,
        /// The lease's fencing token; a later lease on the same scope has a higher one.
        token: u64,
    },
}

impl Fence {
    /// A fence for the holder of lease `token` on `scope`.
    pub fn owner(scope: impl Into<String>, token: u64) -> Self {
        Self::Owner {
            scope: scope.into(),
            token,
        }
    }
}
