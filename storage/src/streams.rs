//! Streams: lifecycle, pinned product and the epoch that fences stream actors.

use std::time::{SystemTime, UNIX_EPOCH};

use liveshop_engine::ids::{ProductId, StreamId, TenantId};
use liveshop_engine::records::{Stream, StreamStatus};
use liveshop_engine::storage::{Fence, StorageError, StorageResult};
use liveshop_engine::timestamp::Timestamp;
use sqlx::Row;

use crate::SqlStore;
use crate::error::{classify, unavailable};
use crate::rows::{self, stream_columns};

/// Wall-clock milliseconds, only for the informational `created_at` column (ordering uses `seq`).
fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl SqlStore {
    pub(crate) async fn insert_stream(&self, stream: &Stream) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO streams (id, tenant_id, seller_id, title, status, scheduled_at, \
             started_at, ended_at, pinned_product_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(stream.id.as_str())
        .bind(stream.tenant.as_str())
        .bind(stream.seller.as_str())
        .bind(stream.title.as_str())
        .bind(stream.status.as_str())
        .bind(stream.scheduled_at.map(Timestamp::millis))
        .bind(stream.started_at.map(Timestamp::millis))
        .bind(stream.ended_at.map(Timestamp::millis))
        .bind(stream.pinned.as_ref().map(ProductId::as_str))
        .bind(now_millis())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    pub(crate) async fn select_stream(&self, id: &StreamId) -> StorageResult<Option<Stream>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            stream_columns!(),
            " FROM streams WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref()
            .map(rows::stream)
            .transpose()
            .map_err(unavailable)
    }

    pub(crate) async fn select_streams(
        &self,
        tenant: &TenantId,
        status: Option<StreamStatus>,
    ) -> StorageResult<Vec<Stream>> {
        let query = match status {
            Some(status) => sqlx::query(concat!(
                "SELECT ",
                stream_columns!(),
                " FROM streams WHERE tenant_id = $1 AND status = $2 ORDER BY seq DESC"
            ))
            .bind(tenant.as_str())
            .bind(status.as_str()),
            None => sqlx::query(concat!(
                "SELECT ",
                stream_columns!(),
                " FROM streams WHERE tenant_id = $1 ORDER BY seq DESC"
            ))
            .bind(tenant.as_str()),
        };
        let rows = query.fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter()
            .map(rows::stream)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    /// Live streams of every tenant, through the partial index `streams_live` (the few live ones,
    /// not every stream ever made).
    pub(crate) async fn select_live_streams(&self) -> StorageResult<Vec<Stream>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            stream_columns!(),
            " FROM streams WHERE status = 'live' ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::stream)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    pub(crate) async fn write_stream_status(
        &self,
        id: &StreamId,
        status: StreamStatus,
        started_at: Option<Timestamp>,
        ended_at: Option<Timestamp>,
        fence: &Fence,
    ) -> StorageResult<()> {
        let query = sqlx::query(
            "UPDATE streams SET status = $2, started_at = $3, ended_at = $4 WHERE id = $1",
        )
        .bind(id.as_str())
        .bind(status.as_str())
        .bind(started_at.map(Timestamp::millis))
        .bind(ended_at.map(Timestamp::millis));
        self.execute_fenced(query, fence).await?;
        Ok(())
    }

    pub(crate) async fn write_pinned(
        &self,
        id: &StreamId,
        product: Option<&ProductId>,
        fence: &Fence,
    ) -> StorageResult<()> {
        let query = sqlx::query("UPDATE streams SET pinned_product_id = $2 WHERE id = $1")
            .bind(id.as_str())
            .bind(product.map(ProductId::as_str));
        self.execute_fenced(query, fence).await?;
        Ok(())
    }

    pub(crate) async fn bump_epoch(&self, id: &StreamId) -> StorageResult<u64> {
        let row = sqlx::query("UPDATE streams SET epoch = epoch + 1 WHERE id = $1 RETURNING epoch")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(row) = row else {
            return Err(StorageError::Constraint(format!("no stream {id}")));
        };
        let epoch: i64 = row.try_get("epoch").map_err(unavailable)?;
        u64::try_from(epoch).map_err(|err| StorageError::Unavailable(Box::new(err)))
    }
}
