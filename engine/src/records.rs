//! The durable records of the product and their JSON shape on the wire (contract v1, section 3).

use serde::Serialize;

use crate::ids::{ChatId, ClaimId, DropId, ProductId, Slug, StreamId, TenantId, UserId};
use crate::timestamp::Timestamp;

/// A shop on the platform; every other record belongs to exactly one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tenant {
    /// Opaque id, also the `tid` claim of the tenant's tokens.
    pub id: TenantId,
    /// Unique short name.
    pub slug: Slug,
    /// Display name.
    pub name: String,
    /// When the tenant was created.
    pub created_at: Timestamp,
}

/// A user as last seen in a token, so chat history keeps display names and operators can list members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserSeen {
    /// The tenant the user acted in.
    pub tenant: TenantId,
    /// The `sub` claim.
    pub id: UserId,
    /// Display name from the `name` claim (or `sub`).
    pub name: String,
    /// Role claim as text.
    pub role: String,
    /// Last time a token of this user was accepted.
    pub last_seen_at: Timestamp,
}

/// An item of a tenant's catalogue that can be pinned and dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Product {
    /// Opaque id.
    pub id: ProductId,
    /// Owning tenant; not on the wire (implied by the caller's token).
    #[serde(skip)]
    pub tenant: TenantId,
    /// Seller's stock keeping unit, unique within the tenant.
    pub sku: String,
    /// Display title.
    pub title: String,
    /// Price in minor units of `currency`.
    pub price_cents: i64,
    /// ISO 4217 code, upper case.
    pub currency: String,
    /// Optional picture.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub image_url: Option<String>,
}

/// Lifecycle of a stream: scheduled → live → ended, never backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Created, not yet on air; viewers may wait in it.
    Scheduled,
    /// On air: chat, reactions and drops are open.
    Live,
    /// Over: read-only.
    Ended,
}

impl StreamStatus {
    /// The wire and storage spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Live => "live",
            Self::Ended => "ended",
        }
    }

    /// Parses the wire and storage spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "scheduled" => Some(Self::Scheduled),
            "live" => Some(Self::Live),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// A show. `viewers` is not stored: it is the number of connections joined right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stream {
    /// Opaque id.
    pub id: StreamId,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The seller who created it and may run it.
    pub seller: UserId,
    /// Display title.
    pub title: String,
    /// Where it is in its lifecycle.
    pub status: StreamStatus,
    /// Announced start, if any.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub scheduled_at: Option<Timestamp>,
    /// When it went live.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub ended_at: Option<Timestamp>,
    /// Product pinned on screen now, if any.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub pinned: Option<ProductId>,
    /// Live connections joined now (filled in by the reader, 0 in storage).
    pub viewers: u64,
}

/// Who wrote a chat message, as shown to other viewers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ChatAuthor {
    /// The author's user id.
    pub id: UserId,
    /// The author's display name.
    pub name: String,
}

/// A chat message as stored and as carried in `chat` events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Opaque id.
    pub id: ChatId,
    /// Stream it was sent in; not in the event data (the event names the stream).
    #[serde(skip)]
    pub stream: StreamId,
    /// Tenant of the stream; not on the wire.
    #[serde(skip)]
    pub tenant: TenantId,
    /// Author.
    pub user: ChatAuthor,
    /// Trimmed text, 1..=500 characters.
    pub text: String,
    /// When the stream accepted it.
    pub at: Timestamp,
}

/// Lifecycle of a drop: open until sold out, closed by time, by the seller or by the stream ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DropStatus {
    /// Accepting claims.
    Open,
    /// Every unit is reserved or sold; expiring holds may reopen it.
    SoldOut,
    /// No longer accepting claims, for good.
    Closed,
}

impl DropStatus {
    /// The wire and storage spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::SoldOut => "sold_out",
            Self::Closed => "closed",
        }
    }

    /// Parses the wire and storage spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "open" => Some(Self::Open),
            "sold_out" => Some(Self::SoldOut),
            "closed" => Some(Self::Closed),
            _ => None,
        }
    }
}

/// A limited quantity of a product offered during a stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Drop {
    /// Opaque id.
    pub id: DropId,
    /// Owning tenant; not on the wire.
    #[serde(skip)]
    pub tenant: TenantId,
    /// Stream it was opened in.
    pub stream: StreamId,
    /// Product offered.
    pub product: ProductId,
    /// Units offered in total.
    pub quantity: i64,
    /// Units neither reserved nor sold.
    pub remaining: i64,
    /// Units held by unpaid reservations.
    pub reserved: i64,
    /// Units paid for.
    pub sold: i64,
    /// Most units one user may hold or buy.
    pub per_user_limit: i64,
    /// How long a reservation is held before it expires unless paid.
    pub hold_seconds: i64,
    /// Where it is in its lifecycle.
    pub status: DropStatus,
    /// When it opened.
    pub opened_at: Timestamp,
    /// When it closes by itself, if it has a duration.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub ends_at: Option<Timestamp>,
    /// Why it closed (`time`, `seller`, `stream_ended`), once closed.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub closed_reason: Option<String>,
}

/// Lifecycle of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClaimStatus {
    /// Units are held for the buyer until `expires_at`.
    Reserved,
    /// The buyer paid; units are sold.
    Paid,
    /// The hold lapsed; units went back to the drop.
    Expired,
}

impl ClaimStatus {
    /// The wire and storage spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Paid => "paid",
            Self::Expired => "expired",
        }
    }

    /// Parses the wire and storage spelling.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reserved" => Some(Self::Reserved),
            "paid" => Some(Self::Paid),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// A buyer's hold on units of a drop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Claim {
    /// Opaque id.
    pub id: ClaimId,
    /// Owning tenant; not on the wire.
    #[serde(skip)]
    pub tenant: TenantId,
    /// The drop claimed from.
    pub drop: DropId,
    /// The buyer.
    pub user: UserId,
    /// Units claimed.
    pub quantity: i64,
    /// Where it is in its lifecycle.
    pub status: ClaimStatus,
    /// Client-chosen key: the same key from the same user on the same drop means the same claim.
    #[serde(skip)]
    pub idempotency_key: String,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When the hold lapses unless paid.
    pub expires_at: Timestamp,
}
