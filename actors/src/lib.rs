//! The supervised actor tree of the Liveshop engine.
//!
//! ```text
//! Supervisor (root) ─┬─ Supervisor per tenant ─┬─ StreamActor (one per stream in use)
//!                    │                         └─ DropActor (one per drop in use)
//!                    └─ Persister (batched chat writes)
//! Session (one per WebSocket connection, run by the connection's own task)
//! ```
//! Callers go through the [`Engine`] facade; it finds or starts the actor in charge through the
//! [`directory::Directory`]. Each actor gets at spawn only the capabilities it uses. A stream's
//! state changes only inside its [`stream::StreamActor`]. It encodes each event once and
//! publishes the bytes on the [`fanout::bus::Bus`]; the [`fanout::hub::Hub`] of each node writes
//! them to every joined connection's socket.

pub mod bans;
pub mod clock;
pub mod connection;
pub mod directory;
pub mod drop;
pub mod engine;
pub mod fanout;
pub mod inbox;
pub mod mailbox;
pub mod metrics;
pub mod persister;
pub mod placement;
pub mod recovery;
pub mod remote;
pub mod restart;
pub mod session;
pub mod slot;
pub mod stream;
pub mod supervise;
#[cfg(feature = "test-util")]
pub mod testing;
pub mod tree;

pub use engine::{Cluster, Engine, EngineConfig, FaultTarget};
