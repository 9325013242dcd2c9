//! Private frames to a user's connections on every node.
//!
//! [`RedisNotifier`] delivers a frame to this node's connections of the user at once (through a
//! [`LocalNotifier`]) and publishes it on [`keys::NOTIFY`] with its origin; every other node
//! delivers it to its own connections of that tenant and user, and ignores its own echo.
//!
//! A ban travels the same way as a notification with an empty frame (no private frame is empty):
//! each node closes its own connections of that tenant and user with 1008.
//!
//! Guarantees: [`Notifier::notify`] never waits (a publisher task batches the frames). Frames are
//! not kept: one published while Redis is unreachable, or while a node's subscription is down,
//! reaches only the connections of the node that sent it (the buyer re-reads the claim's state
//! over REST or on its next frame).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use liveshop_actors::connection::Subscriber;
use liveshop_actors::fanout::notifier::{LocalNotifier, Notifier};
use liveshop_engine::{TenantId, UserId};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use crate::bus::{MAX_BACKOFF, MIN_BACKOFF};
use crate::keys;
use crate::link::{CALL_TIMEOUT, Link, timed};
use crate::wire;

/// Most frames published in one pipeline.
const MAX_BATCH: usize = 512;

/// The notifier of a node in cluster mode. See the module documentation.
pub struct RedisNotifier {
    local: Arc<LocalNotifier>,
    node_id: String,
    outgoing: mpsc::UnboundedSender<Vec<u8>>,
    subscribed: watch::Receiver<bool>,
    tasks: Vec<AbortHandle>,
}

impl RedisNotifier {
    /// Starts the notifier of node `node_id`: its publisher and its subscription.
    pub fn start(link: Link, node_id: impl Into<String>) -> Arc<Self> {
        let node_id = node_id.into();
        let local = Arc::new(LocalNotifier::new());
        let (outgoing, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(publish(link.clone(), rx)).abort_handle(),
            tokio::spawn(subscribe(
                link,
                node_id.clone(),
                local.clone(),
                subscribed_tx,
            ))
            .abort_handle(),
        ];
        Arc::new(Self {
            local,
            node_id,
            outgoing,
            subscribed,
            tasks,
        })
    }

    /// Waits (at most [`CALL_TIMEOUT`]) until frames from other nodes reach this one; whether
    /// they do.
    pub async fn subscribed(&self) -> bool {
        let mut subscribed = self.subscribed.clone();
        matches!(
            tokio::time::timeout(CALL_TIMEOUT, subscribed.wait_for(|s| *s)).await,
            Ok(Ok(_))
        )
    }
}

impl Drop for RedisNotifier {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Notifier for RedisNotifier {
    fn register(&self, tenant: &TenantId, user: &UserId, conn: Subscriber) {
        self.local.register(tenant, user, conn);
    }

    fn unregister(&self, tenant: &TenantId, user: &UserId, conn: u64) {
        self.local.unregister(tenant, user, conn);
    }

    fn notify(&self, tenant: &TenantId, user: &UserId, frame: Bytes) {
        let payload =
            wire::encode_notification(&self.node_id, tenant.as_str(), user.as_str(), &frame);
        self.local.notify(tenant, user, frame);
        let _ = self.outgoing.send(payload);
    }

    fn disconnect(&self, tenant: &TenantId, user: &UserId) {
        let payload = wire::encode_notification(&self.node_id, tenant.as_str(), user.as_str(), &[]);
        self.local.disconnect(tenant, user);
        let _ = self.outgoing.send(payload);
    }
}

/// Publishes the frames queued, in batches; a batch Redis does not take is dropped.
async fn publish(link: Link, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for payload in batch.drain(..) {
            pipe.publish(keys::NOTIFY, payload).ignore();
        }
        if let Err(error) = link.pipe::<()>("notify_publish", &pipe).await {
            tracing::warn!(%error, "private frames not relayed to other nodes");
        }
    }
}

/// Keeps a subscription to [`keys::NOTIFY`] and delivers other nodes' frames to this node's
/// connections; reconnects with backoff.
async fn subscribe(
    link: Link,
    node_id: String,
    local: Arc<LocalNotifier>,
    subscribed: watch::Sender<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        match timed("notify_connect", link.client().get_async_pubsub()).await {
            Ok(pubsub) => {
                let (mut sink, mut messages) = pubsub.split();
                if timed("notify_subscribe", sink.subscribe(keys::NOTIFY))
                    .await
                    .is_ok()
                {
                    backoff = MIN_BACKOFF;
                    subscribed.send_replace(true);
                    let mut ping = tokio::time::interval(crate::presence::EVERY);
                    ping.tick().await;
                    loop {
                        tokio::select! {
                            message = messages.next() => {
                                let Some(message) = message else { break };
                                deliver(&local, &node_id, message.get_payload_bytes());
                            }
                            _ = ping.tick() => {
                                if timed("notify_ping", sink.ping::<redis::Value>()).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    tracing::warn!("notifier subscription lost");
                }
            }
            Err(error) => tracing::warn!(%error, "notifier subscription failed"),
        }
        subscribed.send_replace(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn deliver(local: &LocalNotifier, node_id: &str, payload: &[u8]) {
    match wire::decode_notification(payload) {
        Ok(note) if note.origin != node_id => {
            let tenant = TenantId::from_trusted(note.tenant);
            let user = UserId::from_trusted(note.user);
            if note.frame.is_empty() {
                local.disconnect(&tenant, &user);
            } else {
                local.notify(&tenant, &user, note.frame);
            }
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "private frame dropped"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use liveshop_actors::connection::Connection;
    use liveshop_engine::StreamId;

    use super::*;
    use crate::testing::RedisServer;

    #[derive(Default)]
    struct Inbox {
        id: u64,
        got: Mutex<Vec<Vec<u8>>>,
        banned: std::sync::atomic::AtomicBool,
    }

    impl Connection for Inbox {
        fn id(&self) -> u64 {
            self.id
        }
        fn deliver(&self, _frame: &Bytes) -> bool {
            true
        }
        fn send_json(&self, json: &[u8]) -> bool {
            self.got.lock().unwrap().push(json.to_vec());
            true
        }
        fn rejoin(&self, _stream: &StreamId) {}
        fn close_banned(&self) {
            self.banned.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Inbox {
        fn got(&self) -> Vec<Vec<u8>> {
            self.got.lock().unwrap().clone()
        }
        fn banned(&self) -> bool {
            self.banned.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn a_frame_reaches_the_users_connections_on_every_node_once() {
        let server = RedisServer::start();
        let link = Link::open(&server.url()).unwrap();
        let (a, b) = (
            RedisNotifier::start(link.clone(), "a"),
            RedisNotifier::start(link, "b"),
        );
        assert!(a.subscribed().await && b.subscribed().await);
        let tenant = TenantId::from_trusted("ten_1");
        let (user, other) = (UserId::from_trusted("usr_1"), UserId::from_trusted("usr_2"));
        let on_a = Arc::new(Inbox {
            id: 1,
            ..Inbox::default()
        });
        let on_b = Arc::new(Inbox {
            id: 2,
            ..Inbox::default()
        });
        let other_on_b = Arc::new(Inbox {
            id: 3,
            ..Inbox::default()
        });
        a.register(&tenant, &user, on_a.clone());
        b.register(&tenant, &user, on_b.clone());
        b.register(&tenant, &other, other_on_b.clone());
        a.notify(&tenant, &user, Bytes::from_static(b"{\"n\":1}"));
        let started = tokio::time::Instant::now();
        while on_b.got().is_empty() {
            assert!(started.elapsed() < Duration::from_secs(5), "b got nothing");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(on_a.got(), [b"{\"n\":1}".to_vec()]);
        assert_eq!(on_b.got(), [b"{\"n\":1}".to_vec()]);
        assert!(other_on_b.got().is_empty());
    }

    #[tokio::test]
    async fn a_ban_closes_the_users_connections_on_every_node_and_no_one_elses() {
        let server = RedisServer::start();
        let link = Link::open(&server.url()).unwrap();
        let (a, b) = (
            RedisNotifier::start(link.clone(), "a"),
            RedisNotifier::start(link, "b"),
        );
        assert!(a.subscribed().await && b.subscribed().await);
        let tenant = TenantId::from_trusted("ten_1");
        let other_tenant = TenantId::from_trusted("ten_2");
        let (user, other) = (UserId::from_trusted("usr_1"), UserId::from_trusted("usr_2"));
        let inbox = |id| {
            Arc::new(Inbox {
                id,
                ..Inbox::default()
            })
        };
        let (on_a, on_b, other_on_b, elsewhere_on_b) = (inbox(1), inbox(2), inbox(3), inbox(4));
        a.register(&tenant, &user, on_a.clone());
        b.register(&tenant, &user, on_b.clone());
        b.register(&tenant, &other, other_on_b.clone());
        b.register(&other_tenant, &user, elsewhere_on_b.clone());
        a.disconnect(&tenant, &user);
        assert!(on_a.banned(), "the banning node closes its own at once");
        let started = tokio::time::Instant::now();
        while !on_b.banned() {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "b kept the connection"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!other_on_b.banned() && !elsewhere_on_b.banned());
        assert!(on_b.got().is_empty(), "a ban is no frame");
    }

    #[tokio::test]
    async fn without_redis_a_frame_still_reaches_this_nodes_connections() {
        let mut server = RedisServer::start();
        let link = Link::open(&server.url()).unwrap();
        server.stop();
        let a = RedisNotifier::start(link, "a");
        let (tenant, user) = (
            TenantId::from_trusted("ten_1"),
            UserId::from_trusted("usr_1"),
        );
        let on_a = Arc::new(Inbox::default());
        a.register(&tenant, &user, on_a.clone());
        a.notify(&tenant, &user, Bytes::from_static(b"{}"));
        assert_eq!(on_a.got(), [b"{}".to_vec()]);
    }
}
