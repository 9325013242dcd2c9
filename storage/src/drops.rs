//! Drops: creation, lookups and status changes. Their counts move only in `claims.rs`.

use liveshop_engine::ids::{DropId, StreamId};
use liveshop_engine::records::{Drop, DropStatus};
use liveshop_engine::storage::{Fence, StorageResult};
use liveshop_engine::timestamp::Timestamp;

use crate::SqlStore;
use crate::error::unavailable;
use crate::rows::{self, drop_columns};

impl SqlStore {
    pub(crate) async fn insert_drop(&self, drop: &Drop, fence: &Fence) -> StorageResult<()> {
        let query = sqlx::query(
            "INSERT INTO drops (id, tenant_id, stream_id, product_id, quantity, reserved, sold, \
             per_user_limit, hold_seconds, status, opened_at, ends_at, closed_reason) \
             VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $7, $8, $9, $10, $11)",
        )
        .bind(drop.id.as_str())
        .bind(drop.tenant.as_str())
        .bind(drop.stream.as_str())
        .bind(drop.product.as_str())
        .bind(drop.quantity)
        .bind(drop.per_user_limit)
        .bind(drop.hold_seconds)
        .bind(drop.status.as_str())
        .bind(drop.opened_at.millis())
        .bind(drop.ends_at.map(Timestamp::millis))
        .bind(drop.closed_reason.as_deref());
        self.execute_fenced(query, fence).await?;
        Ok(())
    }

    pub(crate) async fn select_drop(&self, id: &DropId) -> StorageResult<Option<Drop>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            drop_columns!(),
            " FROM drops WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref()
            .map(rows::drop_record)
            .transpose()
            .map_err(unavailable)
    }

    pub(crate) async fn select_drops_of_stream(
        &self,
        stream: &StreamId,
    ) -> StorageResult<Vec<Drop>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            drop_columns!(),
            " FROM drops WHERE stream_id = $1 ORDER BY seq"
        ))
        .bind(stream.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::drop_record)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    pub(crate) async fn write_drop_status(
        &self,
        id: &DropId,
        status: DropStatus,
        closed_reason: Option<&str>,
        fence: &Fence,
    ) -> StorageResult<()> {
        let query = sqlx::query(concat!(
            "UPDATE drops SET status = $2, closed_reason = $3 ",
            // Closed is final: a late open ⇄ sold-out write never reopens a closed drop.
            "WHERE id = $1 AND status <> 'closed'"
        ))
        .bind(id.as_str())
        .bind(status.as_str())
        .bind(closed_reason);
        self.execute_fenced(query, fence).await?;
        Ok(())
    }

    /// Open or sold-out drops with a hold or an end time. `reserved > 0` is "at least one
    /// `reserved` claim": the count moves with the claims' statuses in the same transactions (and
    /// a claim is of one unit or more). Found through the partial index `drops_unclosed`, so the
    /// cost follows the drops not yet closed, not all drops ever made.
    pub(crate) async fn select_drops_to_recover(&self) -> StorageResult<Vec<Drop>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            drop_columns!(),
            " FROM drops WHERE status IN ('open', 'sold_out') ",
            "AND (reserved > 0 OR ends_at IS NOT NULL) ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::drop_record)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }
}
