//! The relay: requests for a stream that another node owns, carried over Redis pub/sub to that
//! node and answered the same way.
//!
//! Each node subscribes to its own channel (`keys::node_rpc`). A request carries a correlation id
//! and the caller's node id; the owner runs it through [`Engine::serve`] (which never relays it
//! on) and publishes the answer on the caller's channel. A caller waits at most
//! [`RELAY_TIMEOUT`] and then answers `unavailable`: the client may retry, a claim with the same
//! idempotency key, which finds the claim if the owner took it meanwhile. A request to a node
//! nobody listens for (it died) fails at once: `PUBLISH` reports no receiver.
//!
//! Boundary: the relay moves requests, it decides nothing; which node owns a stream is
//! [`crate::lease`]'s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use futures_util::StreamExt;
use liveshop_actors::Engine;
use liveshop_actors::remote::{Answer, Call, RELAY_TIMEOUT, Remote};
use liveshop_engine::{ErrorCode, Rejection};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::keys;
use crate::link::Link;

/// Histogram of relayed calls, from sending to answer, by `outcome` (`ok`, `refused`,
/// `unavailable`).
pub const RELAY_SECONDS: &str = "liveshop_relay_duration_seconds";
/// Counter of relayed calls by `outcome`.
pub const RELAY_REQUESTS: &str = "liveshop_relay_requests_total";

/// What travels on a node's channel.
#[derive(Debug, Serialize, Deserialize)]
enum Envelope {
    /// A call for the receiving node to run.
    Request {
        /// Correlation id, unique per calling node.
        id: u64,
        /// The calling node, where the answer goes.
        from: String,
        /// What to run.
        call: Call,
    },
    /// The answer to a call this node made.
    Answer {
        /// The request's correlation id.
        id: u64,
        /// What the owner answered.
        result: Result<Answer, Rejection>,
    },
}

type Pending = DashMap<u64, oneshot::Sender<Result<Answer, Rejection>>>;

/// This node's end of the relay: it sends calls to owners and serves those sent to it.
pub struct Relay {
    link: Link,
    node: String,
    next: AtomicU64,
    pending: Arc<Pending>,
    engine: Arc<OnceLock<Engine>>,
}

impl Relay {
    /// Starts listening on this node's channel (reconnecting with backoff when Redis goes away).
    /// Calls sent here are answered once [`Relay::serve`] has given it the engine.
    pub fn start(link: Link, node: String) -> Arc<Self> {
        let relay = Arc::new(Self {
            link,
            node,
            next: AtomicU64::new(1),
            pending: Arc::new(DashMap::new()),
            engine: Arc::new(OnceLock::new()),
        });
        tokio::spawn(listen(
            relay.link.clone(),
            relay.node.clone(),
            relay.pending.clone(),
            relay.engine.clone(),
        ));
        relay
    }

    /// Serves calls other nodes send here with `engine`.
    pub fn serve(&self, engine: Engine) {
        let _ = self.engine.set(engine);
    }

    async fn send(&self, node: &str, envelope: &Envelope) -> Result<i64, Rejection> {
        let bytes = serde_json::to_vec(envelope).map_err(|err| {
            tracing::error!(error = %err, "a relayed call could not be encoded");
            Rejection::new(ErrorCode::Internal, "call could not be relayed")
        })?;
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(keys::node_rpc(node)).arg(bytes);
        self.link
            .query::<i64>("relay_publish", &publish)
            .await
            .map_err(|err| {
                tracing::warn!(node, error = %err, "could not relay a call");
                unavailable()
            })
    }
}

fn unavailable() -> Rejection {
    Rejection::new(
        ErrorCode::Unavailable,
        "the node that runs this stream did not answer; retry",
    )
}

fn record(started: Instant, outcome: &'static str) {
    metrics::histogram!(RELAY_SECONDS, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(RELAY_REQUESTS, "outcome" => outcome).increment(1);
}

#[async_trait::async_trait]
impl Remote for Relay {
    async fn call(&self, node: &str, call: Call) -> Result<Answer, Rejection> {
        let started = Instant::now();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        let name = call.name();
        let envelope = Envelope::Request {
            id,
            from: self.node.clone(),
            call,
        };
        let receivers = match self.send(node, &envelope).await {
            Ok(n) => n,
            Err(rejection) => {
                self.pending.remove(&id);
                record(started, "unavailable");
                return Err(rejection);
            }
        };
        if receivers == 0 {
            self.pending.remove(&id);
            record(started, "unavailable");
            tracing::warn!(node, call = name, "the owner node is not listening");
            return Err(unavailable());
        }
        match tokio::time::timeout(RELAY_TIMEOUT, rx).await {
            Ok(Ok(result)) => {
                record(started, if result.is_ok() { "ok" } else { "refused" });
                result
            }
            _ => {
                self.pending.remove(&id);
                record(started, "unavailable");
                tracing::warn!(node, call = name, "a relayed call got no answer in time");
                Err(unavailable())
            }
        }
    }
}

/// Receives this node's channel for as long as the process runs, reconnecting with backoff.
async fn listen(link: Link, node: String, pending: Arc<Pending>, engine: Arc<OnceLock<Engine>>) {
    let channel = keys::node_rpc(&node);
    let mut backoff = Duration::from_millis(100);
    loop {
        match link.client().get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        let payload: &[u8] = message.get_payload_bytes();
                        match serde_json::from_slice::<Envelope>(payload) {
                            Ok(envelope) => {
                                receive(envelope, &link, &node, &pending, &engine);
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "a relay message could not be read");
                            }
                        }
                    }
                    tracing::warn!("the relay's Redis subscription ended; reconnecting");
                }
                Err(err) => tracing::warn!(error = %err, "could not subscribe the relay channel"),
            },
            Err(err) => tracing::debug!(error = %err, "relay cannot reach Redis; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn receive(
    envelope: Envelope,
    link: &Link,
    node: &str,
    pending: &Pending,
    engine: &OnceLock<Engine>,
) {
    match envelope {
        Envelope::Answer { id, result } => {
            if let Some((_, tx)) = pending.remove(&id) {
                let _ = tx.send(result);
            }
        }
        Envelope::Request { id, from, call } => {
            let Some(engine) = engine.get().cloned() else {
                return;
            };
            let (link, node) = (link.clone(), node.to_owned());
            let span =
                tracing::info_span!("relayed", node_id = %node, from = %from, call = call.name());
            let serve = async move {
                let result = engine.serve(call).await;
                let answer = Envelope::Answer { id, result };
                let Ok(bytes) = serde_json::to_vec(&answer) else {
                    tracing::error!("a relayed answer could not be encoded");
                    return;
                };
                let mut publish = redis::cmd("PUBLISH");
                publish.arg(keys::node_rpc(&from)).arg(bytes);
                if let Err(err) = link.query::<i64>("relay_answer", &publish).await {
                    tracing::warn!(to = %from, error = %err, "could not send a relayed call's answer");
                }
            };
            tokio::spawn(tracing::Instrument::instrument(serve, span));
        }
    }
}
