//! Fan-out of stream events and private frames, split the way centrifuge splits its node.
//!
//! ```text
//! StreamActor ──publish(stream, epoch, seq, bytes)──▶ Bus ──▶ Hub of every node ──▶ sockets
//!      │                                            (in process, or Redis)          ▲
//!      └──join(ref, resume, snapshot)──────────────────────────▶ Hub of this node ──┘
//! Presence: viewer counts (from the hubs)      Notifier: private frames to a user's connections
//! ```
//! - [`hub::Hub`]: this node's sockets per stream, one fan-out task per stream that frames each
//!   event once, keeps the resume ring and answers joins in order with the events (no gap, no
//!   duplicate between the `joined` frame and the live feed).
//! - [`bus::Bus`]: carries `(stream, epoch, seq, bytes)` and control messages between nodes;
//!   every implementation passes [`contract`].
//! - [`presence::Presence`]: viewer counts.
//! - [`notifier::Notifier`]: private frames to every connection of a user.
//!
//! Boundary: nothing here decides what an event means or numbers it; the stream actor does, and
//! `liveshop_engine::stream::resume` decides whether a client can resume.

pub mod bus;
pub mod contract;
pub mod hub;
pub mod notifier;
pub mod presence;
pub mod ring;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use liveshop_engine::StreamId;

use bus::{Bus, BusMessage, Control, InProcessBus, StreamEvent};
use hub::Hub;
use notifier::{LocalNotifier, Notifier};
use presence::{LocalPresence, Presence};

/// This node's fan-out: its hub and the bus, presence and notifier that serve it. Cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    hub: Arc<Hub>,
    bus: Arc<dyn Bus>,
    presence: Arc<dyn Presence>,
    notifier: Arc<dyn Notifier>,
}

impl Fanout {
    /// Single-node fan-out: the bus hands events straight to this node's hub, viewer counts are
    /// the hub's, private frames reach this node's connections. Streams keep their last
    /// `resume_buffer` ordered events for resume.
    pub fn in_process(resume_buffer: usize) -> Self {
        let hub = Arc::new(Hub::new(resume_buffer));
        Self {
            bus: Arc::new(InProcessBus::new(hub.clone())),
            presence: Arc::new(LocalPresence::new(hub.clone())),
            notifier: Arc::new(LocalNotifier::new()),
            hub,
        }
    }

    /// Fan-out from parts (cluster mode: a networked bus delivering to `hub`, summed presence, a
    /// notifier that crosses nodes).
    pub fn new(
        hub: Arc<Hub>,
        bus: Arc<dyn Bus>,
        presence: Arc<dyn Presence>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        Self {
            hub,
            bus,
            presence,
            notifier,
        }
    }

    /// This node's hub (joins and leaves).
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The bus events are published on.
    pub fn bus(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    /// Viewer counts.
    pub fn presence(&self) -> &Arc<dyn Presence> {
        &self.presence
    }

    /// Private frames to users.
    pub fn notifier(&self) -> &Arc<dyn Notifier> {
        &self.notifier
    }

    /// Publishes one encoded event of `stream` to every node's viewers.
    pub fn publish(&self, stream: &StreamId, event: StreamEvent) {
        self.bus.publish(stream, BusMessage::Event(event));
    }

    /// Publishes a change of `stream`'s feed to every node.
    pub fn control(&self, stream: &StreamId, control: Control) {
        self.bus.publish(stream, BusMessage::Control(control));
    }

    /// Viewers of `stream` now.
    pub fn viewers(&self, stream: &StreamId) -> u64 {
        self.presence.viewers(stream)
    }
}
