//! Cluster mode (contract section 6): several `liveshop serve` nodes share one Postgres and one
//! Redis. This crate holds everything that talks to Redis; the actor tree only sees the traits it
//! defines (`Bus`, `Presence`, `Notifier`, and the directory's placement), so single-node mode
//! runs none of this code.
//!
//! - [`link`]: the Redis connections, every call bounded by a timeout and timed.
//! - [`keys`]: every key and channel name, in one place.
//! - [`bus`]: cross-node fan-out of stream events, with the history any node resumes from.
//! - [`history`]: reading that history (resume on another node, a new owner's epoch and seq).
//! - [`presence`]: viewer counts summed over nodes.
//! - [`notifier`]: private frames to a user's connections on any node.
//! - [`lease`]: one owner node per live stream, with fencing tokens from storage.
//! - [`nodes`]: the node list with heartbeats.
//! - `testing` (feature `test-util`): a throwaway `redis-server` for tests.
//! - [`relay`]: requests for a stream another node owns, sent to that node and answered.

pub mod bus;
pub mod history;
pub mod keys;
pub mod lease;
pub mod link;
pub mod nodes;
pub mod notifier;
pub mod presence;
pub mod relay;
#[cfg(feature = "test-util")]
pub mod testing;
mod wire;
