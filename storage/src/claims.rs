//! Claims: the group commit of reservations, expiry and payment. Every change of a claim's status
//! moves the drop's counts and the user's holdings in the same transaction, so the CHECK
//! constraints on `drops` and `holdings` guard the invariants whatever the caller does.

use std::collections::BTreeMap;

use liveshop_engine::ids::{ClaimId, DropId, TenantId, UserId};
use liveshop_engine::records::{Claim, ClaimStatus};
use liveshop_engine::storage::{Fence, NewClaim, StorageError, StorageResult};
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Row, Transaction};

use crate::error::{classify, unavailable};
use crate::measure::{BatchKind, BatchTimer};
use crate::rows::{self, claim_columns};
use crate::sql::values_placeholders;
use crate::{Backend, SqlStore, fence};

/// Bound values per claim row and per holdings row.
const CLAIM_BINDS: usize = 9;
const HOLDING_BINDS: usize = 4;
/// Rows per INSERT statement: 500 × 9 = 4500 binds, well under SQLite's 32766 and Postgres' 65535.
const ROWS_PER_STATEMENT: usize = 500;

/// Postgres: a whole batch in ONE statement, so it is one round trip and its own transaction.
/// Under load every round trip waits for both the engine and the database backend to be
/// scheduled; a BEGIN, three statements and a COMMIT (plus a Parse for every new batch size) cost
/// far more than the rows. The batch travels as two JSON arrays, so the text never changes and the
/// prepared statement is reused; `json_to_recordset` parses each array once (extracting fields
/// with `->>` re-parsed every element for every field and cost twice as much). The drop row is
/// updated (and locked) first: the inserts read its `per_user_limit` from it and insert nothing
/// when the drop does not exist. The CHECK constraints apply as in the multi-statement form; any
/// violation aborts the whole statement. A drop of one unit per buyer gets no `holdings` rows: its
/// claims are marked `one_per_buyer` (from the drop row) and a partial unique index allows one
/// live claim per buyer (migration `20261127000001`).
const PG_WRITE_CLAIMS: &str = "\
WITH d AS (
    UPDATE drops SET reserved = reserved + $2 WHERE id = $1 RETURNING id, per_user_limit
), h AS (
    INSERT INTO holdings (drop_id, user_id, units, per_user_limit)
    SELECT d.id, x.usr, x.units, d.per_user_limit
    FROM d, ROWS FROM (json_to_recordset($3::json) AS (\"user\" TEXT, units BIGINT))
         WITH ORDINALITY AS x(usr, units, n)
    WHERE d.per_user_limit > 1
    ORDER BY x.n
    ON CONFLICT (drop_id, user_id) DO UPDATE SET units = holdings.units + excluded.units
), c AS (
    INSERT INTO claims (id, tenant_id, drop_id, user_id, quantity, status, idempotency_key,
                        created_at, expires_at, one_per_buyer)
    SELECT x.id, x.tenant, d.id, x.usr, x.quantity, 'reserved', x.key, x.created_at, x.expires_at,
           d.per_user_limit = 1
    FROM d, ROWS FROM (json_to_recordset($4::json) AS (id TEXT, tenant TEXT, \"user\" TEXT,
             quantity BIGINT, key TEXT, created_at BIGINT, expires_at BIGINT))
         WITH ORDINALITY AS x(id, tenant, usr, quantity, key, created_at, expires_at, n)
    ORDER BY x.n
)
SELECT count(*) AS found FROM d";

/// Runs the group commit once, empty, on a new Postgres connection, so the statement is parsed,
/// planned and cached before a rush needs it: the pool hands batches to whichever connection is
/// idle, and a first use on each would add a Parse round trip to a batch that buyers wait for. It
/// names no drop, so it changes nothing. Before the migrations have run (the pool's first
/// connection runs them) the tables do not exist and this fails quietly; that connection then
/// prepares the statement on first use.
pub(crate) async fn prepare_group_commit(conn: &mut sqlx::AnyConnection) {
    let warmed = sqlx::query_scalar::<_, i64>(PG_WRITE_CLAIMS)
        .bind("")
        .bind(0_i64)
        .bind("[]")
        .bind("[]")
        .fetch_one(conn)
        .await;
    if let Err(e) = warmed {
        tracing::debug!(error = %e, "group commit statement not prepared on this connection yet");
    }
}

/// One claim row of [`PG_WRITE_CLAIMS`]'s JSON array.
#[derive(serde::Serialize)]
struct ClaimRow<'a> {
    id: &'a str,
    tenant: &'a str,
    user: &'a str,
    quantity: i64,
    key: &'a str,
    created_at: i64,
    expires_at: i64,
}

/// One holdings row of [`PG_WRITE_CLAIMS`]'s JSON array.
#[derive(serde::Serialize)]
struct HoldingRow<'a> {
    user: &'a str,
    units: i64,
}

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
        fence: &Fence,
    ) -> StorageResult<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let timer = BatchTimer::start(BatchKind::Claims, claims.len());
        let result = self.write_claims_tx(drop, claims, fence).await;
        timer.finish();
        result
    }

    async fn write_claims_tx(
        &self,
        drop: &DropId,
        claims: &[NewClaim],
        fence: &Fence,
    ) -> StorageResult<()> {
        check_batch(drop, claims)?;
        let per_user = units_per_user(
            claims
                .iter()
                .map(|c| (c.claim.user.as_str(), c.claim.quantity)),
        )?;
        let total = total(&per_user)?;
        match self.backend {
            Backend::Postgres => {
                self.write_claims_pg(drop, claims, per_user, total, fence)
                    .await
            }
            Backend::Sqlite => {
                self.write_claims_sqlite(drop, claims, per_user, total, fence)
                    .await
            }
        }
    }

    /// Postgres: the batch as one statement ([`PG_WRITE_CLAIMS`]); behind an owner's fence, that
    /// statement and the fence check in one transaction.
    async fn write_claims_pg(
        &self,
        drop: &DropId,
        claims: &[NewClaim],
        per_user: BTreeMap<&str, i64>,
        total: i64,
        fence: &Fence,
    ) -> StorageResult<()> {
        let holdings: Vec<HoldingRow<'_>> = per_user
            .into_iter()
            .map(|(user, units)| HoldingRow { user, units })
            .collect();
        let rows: Vec<ClaimRow<'_>> = claims
            .iter()
            .map(|NewClaim { claim }| ClaimRow {
                id: claim.id.as_str(),
                tenant: claim.tenant.as_str(),
                user: claim.user.as_str(),
                quantity: claim.quantity,
                key: claim.idempotency_key.as_str(),
                created_at: claim.created_at.millis(),
                expires_at: claim.expires_at.millis(),
            })
            .collect();
        let encode = |e: serde_json::Error| StorageError::Unavailable(Box::new(e));
        let holdings = serde_json::to_string(&holdings).map_err(encode)?;
        let rows = serde_json::to_string(&rows).map_err(encode)?;
        let query = sqlx::query_scalar(PG_WRITE_CLAIMS)
            .bind(drop.as_str())
            .bind(total)
            .bind(holdings)
            .bind(rows);
        let found: i64 = if matches!(fence, Fence::Unfenced) {
            query.fetch_one(&self.pool).await.map_err(classify)?
        } else {
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
            fence::check(&mut tx, fence).await?;
            let found = query.fetch_one(&mut *tx).await.map_err(classify)?;
            if found > 0 {
                tx.commit().await.map_err(unavailable)?;
            }
            found
        };
        if found == 0 {
            return Err(StorageError::Constraint(format!("no drop {drop}")));
        }
        Ok(())
    }

    /// SQLite: one transaction of multi-row INSERTs (no network round trips to save, and SQLite
    /// has no data-modifying common table expressions).
    async fn write_claims_sqlite(
        &self,
        drop: &DropId,
        claims: &[NewClaim],
        per_user: BTreeMap<&str, i64>,
        total: i64,
        fence: &Fence,
    ) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        fence::check(&mut tx, fence).await?;
        // First statement writes (the fence check too, when there is one), so SQLite takes its
        // write lock (waiting up to busy_timeout) before any read: batches of one drop serialise
        // here.
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
                values_placeholders(self.backend, chunk.len(), HOLDING_BINDS)
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
                values_placeholders(self.backend, chunk.len(), CLAIM_BINDS)
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
        fence: &Fence,
    ) -> StorageResult<Vec<Claim>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        fence::check(&mut tx, fence).await?;
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

    pub(crate) async fn pay_claim(
        &self,
        id: &ClaimId,
        fence: &Fence,
    ) -> StorageResult<Option<Claim>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        fence::check(&mut tx, fence).await?;
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
