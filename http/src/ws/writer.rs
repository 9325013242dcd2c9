//! The writer task of a connection: the only code that writes to its socket.
//!
//! It takes replies from the session's queue and events straight from the joined streams' shared
//! rings. After each wake-up it drains whatever else is ready (up to a batch) before one flush, so
//! a burst costs one syscall rather than one per frame. A subscriber that falls a whole ring behind
//! is closed as a slow consumer (4008): it reconnects and resumes, rather than the server buffering
//! without bound.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::stream::SplitSink;
use futures_util::{FutureExt, SinkExt, StreamExt};
use liveshop_actors::broker::StreamOut;
use liveshop_actors::metrics as names;
use liveshop_actors::session::Outgoing;
use liveshop_engine::StreamId;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use super::close::CloseReason;

/// Most frames written between two flushes.
const BATCH: usize = 256;

/// What the writer needs.
pub struct Writer {
    /// The socket's sending half.
    pub sink: SplitSink<WebSocket, Message>,
    /// Replies and subscription changes from the session actor (and the reader).
    pub out: mpsc::Receiver<Outgoing>,
    /// Set by the connection when it wants the socket closed.
    pub close: watch::Receiver<Option<CloseReason>>,
    /// Called when a joined stream restarted, so the session re-joins it.
    pub rejoin: Box<dyn Fn(StreamId) + Send>,
    /// Interval of protocol pings.
    pub ping_every: Duration,
}

struct Batch {
    frames: usize,
    events: u64,
}

fn text(bytes: Bytes) -> Result<Message, CloseReason> {
    Utf8Bytes::try_from(bytes)
        .map(Message::Text)
        .map_err(|_| CloseReason::Internal)
}

impl Writer {
    /// Runs until the connection closes; returns why.
    pub async fn run(mut self) -> CloseReason {
        let mut subs: StreamMap<StreamId, BroadcastStream<StreamOut>> = StreamMap::new();
        let mut ping = tokio::time::interval(self.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let reason = loop {
            let mut batch = Batch {
                frames: 0,
                events: 0,
            };
            let first = tokio::select! {
                biased;
                _ = self.close.changed() => {
                    Err(self.close.borrow().unwrap_or(CloseReason::ClientClosed))
                }
                item = self.out.recv() => match item {
                    Some(item) => self.apply(item, &mut subs, &mut batch).await,
                    None => Err(CloseReason::ClientClosed),
                },
                Some((stream, item)) = subs.next(), if !subs.is_empty() => {
                    self.event(stream, item, &mut subs, &mut batch).await
                }
                _ = ping.tick() => self.feed(Message::Ping(Bytes::new()), &mut batch).await,
            };
            if let Err(reason) = first {
                break reason;
            }
            if let Err(reason) = self.drain_ready(&mut subs, &mut batch).await {
                break reason;
            }
            if self.sink.flush().await.is_err() {
                break CloseReason::TransportError;
            }
            if batch.events > 0 {
                metrics::counter!(names::EVENTS_DELIVERED).increment(batch.events);
            }
        };
        if reason != CloseReason::TransportError {
            let frame = CloseFrame {
                code: reason.code(),
                reason: Utf8Bytes::from_static(reason.label()),
            };
            let _ = self.sink.send(Message::Close(Some(frame))).await;
        }
        reason
    }

    async fn drain_ready(
        &mut self,
        subs: &mut StreamMap<StreamId, BroadcastStream<StreamOut>>,
        batch: &mut Batch,
    ) -> Result<(), CloseReason> {
        while batch.frames < BATCH {
            if let Ok(item) = self.out.try_recv() {
                self.apply(item, subs, batch).await?;
                continue;
            }
            match subs.next().now_or_never() {
                Some(Some((stream, item))) => self.event(stream, item, subs, batch).await?,
                _ => break,
            }
        }
        Ok(())
    }

    async fn feed(&mut self, message: Message, batch: &mut Batch) -> Result<(), CloseReason> {
        batch.frames += 1;
        self.sink
            .feed(message)
            .await
            .map_err(|_| CloseReason::TransportError)
    }

    async fn apply(
        &mut self,
        item: Outgoing,
        subs: &mut StreamMap<StreamId, BroadcastStream<StreamOut>>,
        batch: &mut Batch,
    ) -> Result<(), CloseReason> {
        match item {
            Outgoing::Frame(bytes) => self.feed(text(bytes)?, batch).await,
            Outgoing::Subscribe {
                stream,
                frames,
                receiver,
            } => {
                for bytes in frames {
                    self.feed(text(bytes)?, batch).await?;
                }
                subs.insert(stream, BroadcastStream::new(receiver));
                Ok(())
            }
            Outgoing::Unsubscribe { stream, reply } => {
                subs.remove(&stream);
                self.feed(text(reply)?, batch).await
            }
        }
    }

    async fn event(
        &mut self,
        stream: StreamId,
        item: Result<StreamOut, BroadcastStreamRecvError>,
        subs: &mut StreamMap<StreamId, BroadcastStream<StreamOut>>,
        batch: &mut Batch,
    ) -> Result<(), CloseReason> {
        match item {
            Ok(StreamOut::Event(bytes)) => {
                batch.events += 1;
                self.feed(text(bytes)?, batch).await
            }
            Ok(StreamOut::Restarted) => {
                subs.remove(&stream);
                (self.rejoin)(stream);
                Ok(())
            }
            Err(BroadcastStreamRecvError::Lagged(missed)) => {
                metrics::counter!(names::SLOW_CONSUMERS).increment(1);
                metrics::counter!(names::BROADCAST_LAG).increment(missed);
                Err(CloseReason::SlowConsumer)
            }
        }
    }
}
