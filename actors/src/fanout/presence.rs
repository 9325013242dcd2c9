//! Presence: how many viewers a stream has.
//!
//! The stream actor sends the count in `viewers` events and snapshots, and `GET /v1/streams/{id}`
//! shows it. One node counts its own joined connections ([`LocalPresence`], read from the hub); in
//! cluster mode (`liveshop_cluster::presence`) each node publishes its count about once a second
//! and the count is the sum over nodes: O(nodes) per stream per second, never O(viewers).

use std::sync::Arc;

use liveshop_engine::StreamId;

use super::hub::Hub;

/// Viewer counts of streams.
pub trait Presence: Send + Sync + 'static {
    /// Viewers of `stream` now (over every node this presence knows of). Never waits: it is read
    /// on the stream actor's tick and on REST reads.
    fn viewers(&self, stream: &StreamId) -> u64;
}

/// The viewers of this node: the connections joined to the stream in its hub.
#[derive(Clone)]
pub struct LocalPresence {
    hub: Arc<Hub>,
}

impl LocalPresence {
    /// Counts the viewers `hub` serves.
    pub fn new(hub: Arc<Hub>) -> Self {
        Self { hub }
    }
}

impl Presence for LocalPresence {
    fn viewers(&self, stream: &StreamId) -> u64 {
        self.hub.subscribers(stream) as u64
    }
}
