//! A live connection as the actor tree sees it: something frames can be written to.

use std::sync::Arc;

use bytes::Bytes;
use liveshop_engine::StreamId;
use liveshop_engine::frames::ws_text_frame;

/// A live connection as the engine sees it: something frames can be written to.
///
/// Implemented by the WebSocket gateway. Writes never wait: a connection that cannot take more
/// buffers a bounded amount, then closes itself as a slow consumer.
pub trait Connection: Send + Sync + 'static {
    /// Unique id of the connection within the process.
    fn id(&self) -> u64;
    /// Writes already-framed WebSocket bytes; false when the connection is gone.
    fn deliver(&self, frame: &Bytes) -> bool;
    /// Frames and writes one JSON message (replies, private frames).
    fn send_json(&self, json: &[u8]) -> bool {
        self.deliver(&ws_text_frame(json))
    }
    /// A joined stream restarted (or its feed cannot be continued without a gap): its session
    /// must join again for a fresh snapshot.
    fn rejoin(&self, stream: &StreamId);
    /// Its user was banned from its tenant: close it at once with 1008.
    fn close_banned(&self);
}

/// A subscriber handle: a connection shared by its session, the hub and the notifier.
pub type Subscriber = Arc<dyn Connection>;
