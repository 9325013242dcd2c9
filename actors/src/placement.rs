//! Placement: which node runs a live stream (and its drops), and the fence its writes carry.
//!
//! Single-node, every stream runs here and writes unfenced ([`Local`]). In cluster mode a lease
//! decides (one owner node per stream, `liveshop-cluster`), and the owner's writes carry the
//! fencing token it took from storage when it became the owner, so a stale owner cannot write.
//!
//! Invariant: a stream's drops run on the node that runs the stream and write behind the same
//! fence (the fence's scope is the stream's id).
//!
//! Boundary: placement decides, it starts nothing. The [`Directory`](crate::directory::Directory)
//! starts the actors placement assigns here, and stops them when placement says the stream went
//! to another node.

use liveshop_engine::storage::Fence;
use liveshop_engine::{Rejection, StreamId};
use tokio::sync::mpsc;

/// Where a stream runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// On this node: start (or keep) its actor here, writing behind this fence.
    Here(Fence),
    /// On another node, by its id: requests for the stream are relayed there.
    Elsewhere(String),
}

/// Decides which node runs each stream.
#[async_trait::async_trait]
pub trait Placement: Send + Sync + 'static {
    /// Where `stream` runs now; takes it for this node when nobody runs it. `unavailable` when
    /// that cannot be known (the cluster's coordination is unreachable and this node does not
    /// run the stream).
    async fn place(&self, stream: &StreamId) -> Result<Placed, Rejection>;

    /// This node stopped running `stream` for good (it ended, or its supervisor gave up): the
    /// stream is free for any node.
    fn released(&self, stream: &StreamId);

    /// Where placement reports the streams this node no longer runs (another node took them):
    /// the directory stops their actors here.
    fn on_lost(&self, lost: mpsc::UnboundedSender<StreamId>);

    /// Where the previous owner left off, when it handed `stream` over in order (a planned
    /// shutdown with its whole history published): `(epoch, seq)` to continue from, so viewers
    /// see no new epoch. Taken once: a later start of the stream begins a new epoch.
    fn take_continuation(&self, _stream: &StreamId) -> Option<(u64, u64)> {
        None
    }

    /// This node hands `stream` over (a planned shutdown; its actors have stopped and its chat
    /// is written): release it, saying whether its history is complete, so the next owner may
    /// continue its epoch.
    async fn hand_over(&self, stream: &StreamId, _history_complete: bool) {
        self.released(stream);
    }

    /// A call relayed to `node`, which placement named as `stream`'s owner, found nobody there:
    /// forget what was learnt of the stream's owner, so the next placement asks again.
    fn unreachable(&self, _stream: &StreamId, _node: &str) {}

    /// The streams placed on this node now (a planned shutdown stops their actors, then
    /// releases each).
    fn held(&self) -> Vec<StreamId>;
}

/// Single-node placement: every stream runs here, unfenced.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

#[async_trait::async_trait]
impl Placement for Local {
    async fn place(&self, _stream: &StreamId) -> Result<Placed, Rejection> {
        Ok(Placed::Here(Fence::Unfenced))
    }

    fn released(&self, _stream: &StreamId) {}

    fn on_lost(&self, _lost: mpsc::UnboundedSender<StreamId>) {}

    fn held(&self) -> Vec<StreamId> {
        Vec::new()
    }
}
