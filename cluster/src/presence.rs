//! Viewer counts summed over nodes (contract: `viewers` is the sum over all nodes, and may trail
//! by up to 2 s).
//!
//! Once a second a background task writes this node's count of every stream it has viewers of
//! into the stream's `viewers` hash (field: node id, value `count:unix_ms`; the key expires a few
//! seconds after the last write), removes its field for streams whose viewers all left, and, for
//! the streams asked about in the last [`ASKED_WINDOW`], reads the hash and keeps the sum of the
//! other nodes' fresh entries. [`Presence::viewers`] never waits: it adds that sum to this node's
//! count now. Cost: one write per stream with local viewers and one `HGETALL` of O(nodes) per
//! stream asked about, per second; nothing per viewer.
//!
//! Invariants: entries older than [`FRESH`] (a node that stopped) count for nothing; while Redis
//! cannot be read, the other nodes' sum is kept for [`FRESH`], then counts as 0 (this node's own
//! viewers are always counted).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use liveshop_actors::fanout::hub::Hub;
use liveshop_actors::fanout::presence::Presence;
use liveshop_engine::StreamId;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::keys;
use crate::link::Link;

/// How often this node writes its counts and reads the others'.
pub const EVERY: Duration = Duration::from_secs(1);
/// Age past which a node's entry no longer counts.
pub const FRESH: Duration = Duration::from_secs(3);
/// Expiry of a stream's `viewers` hash after this node's last write to it.
const KEY_TTL: Duration = Duration::from_secs(5);
/// Streams asked about within this window have their sum kept up to date.
pub const ASKED_WINDOW: Duration = Duration::from_secs(10);

/// The other nodes' viewers of a stream, as last read.
struct Others {
    sum: u64,
    read_at: Option<Instant>,
    asked_at: Instant,
}

struct Shared {
    link: Link,
    node_id: String,
    hub: Arc<Hub>,
    others: DashMap<StreamId, Others>,
}

/// Presence of a node in cluster mode. See the module documentation.
pub struct RedisPresence {
    shared: Arc<Shared>,
    task: AbortHandle,
}

impl RedisPresence {
    /// Starts publishing the counts of `hub` as node `node_id`, and summing the other nodes'.
    pub fn start(link: Link, node_id: impl Into<String>, hub: Arc<Hub>) -> Arc<Self> {
        let shared = Arc::new(Shared {
            link,
            node_id: node_id.into(),
            hub,
            others: DashMap::new(),
        });
        let task = tokio::spawn(run(shared.clone())).abort_handle();
        Arc::new(Self { shared, task })
    }
}

impl Drop for RedisPresence {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Presence for RedisPresence {
    fn viewers(&self, stream: &StreamId) -> u64 {
        let local = self.shared.hub.subscribers(stream) as u64;
        let now = Instant::now();
        let mut others = self
            .shared
            .others
            .entry(stream.clone())
            .or_insert_with(|| Others {
                sum: 0,
                read_at: None,
                asked_at: now,
            });
        others.asked_at = now;
        let fresh = others
            .read_at
            .is_some_and(|at| now.duration_since(at) <= FRESH);
        local + if fresh { others.sum } else { 0 }
    }
}

async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(EVERY);
    let mut reported: HashSet<StreamId> = HashSet::new();
    loop {
        tick.tick().await;
        reported = shared.round(reported).await;
    }
}

impl Shared {
    /// Writes this node's counts and reads the sums asked for; returns the streams this node
    /// now has an entry for.
    async fn round(&self, reported: HashSet<StreamId>) -> HashSet<StreamId> {
        let now_ms = unix_ms();
        let mut pipe = redis::pipe();
        let mut now_reported = HashSet::new();
        for (stream, count) in self.hub.streams() {
            if count == 0 {
                continue;
            }
            let key = keys::viewers(&stream);
            pipe.hset(&key, &self.node_id, format!("{count}:{now_ms}"))
                .ignore()
                .pexpire(&key, KEY_TTL.as_millis() as i64)
                .ignore();
            now_reported.insert(stream);
        }
        for gone in reported.difference(&now_reported) {
            pipe.hdel(keys::viewers(gone), &self.node_id).ignore();
        }
        self.others
            .retain(|_, others| others.asked_at.elapsed() <= ASKED_WINDOW);
        let asked: Vec<StreamId> = self.others.iter().map(|o| o.key().clone()).collect();
        for stream in &asked {
            pipe.hgetall(keys::viewers(stream));
        }
        if pipe.is_empty() {
            return now_reported;
        }
        let read: Vec<HashMap<String, String>> = match self.link.pipe("presence", &pipe).await {
            Ok(read) => read,
            Err(error) => {
                tracing::debug!(%error, "presence round failed");
                // Entries not removed now expire with their key, or are removed next round.
                return now_reported.union(&reported).cloned().collect();
            }
        };
        let read_at = Instant::now();
        for (stream, entries) in asked.iter().zip(read) {
            let sum = sum_of_others(&entries, &self.node_id, now_ms);
            if let Some(mut others) = self.others.get_mut(stream) {
                others.sum = sum;
                others.read_at = Some(read_at);
            }
        }
        now_reported
    }
}

/// The viewers of the entries of nodes other than `node_id` written within [`FRESH`] of
/// `now_ms`.
fn sum_of_others(entries: &HashMap<String, String>, node_id: &str, now_ms: u64) -> u64 {
    entries
        .iter()
        .filter(|(node, _)| node.as_str() != node_id)
        .filter_map(|(_, value)| {
            let (count, at) = value.split_once(':')?;
            let (count, at) = (count.parse::<u64>().ok()?, at.parse::<u64>().ok()?);
            (now_ms.saturating_sub(at) <= FRESH.as_millis() as u64).then_some(count)
        })
        .sum()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::RedisServer;

    fn stream() -> StreamId {
        StreamId::from_trusted(format!("str_{}", uuid::Uuid::new_v4().simple()))
    }

    /// A hub counting `n` viewers of `stream` (connections about to join count at once).
    fn hub_with(stream: &StreamId, n: usize) -> Arc<Hub> {
        let hub = Arc::new(Hub::new(16));
        for _ in 0..n {
            hub.joining(stream);
        }
        hub
    }

    async fn eventually(presence: &RedisPresence, stream: &StreamId, want: u64) {
        let started = Instant::now();
        while presence.viewers(stream) != want {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "viewers stayed {} instead of {want}",
                presence.viewers(stream)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[test]
    fn only_fresh_entries_of_other_nodes_count() {
        let entries = HashMap::from([
            ("me".to_string(), "100:10000".to_string()),
            ("fresh".to_string(), "2:9000".to_string()),
            ("stale".to_string(), "50:5000".to_string()),
            ("garbage".to_string(), "x".to_string()),
        ]);
        assert_eq!(sum_of_others(&entries, "me", 10_000), 2);
    }

    #[tokio::test]
    async fn two_nodes_see_the_sum_of_their_viewers_and_a_node_whose_viewers_left_drops_out() {
        let server = RedisServer::start();
        let s = stream();
        let (hub_a, hub_b) = (hub_with(&s, 2), hub_with(&s, 3));
        let link = Link::open(&server.url()).unwrap();
        let a = RedisPresence::start(link.clone(), "a", hub_a.clone());
        let b = RedisPresence::start(link, "b", hub_b);
        // Before any round: this node's own viewers, at once.
        assert_eq!(a.viewers(&s), 2);
        eventually(&a, &s, 5).await;
        eventually(&b, &s, 5).await;
        // Every viewer on a leaves: a removes its entry, and b soon counts only its own.
        hub_a.leave(&s, Arc::new(Nobody), None);
        eventually(&a, &s, 3).await;
        eventually(&b, &s, 3).await;
    }

    /// A connection that takes nothing (to make a hub apply a leave).
    struct Nobody;

    impl liveshop_actors::connection::Connection for Nobody {
        fn id(&self) -> u64 {
            u64::MAX
        }
        fn deliver(&self, _frame: &bytes::Bytes) -> bool {
            false
        }
        fn rejoin(&self, _stream: &StreamId) {}
        fn close_banned(&self) {}
    }

    #[tokio::test]
    async fn entries_of_a_stopped_node_stop_counting() {
        let server = RedisServer::start();
        let s = stream();
        let link = Link::open(&server.url()).unwrap();
        let ghost_at = unix_ms() - 10_000;
        let _: i64 = link
            .query(
                "test_hset",
                redis::cmd("HSET")
                    .arg(keys::viewers(&s))
                    .arg("ghost")
                    .arg(format!("40:{ghost_at}"))
                    .arg("alive")
                    .arg(format!("4:{}", unix_ms() + 60_000)),
            )
            .await
            .unwrap();
        let a = RedisPresence::start(link, "a", hub_with(&s, 1));
        a.viewers(&s);
        eventually(&a, &s, 5).await;
    }
}
