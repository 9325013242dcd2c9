//! Pure core of the Liveshop engine.
//!
//! Everything here is deterministic and free of IO: no tokio, no sockets, no clock. Time comes in as a
//! [`Timestamp`] argument, randomness (ids) comes in from the caller. The actor, storage and HTTP crates
//! build on these types so that the rules of the product are tested once, here, without a runtime.

pub mod auth;
pub mod chat;
pub mod drops;
pub mod frames;
pub mod group_commit;
pub mod ids;
pub mod limits;
pub mod moderation;
pub mod pacing;
pub mod records;
pub mod rejection;
pub mod storage;
pub mod stream;
pub mod stream_book;
pub mod text;
pub mod timestamp;
pub mod wire;

pub use ids::{ClaimId, DropId, ProductId, SessionId, Slug, StreamId, TenantId, UserId};
pub use rejection::{ErrorCode, Rejection};
pub use timestamp::Timestamp;
