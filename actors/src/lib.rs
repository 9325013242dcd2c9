//! The supervised actor tree of the Liveshop engine.
//!
//! ```text
//! EngineSupervisor ── TenantActor ─┬─ StreamActor (one per stream in use)
//!                                 └─ DropActor (one per drop in use)
//!                  └─ Persister (batched chat writes)
//! Session (one per WebSocket connection, run by the connection's own task)
//! ```
//! A stream's state changes only inside its [`stream::StreamActor`]. It encodes each event once and
//! publishes the bytes on the [`fanout::bus::Bus`]; the [`fanout::hub::Hub`] of each node writes
//! them to every joined connection's socket.

pub mod clock;
pub mod connection;
pub mod drop;
pub mod engine;
pub mod fanout;
pub mod mailbox;
pub mod metrics;
pub mod persister;
pub mod restart;
pub mod session;
pub mod stream;
pub mod supervisor;
pub mod tenant;
pub mod tree;

pub use engine::{Engine, EngineConfig};
