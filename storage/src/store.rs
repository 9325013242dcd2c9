//! The engine's storage traits, one per aggregate, delegating to the query modules.

use async_trait::async_trait;
use liveshop_engine::ids::{ChatId, ClaimId, DropId, ProductId, StreamId, TenantId, UserId};
use liveshop_engine::moderation::{Ban, ChatSettings, ModerationEntry, Mute};
use liveshop_engine::records::{
    ChatMessage, Claim, Drop, DropStatus, Product, Stream, StreamStatus, Tenant, UserSeen,
};
use liveshop_engine::storage::{
    CatalogStore, ChatStore, DropStore, Fence, Health, ModerationStore, NewClaim, StorageResult,
    StreamModeration, StreamStore, TenantStore,
};
use liveshop_engine::timestamp::Timestamp;

use crate::SqlStore;
use crate::error::unavailable;

#[async_trait]
impl Health for SqlStore {
    async fn ping(&self) -> StorageResult<()> {
        let ping = async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
                .await
                .map_err(unavailable)?;
            Ok(())
        };
        self.bounded(ping).await
    }
}

#[async_trait]
impl TenantStore for SqlStore {
    async fn create_tenant(&self, tenant: &Tenant) -> StorageResult<()> {
        self.bounded(self.insert_tenant(tenant)).await
    }

    async fn tenant(&self, id: &TenantId) -> StorageResult<Option<Tenant>> {
        self.bounded(self.select_tenant(id)).await
    }

    async fn record_user_seen(&self, user: &UserSeen) -> StorageResult<()> {
        self.bounded(self.upsert_user_seen(user)).await
    }

    async fn record_users_seen(&self, users: &[UserSeen]) -> StorageResult<()> {
        self.bounded(self.upsert_users_seen(users)).await
    }
}

#[async_trait]
impl CatalogStore for SqlStore {
    async fn create_product(&self, product: &Product) -> StorageResult<()> {
        self.bounded(self.insert_product(product)).await
    }

    async fn products(&self, tenant: &TenantId) -> StorageResult<Vec<Product>> {
        self.bounded(self.select_products(tenant)).await
    }

    async fn product(&self, tenant: &TenantId, id: &ProductId) -> StorageResult<Option<Product>> {
        self.bounded(self.select_product(tenant, id)).await
    }
}

#[async_trait]
impl StreamStore for SqlStore {
    async fn create_stream(&self, stream: &Stream) -> StorageResult<()> {
        self.bounded(self.insert_stream(stream)).await
    }

    async fn stream(&self, id: &StreamId) -> StorageResult<Option<Stream>> {
        self.bounded(self.select_stream(id)).await
    }

    async fn streams(
        &self,
        tenant: &TenantId,
        status: Option<StreamStatus>,
    ) -> StorageResult<Vec<Stream>> {
        self.bounded(self.select_streams(tenant, status)).await
    }

    async fn live_streams(&self) -> StorageResult<Vec<Stream>> {
        self.bounded(self.select_live_streams()).await
    }

    async fn update_stream_status(
        &self,
        id: &StreamId,
        status: StreamStatus,
        started_at: Option<Timestamp>,
        ended_at: Option<Timestamp>,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.bounded(self.write_stream_status(id, status, started_at, ended_at, fence))
            .await
    }

    async fn set_pinned(
        &self,
        id: &StreamId,
        product: Option<&ProductId>,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.bounded(self.write_pinned(id, product, fence)).await
    }

    async fn next_epoch(&self, id: &StreamId) -> StorageResult<u64> {
        self.bounded(self.bump_epoch(id)).await
    }

    async fn take_fence(&self, scope: &str) -> StorageResult<u64> {
        self.bounded(self.raise_fence(scope)).await
    }

    async fn fence_of(&self, scope: &str) -> StorageResult<Option<u64>> {
        self.bounded(self.read_fence(scope)).await
    }
}

#[async_trait]
impl ChatStore for SqlStore {
    async fn insert_chat(&self, messages: &[ChatMessage], fence: &Fence) -> StorageResult<()> {
        self.bounded(self.append_chat(messages, fence)).await
    }

    async fn recent_chat(&self, stream: &StreamId, limit: u32) -> StorageResult<Vec<ChatMessage>> {
        self.bounded(self.select_recent_chat(stream, limit)).await
    }
}

#[async_trait]
impl DropStore for SqlStore {
    async fn create_drop(&self, drop: &Drop, fence: &Fence) -> StorageResult<()> {
        self.bounded(self.insert_drop(drop, fence)).await
    }

    async fn drop_by_id(&self, id: &DropId) -> StorageResult<Option<Drop>> {
        self.bounded(self.select_drop(id)).await
    }

    async fn drops_of_stream(&self, stream: &StreamId) -> StorageResult<Vec<Drop>> {
        self.bounded(self.select_drops_of_stream(stream)).await
    }

    async fn set_drop_status(
        &self,
        id: &DropId,
        status: DropStatus,
        closed_reason: Option<&str>,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.bounded(self.write_drop_status(id, status, closed_reason, fence))
            .await
    }

    async fn commit_claims(
        &self,
        drop: &DropId,
        claims: &[NewClaim],
        fence: &Fence,
    ) -> StorageResult<()> {
        self.bounded(self.write_claims(drop, claims, fence)).await
    }

    async fn claim_by_key(
        &self,
        drop: &DropId,
        user: &UserId,
        key: &str,
    ) -> StorageResult<Option<Claim>> {
        self.bounded(self.select_claim_by_key(drop, user, key))
            .await
    }

    async fn claim_by_id(&self, id: &ClaimId) -> StorageResult<Option<Claim>> {
        self.bounded(self.select_claim_by_id(id)).await
    }

    async fn claims_of_drop(&self, drop: &DropId) -> StorageResult<Vec<Claim>> {
        self.bounded(self.select_claims_of_drop(drop)).await
    }

    async fn claims_of_user(&self, tenant: &TenantId, user: &UserId) -> StorageResult<Vec<Claim>> {
        self.bounded(self.select_claims_of_user(tenant, user)).await
    }

    async fn expire_claims(
        &self,
        drop: &DropId,
        now: Timestamp,
        fence: &Fence,
    ) -> StorageResult<Vec<Claim>> {
        self.bounded(self.expire_due_claims(drop, now.millis(), fence))
            .await
    }

    async fn mark_claim_paid(&self, id: &ClaimId, fence: &Fence) -> StorageResult<Option<Claim>> {
        self.bounded(self.pay_claim(id, fence)).await
    }

    async fn drops_to_recover(&self) -> StorageResult<Vec<Drop>> {
        self.bounded(self.select_drops_to_recover()).await
    }
}

#[async_trait]
impl ModerationStore for SqlStore {
    async fn delete_chat(
        &self,
        stream: &StreamId,
        message: &ChatId,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.bounded(self.write_chat_deletion(stream, message, entry, fence))
            .await
    }

    async fn chat_message(
        &self,
        stream: &StreamId,
        message: &ChatId,
    ) -> StorageResult<Option<(ChatMessage, bool)>> {
        self.bounded(self.select_chat_message(stream, message))
            .await
    }

    async fn mute(&self, mute: &Mute, entry: &ModerationEntry, fence: &Fence) -> StorageResult<()> {
        self.bounded(self.write_mute(mute, entry, fence)).await
    }

    async fn set_chat_settings(
        &self,
        stream: &StreamId,
        settings: &ChatSettings,
        entry: &ModerationEntry,
        fence: &Fence,
    ) -> StorageResult<()> {
        self.bounded(self.write_chat_settings(stream, settings, entry, fence))
            .await
    }

    async fn stream_moderation(
        &self,
        stream: &StreamId,
        now: Timestamp,
    ) -> StorageResult<StreamModeration> {
        self.bounded(self.select_stream_moderation(stream, now))
            .await
    }

    async fn ban(&self, ban: &Ban, entries: &[ModerationEntry]) -> StorageResult<()> {
        self.bounded(self.write_ban(ban, entries)).await
    }

    async fn unban(
        &self,
        tenant: &TenantId,
        user: &UserId,
        entries: &[ModerationEntry],
    ) -> StorageResult<bool> {
        self.bounded(self.delete_ban(tenant, user, entries)).await
    }

    async fn active_bans(&self, now: Timestamp) -> StorageResult<Vec<Ban>> {
        self.bounded(self.select_active_bans(now)).await
    }

    async fn bans_of_tenant(&self, tenant: &TenantId, now: Timestamp) -> StorageResult<Vec<Ban>> {
        self.bounded(self.select_bans_of_tenant(tenant, now)).await
    }

    async fn moderation_log(
        &self,
        stream: &StreamId,
        limit: u32,
    ) -> StorageResult<Vec<ModerationEntry>> {
        self.bounded(self.select_moderation_log(stream, limit))
            .await
    }

    async fn chatted_with_seller(
        &self,
        tenant: &TenantId,
        seller: &UserId,
        user: &UserId,
    ) -> StorageResult<bool> {
        self.bounded(self.select_chatted_with_seller(tenant, seller, user))
            .await
    }
}
