//! The bus: what carries a stream's encoded events and control messages between nodes.
//!
//! The stream actor (on the stream's owner node) publishes each event once, already encoded; the
//! bus hands it to the hub of every node that watches the stream, and each hub writes it to its
//! own sockets. [`InProcessBus`] does that inside one process (one node, or several nodes in
//! tests); `liveshop_cluster::bus::RedisBus` carries the same [`BusMessage`]s over pub/sub.
//!
//! Invariants every implementation keeps (checked by [`super::contract`]):
//! - a node that watches a stream receives each of its messages exactly once, in publish order,
//!   with epoch, seq and bytes intact;
//! - messages of one stream never reach another stream;
//! - [`Bus::publish`] never waits: not on the network, not on a hub's write loop.
//!
//! Boundary: the bus keeps no history. The resume ring is the hub's (per node); history that
//! outlives the owner node is the cluster's (`liveshop_cluster::history`), which a join passes
//! to the hub as its backlog.

use std::sync::Arc;

use bytes::Bytes;
use liveshop_engine::StreamId;

/// One encoded event of a stream, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// Epoch of the stream's actor that numbered it.
    pub epoch: u64,
    /// Position in the epoch; `None` for ephemeral events (viewer counts, reactions, inventory),
    /// which are never replayed.
    pub seq: Option<u64>,
    /// The event's JSON, encoded once by the stream actor.
    pub bytes: Bytes,
}

/// Changes of a stream that every node hosting its viewers must learn about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// A new incarnation of the stream's actor numbers its events from 1 in this epoch: hubs
    /// restart their resume ring, and viewers of an older epoch join again for a snapshot.
    Epoch(u64),
    /// The stream's actor is gone (it failed beyond its restart budget): every viewer is asked to
    /// join again, which starts the actor anew.
    Rejoin,
    /// The stream ended: hubs forget it once they have written what is queued.
    Remove,
}

/// What a bus carries for one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusMessage {
    /// An event to fan out.
    Event(StreamEvent),
    /// A change of the stream's feed.
    Control(Control),
}

/// Why a bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The transport (Redis) is unreachable or did not answer in time.
    #[error("the bus is unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Where a bus hands what reaches this node: the node's hub.
///
/// Called from the bus's own context (the publisher's thread in process, the subscriber task with
/// Redis), so it must not block: the hub only queues the message for the stream's task.
pub trait BusSink: Send + Sync + 'static {
    /// One message of `stream`, in the order it was published.
    fn receive(&self, stream: &StreamId, message: BusMessage);

    /// Connections of `stream` this sink serves now, when it knows (the hub does), so a bus can
    /// stop watching streams nobody on this node views; `None`: unknown, keep watching.
    fn local_viewers(&self, _stream: &StreamId) -> Option<usize> {
        None
    }
}

/// Carries stream messages to the hubs of every node watching the stream (this one included).
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `message` to every node watching `stream`. Never waits: a networked bus queues it
    /// for its publisher task.
    fn publish(&self, stream: &StreamId, message: BusMessage);

    /// Makes this node receive `stream`'s messages; returns once messages published after the
    /// call are sure to arrive (with Redis: once the channel subscription is confirmed).
    async fn watch(&self, stream: &StreamId) -> Result<(), BusError>;

    /// Stops receiving `stream`'s messages on this node (its last viewer left, or it ended).
    async fn unwatch(&self, stream: &StreamId) -> Result<(), BusError>;

    /// Waits (at most `within`) until everything published so far has left this node for good
    /// (with Redis: is in the history); false when that did not happen in time (Redis is down).
    /// A planned hand-over hands a stream's epoch on only when this is true.
    async fn flush(&self, _within: std::time::Duration) -> bool {
        true
    }

    /// The ordered events of `epoch` after `since`, from a history kept beyond this node (a
    /// client resuming on a node whose ring does not reach back that far); `None` when there is
    /// no such history or it does not cover them. Only after [`Bus::watch`], so nothing falls
    /// between the backlog and the live feed.
    async fn backlog(
        &self,
        _stream: &StreamId,
        _epoch: u64,
        _since: u64,
    ) -> Option<Vec<StreamEvent>> {
        None
    }
}

/// The bus of one process: publishing hands the message straight to the hubs of the nodes it
/// connects (one in production; several in tests of cross-node behaviour).
///
/// Every node receives every stream's messages, watched or not: a hub ignores the streams it has
/// no task for, which costs one map lookup.
#[derive(Clone)]
pub struct InProcessBus {
    sinks: Arc<[Arc<dyn BusSink>]>,
}

impl InProcessBus {
    /// The bus of a single node, delivering to its hub.
    pub fn new(sink: Arc<dyn BusSink>) -> Self {
        Self {
            sinks: Arc::from(vec![sink]),
        }
    }

    /// Buses of several nodes in one process, connected to each other: what any of them
    /// publishes reaches every sink, in publish order. One bus per sink, in the same order.
    pub fn connected(sinks: Vec<Arc<dyn BusSink>>) -> Vec<Self> {
        let sinks: Arc<[Arc<dyn BusSink>]> = Arc::from(sinks);
        (0..sinks.len())
            .map(|_| Self {
                sinks: sinks.clone(),
            })
            .collect()
    }
}

#[async_trait::async_trait]
impl Bus for InProcessBus {
    fn publish(&self, stream: &StreamId, message: BusMessage) {
        if let [only] = &*self.sinks {
            only.receive(stream, message);
            return;
        }
        for sink in self.sinks.iter() {
            sink.receive(stream, message.clone());
        }
    }

    async fn watch(&self, _stream: &StreamId) -> Result<(), BusError> {
        Ok(())
    }

    async fn unwatch(&self, _stream: &StreamId) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::bus_contract_tests!(in_process_bus, |sinks| async move {
        InProcessBus::connected(sinks)
            .into_iter()
            .map(|b| Arc::new(b) as Arc<dyn Bus>)
            .collect()
    });
}
