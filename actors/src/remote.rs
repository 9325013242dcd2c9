//! Requests for a stream that another node runs: what the facade relays to the stream's owner,
//! and what comes back.
//!
//! In cluster mode a viewer's chat, reaction and claim, and a seller's pin, lifecycle and drop
//! requests, may reach any node; the [`Engine`](crate::Engine) runs them where the stream runs.
//! When that is another node it sends a [`Call`] through a [`Remote`] (Redis in
//! `liveshop-cluster`) and the owner answers with what the same call returns locally.
//!
//! Boundary: the owner runs a relayed call exactly as a local one, except that it never relays
//! it further: a node that no longer runs the stream answers `unavailable`, and the caller may
//! retry (claims with the same idempotency key, so a retry never claims twice).

use std::time::Duration;

use liveshop_engine::auth::Role;
use liveshop_engine::drops::CloseReason;
use liveshop_engine::ids::{ChatId, ClaimId};
use liveshop_engine::moderation::{ChatSettings, Mute, SettingsPatch};
use liveshop_engine::records::{ChatAuthor, Claim, ClaimStatus, Drop, DropStatus, Stream};
use liveshop_engine::stream::Lifecycle;
use liveshop_engine::stream_book::ChatAccess;
use liveshop_engine::timestamp::Timestamp;
use liveshop_engine::{DropId, ErrorCode, ProductId, Rejection, StreamId, TenantId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Longest a relayed call waits for the owner's answer before it answers `unavailable` (a claim
/// the owner took meanwhile is found again by its idempotency key on retry).
pub const RELAY_TIMEOUT: Duration = Duration::from_secs(5);

/// A request for a stream or a drop, as the owner node runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Call {
    /// Start or end a show.
    Lifecycle {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
        /// What to do.
        action: Lifecycle,
    },
    /// Pin a product.
    Pin {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
        /// The product (checked to belong to the tenant).
        product: ProductId,
    },
    /// Open a drop in its stream.
    OpenDrop(#[serde(with = "DropWire")] Drop),
    /// Close a drop.
    CloseDrop {
        /// Its tenant.
        tenant: TenantId,
        /// The drop.
        drop: DropId,
        /// Why.
        reason: CloseReason,
    },
    /// Claim units of a drop.
    Claim {
        /// Its tenant.
        tenant: TenantId,
        /// The drop.
        drop: DropId,
        /// The buyer.
        user: UserId,
        /// Units.
        quantity: i64,
        /// The buyer's idempotency key.
        key: String,
    },
    /// Mark a reservation paid.
    Pay {
        /// Its tenant.
        tenant: TenantId,
        /// The drop.
        drop: DropId,
        /// The claim.
        claim: ClaimId,
    },
    /// Publish a chat message.
    Chat {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
        /// Who wrote it.
        author: ChatAuthor,
        /// The text as sent.
        text: String,
        /// Whether the author's connection joined (on its own node).
        access: ChatAccess,
        /// The author's role (slow mode spares staff). A node of an earlier release sends none;
        /// it reads as a viewer's.
        #[serde(default = "viewer")]
        role: Role,
    },
    /// Count a reaction (already validated).
    React {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
        /// The emoji.
        emoji: String,
    },
    /// The stream's state for a joiner on the calling node.
    Snapshot {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
    },
    /// Delete a chat message.
    DeleteChat {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
        /// The message.
        message: ChatId,
        /// The moderator.
        actor: UserId,
    },
    /// Mute a user in the stream.
    Mute {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
        /// Who.
        user: UserId,
        /// For how long, checked.
        duration_seconds: i64,
        /// The moderator.
        actor: UserId,
        /// Why, checked.
        reason: Option<String>,
    },
    /// Read (`change: None`) or change the stream's chat settings.
    ChatSettings {
        /// Its tenant.
        tenant: TenantId,
        /// The stream.
        stream: StreamId,
        /// What changes, and who changes it.
        change: Option<(SettingsPatch, UserId)>,
    },
}

/// The stream a call is about, when it names one (drop calls name their drop).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    /// A stream of a tenant.
    Stream(&'a TenantId, &'a StreamId),
    /// A drop of a tenant.
    Drop(&'a TenantId, &'a DropId),
}

impl Call {
    /// What the call is about, which decides where it runs.
    pub fn subject(&self) -> Subject<'_> {
        match self {
            Self::Lifecycle { tenant, stream, .. }
            | Self::Pin { tenant, stream, .. }
            | Self::Chat { tenant, stream, .. }
            | Self::React { tenant, stream, .. }
            | Self::Snapshot { tenant, stream }
            | Self::DeleteChat { tenant, stream, .. }
            | Self::Mute { tenant, stream, .. }
            | Self::ChatSettings { tenant, stream, .. } => Subject::Stream(tenant, stream),
            Self::OpenDrop(drop) => Subject::Stream(&drop.tenant, &drop.stream),
            Self::CloseDrop { tenant, drop, .. }
            | Self::Claim { tenant, drop, .. }
            | Self::Pay { tenant, drop, .. } => Subject::Drop(tenant, drop),
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Lifecycle { .. } => "lifecycle",
            Self::Pin { .. } => "pin",
            Self::OpenDrop(_) => "open_drop",
            Self::CloseDrop { .. } => "close_drop",
            Self::Claim { .. } => "claim",
            Self::Pay { .. } => "pay",
            Self::Chat { .. } => "chat",
            Self::React { .. } => "react",
            Self::Snapshot { .. } => "snapshot",
            Self::DeleteChat { .. } => "delete_chat",
            Self::Mute { .. } => "mute",
            Self::ChatSettings { .. } => "chat_settings",
        }
    }
}

/// What the owner answers to a [`Call`] that succeeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Answer {
    /// The stream after a lifecycle change, and the drops its end left to close (closed by the
    /// owner already).
    Stream(Stream),
    /// A drop (opened or closed).
    Drop(#[serde(with = "DropWire")] Drop),
    /// A claim, and whether this call created it.
    Claim {
        /// The claim.
        #[serde(with = "ClaimWire")]
        claim: Claim,
        /// True for a new reservation.
        created: bool,
    },
    /// A paid claim.
    Paid(#[serde(with = "ClaimWire")] Claim),
    /// A chat message's seq.
    Seq(u64),
    /// Done, nothing to say.
    Done,
    /// The stream's state for a joiner.
    Snapshot(RemoteSnapshot),
    /// A stored mute.
    Mute(Mute),
    /// A stream's chat settings.
    ChatSettings(ChatSettings),
}

/// A stream's snapshot taken by its owner at `(epoch, seq)`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteSnapshot {
    /// Epoch of the owner's actor.
    pub epoch: u64,
    /// Last seq included.
    pub seq: u64,
    /// The `snapshot` object of the `joined` frame.
    pub state: Box<RawValue>,
}

impl Answer {
    /// The answer a caller expected was not what came back: the nodes run different versions.
    pub fn mismatch(call: &'static str) -> Rejection {
        tracing::error!(call, "a relayed call got an answer of another kind");
        Rejection::new(ErrorCode::Internal, "unexpected answer from the owner node")
    }
}

/// Sends calls to the node that runs their stream.
#[async_trait::async_trait]
pub trait Remote: Send + Sync + 'static {
    /// Runs `call` on `node` and returns its answer; `unavailable` when the node does not answer
    /// within [`RELAY_TIMEOUT`] or cannot be reached.
    async fn call(&self, node: &str, call: Call) -> Result<Answer, Rejection>;
}

/// Single-node: no other node to reach.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nowhere;

#[async_trait::async_trait]
impl Remote for Nowhere {
    async fn call(&self, node: &str, call: Call) -> Result<Answer, Rejection> {
        tracing::error!(
            node,
            call = call.name(),
            "a call was to be relayed, but this node runs alone"
        );
        Err(Rejection::new(
            ErrorCode::Unavailable,
            "stream is served by another node; retry",
        ))
    }
}

/// Every field of a [`Drop`], including those its public JSON leaves out (its tenant).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Drop")]
struct DropWire {
    id: DropId,
    tenant: TenantId,
    stream: StreamId,
    product: ProductId,
    quantity: i64,
    remaining: i64,
    reserved: i64,
    sold: i64,
    per_user_limit: i64,
    hold_seconds: i64,
    status: DropStatus,
    opened_at: Timestamp,
    ends_at: Option<Timestamp>,
    closed_reason: Option<String>,
}

/// Every field of a [`Claim`], including those its public JSON leaves out (tenant, key).
#[derive(Serialize, Deserialize)]
#[serde(remote = "Claim")]
struct ClaimWire {
    id: ClaimId,
    tenant: TenantId,
    drop: DropId,
    user: UserId,
    quantity: i64,
    status: ClaimStatus,
    idempotency_key: String,
    created_at: Timestamp,
    expires_at: Timestamp,
}

/// The role of a relayed chat's author when the sending node did not say.
fn viewer() -> Role {
    Role::Viewer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> Claim {
        Claim {
            id: ClaimId::from_trusted("clm_1"),
            tenant: TenantId::from_trusted("ten_1"),
            drop: DropId::from_trusted("drp_1"),
            user: UserId::from_trusted("alice"),
            quantity: 2,
            status: ClaimStatus::Reserved,
            idempotency_key: "k-1".into(),
            created_at: Timestamp(1_000),
            expires_at: Timestamp(61_000),
        }
    }

    #[test]
    fn a_claim_crosses_nodes_with_its_tenant_and_key() {
        let answer = Answer::Claim {
            claim: claim(),
            created: true,
        };
        let wire = serde_json::to_vec(&answer).unwrap();
        match serde_json::from_slice::<Answer>(&wire).unwrap() {
            Answer::Claim {
                claim: back,
                created,
            } => {
                assert_eq!(back, claim());
                assert!(created);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_chat_keeps_the_wire_form_of_the_previous_release_and_reads_its_calls() {
        // What a node of the previous release sends (no role): a viewer's chat.
        let old = r#"{"Chat":{"tenant":"t","stream":"s","author":{"id":"u","name":"U"},"text":"hi","access":"Joined"}}"#;
        match serde_json::from_str::<Call>(old).unwrap() {
            Call::Chat { access, role, .. } => {
                assert_eq!(access, ChatAccess::Joined);
                assert_eq!(role, Role::Viewer);
            }
            other => panic!("{other:?}"),
        }
        // What this release sends keeps every field the previous one reads, as it read them.
        let new = Call::Chat {
            tenant: TenantId::from_trusted("t"),
            stream: StreamId::from_trusted("s"),
            author: ChatAuthor {
                id: UserId::from_trusted("u"),
                name: "U".into(),
            },
            text: "hi".into(),
            access: ChatAccess::NotJoined(Role::Seller),
            role: Role::Seller,
        };
        let wire = serde_json::to_value(&new).unwrap();
        assert_eq!(
            wire["Chat"]["access"],
            serde_json::json!({"NotJoined": "seller"})
        );
        assert_eq!(wire["Chat"]["role"], "seller");
    }

    #[test]
    fn a_drop_call_is_about_its_drop_and_a_new_drop_about_its_stream() {
        let call = Call::Claim {
            tenant: TenantId::from_trusted("t"),
            drop: DropId::from_trusted("d"),
            user: UserId::from_trusted("u"),
            quantity: 1,
            key: "k".into(),
        };
        assert_eq!(
            call.subject(),
            Subject::Drop(&TenantId::from_trusted("t"), &DropId::from_trusted("d"))
        );
        let rejection = Rejection::rate_limited(1500);
        let wire = serde_json::to_string(&rejection).unwrap();
        assert_eq!(serde_json::from_str::<Rejection>(&wire).unwrap(), rejection);
    }
}
