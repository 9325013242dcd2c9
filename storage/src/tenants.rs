//! Tenants, the users seen in their tokens, and their product catalogues.

use liveshop_engine::ids::{ProductId, TenantId, UserId};
use liveshop_engine::records::{Product, Tenant, UserSeen};
use liveshop_engine::storage::StorageResult;

use crate::SqlStore;
use crate::error::{classify, conflict_on, unavailable};
use crate::rows::{self, product_columns, tenant_columns, user_seen_columns};

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

    /// Upserts many users seen in one transaction.
    pub(crate) async fn upsert_users_seen(&self, users: &[UserSeen]) -> StorageResult<()> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        for user in users {
            sqlx::query(
                "INSERT INTO users_seen (tenant_id, user_id, name, role, last_seen_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (tenant_id, user_id) DO UPDATE SET \
                 name = excluded.name, role = excluded.role, last_seen_at = excluded.last_seen_at",
            )
            .bind(user.tenant.as_str())
            .bind(user.id.as_str())
            .bind(user.name.as_str())
            .bind(user.role.as_str())
            .bind(user.last_seen_at.millis())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
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
