//! Claims: the group commit of reservations, expiry and payment. Every change of a claim's status
//! moves the drop's counts and the user's holdings in the same transaction, so the CHECK
//! constraints on `drops` and `holdings` guard the invariants whatever the caller does.

use std::collections::BTreeMap;

use liveshop_engine::ids::{ClaimId, DropId, TenantId, UserId};
use liveshop_engine::records::{Claim, ClaimStatus};
use liveshop_engine::storage::{NewClaim, StorageError, StorageResult};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::SqlStore;
use crate::error::{classify, unavailable};
use crate::measure::{BatchKind, BatchTimer};
use crate::rows::{self, claim_columns};
use crate::sql::values_placeholders;

/// Bound values per claim row and per holdings row.
const CLAIM_BINDS: usize = 9;
const HOLDING_BINDS: usize = 4;
/// Rows per INSERT statement: 500 × 9 = 4500 binds, well under SQLite's 32766 and Postgres' 65535.
const ROWS_PER_STATEMENT: usize = 500;

/// Units per user in a set of claims, in user order (a stable lock order on `holdings` rows).
fn units_per_user<'a>(
    claims: impl Iterator<Item = (&'a str, i64)>,
) -> StorageResult<BTreeMap<&'a str, i64>> {
    let mut per_user = BTreeMap::new();
    for (user, quantity) in claims {
        let units: &mut i64 = per_user.entry(user).or_default();
        *units = units
            .checked_add(quantity)
            .ok_or_else(|| StorageError::Constraint("claim quantities overflow".to_owned()))?;
    }
    Ok(per_user)
}

fn total(per_user: &BTreeMap<&str, i64>) -> StorageResult<i64> {
    per_user
        .values()
        .try_fold(0_i64, |sum, units| sum.checked_add(*units))
        .ok_or_else(|| StorageError::Constraint("claim quantities overflow".to_owned()))
}

/// Refuses claims that do not belong in this batch before anything is written.
fn check_batch(drop: &DropId, claims: &[NewClaim]) -> StorageResult<()> {
    for NewClaim { claim } in claims {
        if claim.drop != *drop {
            return Err(StorageError::Constraint(format!(
                "claim {} is for drop {}, not {drop}",
                claim.id, claim.drop
            )));
        }
        if claim.status != ClaimStatus::Reserved {
            return Err(StorageError::Constraint(format!(
                "claim {} must be written as reserved",
                claim.id
            )));
        }
    }
    Ok(())
}

fn decode_claim(row: Option<AnyRow>) -> StorageResult<Option<Claim>> {
    row.as_ref()
        .map(rows::claim)
        .transpose()
        .map_err(unavailable)
}

fn decode_claims(rows: &[AnyRow]) -> StorageResult<Vec<Claim>> {
    rows.iter()
        .map(rows::claim)
        .collect::<Result<_, _>>()
        .map_err(unavailable)
}

impl SqlStore {
    pub(crate) async fn write_claims(
        &self,
        drop: &DropId,
        claims: &[NewClaim],
    ) -> StorageResult<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let timer = BatchTimer::start(BatchKind::Claims, claims.len());
        let result = self.write_claims_tx(drop, claims).await;
        timer.finish();
        result
    }

    async fn write_claims_tx(&self, drop: &DropId, claims: &[NewClaim]) -> StorageResult<()> {
        check_batch(drop, claims)?;
        let per_user = units_per_user(
            claims
                .iter()
                .map(|c| (c.claim.user.as_str(), c.claim.quantity)),
        )?;
        let total = total(&per_user)?;

        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // First statement writes, so SQLite takes its write lock (waiting up to busy_timeout)
        // before any read, and Postgres locks the drop row: batches of one drop serialise here.
        let row = sqlx::query(
            "UPDATE drops SET reserved = reserved + $2 WHERE id = $1 RETURNING per_user_limit",
        )
        .bind(drop.as_str())
        .bind(total)
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some(row) = row else {
            return Err(StorageError::Constraint(format!("no drop {drop}")));
        };
        let per_user_limit: i64 = row.try_get("per_user_limit").map_err(unavailable)?;

        let holdings: Vec<_> = per_user.into_iter().collect();
        for chunk in holdings.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO holdings (drop_id, user_id, units, per_user_limit) VALUES {} \
                 ON CONFLICT (drop_id, user_id) DO UPDATE SET units = holdings.units + excluded.units",
                values_placeholders(chunk.len(), HOLDING_BINDS)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (user, units) in chunk {
                query = query
                    .bind(drop.as_str())
                    .bind(*user)
                    .bind(*units)
                    .bind(per_user_limit);
            }
            query.execute(&mut *tx).await.map_err(classify)?;
        }

        for chunk in claims.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO claims (id, tenant_id, drop_id, user_id, quantity, status, \
                 idempotency_key, created_at, expires_at) VALUES {}",
                values_placeholders(chunk.len(), CLAIM_BINDS)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for NewClaim { claim } in chunk {
                query = query
                    .bind(claim.id.as_str())
                    .bind(claim.tenant.as_str())
                    .bind(claim.drop.as_str())
                    .bind(claim.user.as_str())
                    .bind(claim.quantity)
                    .bind(ClaimStatus::Reserved.as_str())
                    .bind(claim.idempotency_key.as_str())
                    .bind(claim.created_at.millis())
                    .bind(claim.expires_at.millis());
            }
            query.execute(&mut *tx).await.map_err(classify)?;
        }

        tx.commit().await.map_err(unavailable)
    }

    pub(crate) async fn select_claim_by_key(
        &self,
        drop: &DropId,
        user: &UserId,
        key: &str,
    ) -> StorageResult<Option<Claim>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            claim_columns!(),
            " FROM claims WHERE drop_id = $1 AND user_id = $2 AND idempotency_key = $3"
        ))
        .bind(drop.as_str())
        .bind(user.as_str())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_claim(row)
    }

    pub(crate) async fn select_claim_by_id(&self, id: &ClaimId) -> StorageResult<Option<Claim>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            claim_columns!(),
            " FROM claims WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_claim(row)
    }

    pub(crate) async fn select_claims_of_drop(&self, drop: &DropId) -> StorageResult<Vec<Claim>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            claim_columns!(),
            " FROM claims WHERE drop_id = $1 ORDER BY seq"
        ))
        .bind(drop.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_claims(&rows)
    }

    pub(crate) async fn select_claims_of_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> StorageResult<Vec<Claim>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            claim_columns!(),
            " FROM claims WHERE tenant_id = $1 AND user_id = $2 ORDER BY seq DESC"
        ))
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        decode_claims(&rows)
    }

    pub(crate) async fn expire_due_claims(
        &self,
        drop: &DropId,
        now: i64,
    ) -> StorageResult<Vec<Claim>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let rows = sqlx::query(concat!(
            "UPDATE claims SET status = 'expired' \
             WHERE drop_id = $1 AND status = 'reserved' AND expires_at <= $2 RETURNING ",
            claim_columns!()
        ))
        .bind(drop.as_str())
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        let mut expired = decode_claims(&rows)?;
        if expired.is_empty() {
            tx.commit().await.map_err(unavailable)?;
            return Ok(expired);
        }
        expired.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));

        let per_user = units_per_user(expired.iter().map(|c| (c.user.as_str(), c.quantity)))?;
        let total = total(&per_user)?;
        sqlx::query("UPDATE drops SET reserved = reserved - $2 WHERE id = $1")
            .bind(drop.as_str())
            .bind(total)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for (user, units) in per_user {
            release_holding(&mut tx, drop, user, units).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(expired)
    }

    pub(crate) async fn pay_claim(&self, id: &ClaimId) -> StorageResult<Option<Claim>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(concat!(
            "UPDATE claims SET status = 'paid' WHERE id = $1 AND status = 'reserved' RETURNING ",
            claim_columns!()
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        let Some(row) = row else {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(None);
        };
        let claim = rows::claim(&row).map_err(unavailable)?;
        // Holdings keep counting paid units: only the drop's split between reserved and sold moves.
        sqlx::query("UPDATE drops SET reserved = reserved - $2, sold = sold + $2 WHERE id = $1")
            .bind(claim.drop.as_str())
            .bind(claim.quantity)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(claim))
    }
}

/// Gives a user's expired units back: they no longer count toward the per-user limit.
async fn release_holding(
    tx: &mut Transaction<'_, Any>,
    drop: &DropId,
    user: &str,
    units: i64,
) -> StorageResult<()> {
    sqlx::query("UPDATE holdings SET units = units - $3 WHERE drop_id = $1 AND user_id = $2")
        .bind(drop.as_str())
        .bind(user)
        .bind(units)
        .execute(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(())
}
