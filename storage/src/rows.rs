//! Column lists and row decoding, shared by the query modules.

use liveshop_engine::ids::{ChatId, ClaimId, DropId, ProductId, Slug, StreamId, TenantId, UserId};
use liveshop_engine::moderation::{Ban, ChatSettings, ModerationAction, ModerationEntry, Mute};
use liveshop_engine::records::{
    ChatAuthor, ChatMessage, Claim, ClaimStatus, Drop, DropStatus, Product, Stream, StreamStatus,
    Tenant, UserSeen,
};
use liveshop_engine::timestamp::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

/// A stored text that is not one of the enum spellings the schema allows.
#[derive(Debug, thiserror::Error)]
#[error("unexpected {what} {value:?} in storage")]
struct BadValue {
    what: &'static str,
    value: String,
}

fn bad(what: &'static str, value: String) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(BadValue { what, value }))
}

fn text(row: &AnyRow, column: &str) -> Result<String, sqlx::Error> {
    row.try_get(column)
}

fn ts(row: &AnyRow, column: &str) -> Result<Timestamp, sqlx::Error> {
    row.try_get::<i64, _>(column).map(Timestamp)
}

fn opt_ts(row: &AnyRow, column: &str) -> Result<Option<Timestamp>, sqlx::Error> {
    row.try_get::<Option<i64>, _>(column)
        .map(|v| v.map(Timestamp))
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! tenant_columns {
    () => {
        "id, slug, name, created_at"
    };
}
pub(crate) use tenant_columns;

pub(crate) fn tenant(row: &AnyRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: TenantId::from_trusted(text(row, "id")?),
        slug: Slug::from_trusted(text(row, "slug")?),
        name: text(row, "name")?,
        created_at: ts(row, "created_at")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! user_seen_columns {
    () => {
        "tenant_id, user_id, name, role, last_seen_at"
    };
}
pub(crate) use user_seen_columns;

pub(crate) fn user_seen(row: &AnyRow) -> Result<UserSeen, sqlx::Error> {
    Ok(UserSeen {
        tenant: TenantId::from_trusted(text(row, "tenant_id")?),
        id: UserId::from_trusted(text(row, "user_id")?),
        name: text(row, "name")?,
        role: text(row, "role")?,
        last_seen_at: ts(row, "last_seen_at")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! product_columns {
    () => {
        "id, tenant_id, sku, title, price_cents, currency, image_url"
    };
}
pub(crate) use product_columns;

pub(crate) fn product(row: &AnyRow) -> Result<Product, sqlx::Error> {
    Ok(Product {
        id: ProductId::from_trusted(text(row, "id")?),
        tenant: TenantId::from_trusted(text(row, "tenant_id")?),
        sku: text(row, "sku")?,
        title: text(row, "title")?,
        price_cents: row.try_get("price_cents")?,
        currency: text(row, "currency")?,
        image_url: row.try_get("image_url")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! stream_columns {
    () => {
        "id, tenant_id, seller_id, title, status, scheduled_at, \
     started_at, ended_at, pinned_product_id"
    };
}
pub(crate) use stream_columns;

pub(crate) fn stream(row: &AnyRow) -> Result<Stream, sqlx::Error> {
    let status = text(row, "status")?;
    Ok(Stream {
        id: StreamId::from_trusted(text(row, "id")?),
        tenant: TenantId::from_trusted(text(row, "tenant_id")?),
        seller: UserId::from_trusted(text(row, "seller_id")?),
        title: text(row, "title")?,
        status: StreamStatus::parse(&status).ok_or_else(|| bad("stream status", status))?,
        scheduled_at: opt_ts(row, "scheduled_at")?,
        started_at: opt_ts(row, "started_at")?,
        ended_at: opt_ts(row, "ended_at")?,
        pinned: row
            .try_get::<Option<String>, _>("pinned_product_id")?
            .map(ProductId::from_trusted),
        viewers: 0,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! chat_columns {
    () => {
        "id, stream_id, tenant_id, user_id, user_name, text, at"
    };
}
pub(crate) use chat_columns;

pub(crate) fn chat(row: &AnyRow) -> Result<ChatMessage, sqlx::Error> {
    Ok(ChatMessage {
        id: ChatId::from_trusted(text(row, "id")?),
        stream: StreamId::from_trusted(text(row, "stream_id")?),
        tenant: TenantId::from_trusted(text(row, "tenant_id")?),
        user: ChatAuthor {
            id: UserId::from_trusted(text(row, "user_id")?),
            name: text(row, "user_name")?,
        },
        text: text(row, "text")?,
        at: ts(row, "at")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! drop_columns {
    () => {
        "id, tenant_id, stream_id, product_id, quantity, reserved, \
     sold, per_user_limit, hold_seconds, status, opened_at, ends_at, closed_reason"
    };
}
pub(crate) use drop_columns;

pub(crate) fn drop_record(row: &AnyRow) -> Result<Drop, sqlx::Error> {
    let status = text(row, "status")?;
    let quantity: i64 = row.try_get("quantity")?;
    let reserved: i64 = row.try_get("reserved")?;
    let sold: i64 = row.try_get("sold")?;
    Ok(Drop {
        id: DropId::from_trusted(text(row, "id")?),
        tenant: TenantId::from_trusted(text(row, "tenant_id")?),
        stream: StreamId::from_trusted(text(row, "stream_id")?),
        product: ProductId::from_trusted(text(row, "product_id")?),
        quantity,
        remaining: quantity - reserved - sold,
        reserved,
        sold,
        per_user_limit: row.try_get("per_user_limit")?,
        hold_seconds: row.try_get("hold_seconds")?,
        status: DropStatus::parse(&status).ok_or_else(|| bad("drop status", status))?,
        opened_at: ts(row, "opened_at")?,
        ends_at: opt_ts(row, "ends_at")?,
        closed_reason: row.try_get("closed_reason")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! claim_columns {
    () => {
        "id, tenant_id, drop_id, user_id, quantity, status, \
     idempotency_key, created_at, expires_at"
    };
}
pub(crate) use claim_columns;

pub(crate) fn claim(row: &AnyRow) -> Result<Claim, sqlx::Error> {
    let status = text(row, "status")?;
    Ok(Claim {
        id: ClaimId::from_trusted(text(row, "id")?),
        tenant: TenantId::from_trusted(text(row, "tenant_id")?),
        drop: DropId::from_trusted(text(row, "drop_id")?),
        user: UserId::from_trusted(text(row, "user_id")?),
        quantity: row.try_get("quantity")?,
        status: ClaimStatus::parse(&status).ok_or_else(|| bad("claim status", status))?,
        idempotency_key: text(row, "idempotency_key")?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! mute_columns {
    () => {
        "stream_id, user_id, until"
    };
}
pub(crate) use mute_columns;

pub(crate) fn mute(row: &AnyRow) -> Result<Mute, sqlx::Error> {
    Ok(Mute {
        stream: StreamId::from_trusted(text(row, "stream_id")?),
        user: UserId::from_trusted(text(row, "user_id")?),
        until: ts(row, "until")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! chat_settings_columns {
    () => {
        "slow_mode_seconds, blocked_words"
    };
}
pub(crate) use chat_settings_columns;

/// A settings row; `blocked_words` is a JSON array of strings.
pub(crate) fn chat_settings(row: &AnyRow) -> Result<ChatSettings, sqlx::Error> {
    let slow: i64 = row.try_get("slow_mode_seconds")?;
    let words = text(row, "blocked_words")?;
    Ok(ChatSettings {
        slow_mode_seconds: u32::try_from(slow)
            .map_err(|_| bad("slow mode seconds", slow.to_string()))?,
        blocked_words: serde_json::from_str(&words)
            .map_err(|err| sqlx::Error::Decode(Box::new(err)))?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! ban_columns {
    () => {
        "tenant_id, user_id, until, reason, banned_by, banned_at"
    };
}
pub(crate) use ban_columns;

pub(crate) fn ban(row: &AnyRow) -> Result<Ban, sqlx::Error> {
    Ok(Ban {
        tenant: TenantId::from_trusted(text(row, "tenant_id")?),
        user: UserId::from_trusted(text(row, "user_id")?),
        until: opt_ts(row, "until")?,
        reason: row.try_get("reason")?,
        by: UserId::from_trusted(text(row, "banned_by")?),
        at: ts(row, "banned_at")?,
    })
}

/// Column list matching the decoder below, for `concat!` into static SQL.
macro_rules! moderation_entry_columns {
    () => {
        "stream_id, at, actor_id, action, target, reason"
    };
}
pub(crate) use moderation_entry_columns;

pub(crate) fn moderation_entry(row: &AnyRow) -> Result<ModerationEntry, sqlx::Error> {
    let action = text(row, "action")?;
    Ok(ModerationEntry {
        stream: StreamId::from_trusted(text(row, "stream_id")?),
        at: ts(row, "at")?,
        actor: UserId::from_trusted(text(row, "actor_id")?),
        action: ModerationAction::parse(&action).ok_or_else(|| bad("moderation action", action))?,
        target: text(row, "target")?,
        reason: row.try_get("reason")?,
    })
}
