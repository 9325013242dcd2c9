//! Fencing tokens checked where the write happens: the `fences` table keeps, per scope, the highest
//! token that has written, and an owner's write first raises it or is refused, in the same
//! transaction as the write. An unfenced write (single-node mode) skips all of this: no extra
//! statement, no transaction it would not have had anyway.

use liveshop_engine::storage::{Fence, StorageError, StorageResult};
use sqlx::any::{AnyArguments, AnyQueryResult};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection};

use crate::SqlStore;
use crate::error::{classify, unavailable};

/// Raises the scope's token to the write's, or returns no row when a higher token has written.
/// The row lock it takes (Postgres) or the write lock (SQLite) holds until the transaction ends,
/// so a stale owner's write either commits before the newer owner's first write or is refused.
const RAISE_FENCE: &str = "\
INSERT INTO fences (scope, token) VALUES ($1, $2)
ON CONFLICT (scope) DO UPDATE SET token = excluded.token WHERE fences.token <= excluded.token
RETURNING token";

/// Takes the next token of a scope: the first owner gets 1, each later one the token after the
/// highest ever taken or written.
const TAKE_FENCE: &str = "\
INSERT INTO fences (scope, token) VALUES ($1, 1)
ON CONFLICT (scope) DO UPDATE SET token = fences.token + 1
RETURNING token";

/// Checks `fence` on `conn`, which must be inside the transaction of the write it guards: nothing
/// for [`Fence::Unfenced`]; for an owner, records its token for the scope or fails with
/// [`StorageError::Fenced`] when a higher one has already written there.
pub(crate) async fn check(conn: &mut AnyConnection, fence: &Fence) -> StorageResult<()> {
    let Fence::Owner { scope, token } = fence else {
        return Ok(());
    };
    let stored = i64::try_from(*token)
        .map_err(|_| StorageError::Invalid(format!("fencing token {token} is above 2^63 - 1")))?;
    let raised = sqlx::query(RAISE_FENCE)
        .bind(scope.as_str())
        .bind(stored)
        .fetch_optional(conn)
        .await
        .map_err(classify)?;
    match raised {
        Some(_) => Ok(()),
        None => Err(StorageError::Fenced {
            scope: scope.clone(),
            token: *token,
        }),
    }
}

impl SqlStore {
    /// The highest token of `scope` (see `StreamStore::fence_of`).
    pub(crate) async fn read_fence(&self, scope: &str) -> StorageResult<Option<u64>> {
        let row = sqlx::query("SELECT token FROM fences WHERE scope = $1")
            .bind(scope)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|row| {
            let token: i64 = sqlx::Row::try_get(&row, "token").map_err(unavailable)?;
            u64::try_from(token).map_err(|err| StorageError::Unavailable(Box::new(err)))
        })
        .transpose()
    }

    /// Raises `scope`'s token by one and returns it (see `StreamStore::take_fence`).
    pub(crate) async fn raise_fence(&self, scope: &str) -> StorageResult<u64> {
        let row = sqlx::query(TAKE_FENCE)
            .bind(scope)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)?;
        let token: i64 = sqlx::Row::try_get(&row, "token").map_err(unavailable)?;
        u64::try_from(token).map_err(|err| StorageError::Unavailable(Box::new(err)))
    }

    /// Runs one write statement behind `fence`: on the pool as it is when unfenced, or in a
    /// transaction after [`check`] for an owner. Database errors are [`classify`]'d.
    pub(crate) async fn execute_fenced(
        &self,
        query: Query<'_, Any, AnyArguments>,
        fence: &Fence,
    ) -> StorageResult<AnyQueryResult> {
        if matches!(fence, Fence::Unfenced) {
            return query.execute(&self.pool).await.map_err(classify);
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        check(&mut tx, fence).await?;
        let result = query.execute(&mut *tx).await.map_err(classify)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(result)
    }
}
