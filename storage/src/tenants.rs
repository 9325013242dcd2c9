//! Tenants, the users seen in their tokens, and their product catalogues.

use std::collections::BTreeMap;

use liveshop_engine::ids::{ProductId, TenantId, UserId};
use liveshop_engine::records::{Product, Tenant, UserSeen};
use liveshop_engine::storage::StorageResult;

use crate::SqlStore;
use crate::error::{classify, conflict_on, unavailable};
use crate::rows::{self, product_columns, tenant_columns, user_seen_columns};
use crate::sql::values_placeholders;
use sqlx::AssertSqlSafe;

/// Bound values per users-seen row.
const USER_BINDS: usize = 5;
/// Users per upsert statement: 500 × 5 binds, well under both databases' limits.
const USERS_PER_STATEMENT: usize = 500;

impl SqlStore {
    pub(crate) async fn insert_tenant(&self, tenant: &Tenant) -> StorageResult<()> {
        sqlx::query("INSERT INTO tenants (id, slug, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant.id.as_str())
            .bind(tenant.slug.as_str())
            .bind(tenant.name.as_str())
            .bind(tenant.created_at.millis())
            .execute(&self.pool)
            .await
            .map_err(|err| conflict_on(err, "slug", "slug"))?;
        Ok(())
    }

    pub(crate) async fn select_tenant(&self, id: &TenantId) -> StorageResult<Option<Tenant>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            tenant_columns!(),
            " FROM tenants WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref()
            .map(rows::tenant)
            .transpose()
            .map_err(unavailable)
    }

    pub(crate) async fn upsert_user_seen(&self, user: &UserSeen) -> StorageResult<()> {
        self.upsert_users_seen(std::slice::from_ref(user)).await
    }

    /// Upserts many users seen in one transaction, as multi-row statements: one round trip per
    /// `USERS_PER_STATEMENT` users instead of one per user (a crowd of 10,000 joining at once
    /// otherwise sends 10,000 statements while the drops of the show are being committed).
    pub(crate) async fn upsert_users_seen(&self, users: &[UserSeen]) -> StorageResult<()> {
        // One row per user (the latest sighting): Postgres refuses an upsert that touches the
        // same row twice in one statement.
        let mut latest: BTreeMap<(&str, &str), &UserSeen> = BTreeMap::new();
        for user in users {
            let slot = latest
                .entry((user.tenant.as_str(), user.id.as_str()))
                .or_insert(user);
            if user.last_seen_at >= slot.last_seen_at {
                *slot = user;
            }
        }
        let rows: Vec<&UserSeen> = latest.into_values().collect();
        let mut tx = self.pool.begin().await.map_err(classify)?;
        for chunk in rows.chunks(USERS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO users_seen (tenant_id, user_id, name, role, last_seen_at) VALUES {} \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
                 name = excluded.name, role = excluded.role, last_seen_at = excluded.last_seen_at",
                values_placeholders(self.backend, chunk.len(), USER_BINDS)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for user in chunk {
                query = query
                    .bind(user.tenant.as_str())
                    .bind(user.id.as_str())
                    .bind(user.name.as_str())
                    .bind(user.role.as_str())
                    .bind(user.last_seen_at.millis());
            }
            query.execute(&mut *tx).await.map_err(classify)?;
        }
        tx.commit().await.map_err(classify)?;
        Ok(())
    }

    /// Users seen in a tenant's tokens, by user id: the member list for operators (not part of the
    /// engine's trait).
    pub async fn users_seen(&self, tenant: &TenantId) -> StorageResult<Vec<UserSeen>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_seen_columns!(),
            " FROM users_seen WHERE tenant_id = $1 ORDER BY user_id"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::user_seen)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    /// One user as last seen in a tenant's tokens (not part of the engine's trait).
    pub async fn user_seen(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> StorageResult<Option<UserSeen>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_seen_columns!(),
            " FROM users_seen WHERE tenant_id = $1 AND user_id = $2"
        ))
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref()
            .map(rows::user_seen)
            .transpose()
            .map_err(unavailable)
    }

    pub(crate) async fn insert_product(&self, product: &Product) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO products (id, tenant_id, sku, title, price_cents, currency, image_url) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(product.id.as_str())
        .bind(product.tenant.as_str())
        .bind(product.sku.as_str())
        .bind(product.title.as_str())
        .bind(product.price_cents)
        .bind(product.currency.as_str())
        .bind(product.image_url.as_deref())
        .execute(&self.pool)
        .await
        .map_err(|err| conflict_on(err, "sku", "sku"))?;
        Ok(())
    }

    pub(crate) async fn select_products(&self, tenant: &TenantId) -> StorageResult<Vec<Product>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            product_columns!(),
            " FROM products WHERE tenant_id = $1 ORDER BY seq"
        ))
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.iter()
            .map(rows::product)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    pub(crate) async fn select_product(
        &self,
        tenant: &TenantId,
        id: &ProductId,
    ) -> StorageResult<Option<Product>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            product_columns!(),
            " FROM products WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref()
            .map(rows::product)
            .transpose()
            .map_err(unavailable)
    }
}
