//! The node list: every node writes a heartbeat into one Redis hash every third of the lease,
//! with its connection and stream counts; a node that stopped writing for `2 × lease` is no longer
//! listed (contract section 6, `GET /v1/admin/cluster`), and one silent for much longer is removed
//! from the hash.

use std::sync::Arc;
use std::time::Duration;

use liveshop_engine::timestamp::Timestamp;
use serde::{Deserialize, Serialize};

use crate::keys;
use crate::link::{Link, LinkError};

/// Gauge of the nodes this node sees alive.
pub const CLUSTER_NODES: &str = "liveshop_cluster_nodes";

/// What a node says of itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Its id (`LIVESHOP_NODE_ID`).
    pub id: String,
    /// When it started.
    pub started_at: Timestamp,
    /// WebSocket connections it serves.
    pub connections: u64,
    /// Live streams it owns.
    pub streams_owned: u64,
    /// When it wrote this heartbeat (milliseconds since the Unix epoch).
    pub seen_ms: i64,
}

/// The counts a heartbeat reports, read from the node when it is written.
pub trait NodeStats: Send + Sync + 'static {
    /// WebSocket connections served now.
    fn connections(&self) -> u64;
    /// Live streams owned now.
    fn streams_owned(&self) -> u64;
}

/// This node's heartbeat, and the list of nodes.
pub struct Nodes {
    link: Link,
    node: String,
    started_at: Timestamp,
    lease: Duration,
}

/// Heartbeats older than this many leases are deleted from the hash.
const FORGET_AFTER_LEASES: u32 = 20;

fn now_ms() -> i64 {
    liveshop_actors::clock::now().millis()
}

impl Nodes {
    /// Starts writing this node's heartbeat every third of `lease`, with counts from `stats`.
    pub fn start(
        link: Link,
        node: String,
        lease: Duration,
        stats: Arc<dyn NodeStats>,
    ) -> Arc<Self> {
        let nodes = Arc::new(Self {
            link,
            node,
            started_at: liveshop_actors::clock::now(),
            lease,
        });
        let weak = Arc::downgrade(&nodes);
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(lease / 3);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                let Some(nodes) = weak.upgrade() else { return };
                if let Err(err) = nodes.beat(stats.as_ref()).await {
                    tracing::debug!(error = %err, "could not write this node's heartbeat");
                }
            }
        });
        nodes
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.node
    }

    async fn beat(&self, stats: &dyn NodeStats) -> Result<(), LinkError> {
        let me = NodeInfo {
            id: self.node.clone(),
            started_at: self.started_at,
            connections: stats.connections(),
            streams_owned: stats.streams_owned(),
            seen_ms: now_ms(),
        };
        let json = serde_json::to_string(&me).unwrap_or_default();
        self.link
            .query::<()>(
                "node_heartbeat",
                redis::cmd("HSET")
                    .arg(keys::NODES)
                    .arg(&self.node)
                    .arg(json),
            )
            .await?;
        let all = self.read().await?;
        let alive = all.iter().filter(|n| self.alive(n)).count();
        metrics::gauge!(CLUSTER_NODES).set(alive as f64);
        let forget = self.lease.as_millis() as i64 * i64::from(FORGET_AFTER_LEASES);
        for gone in all.iter().filter(|n| now_ms() - n.seen_ms > forget) {
            let _ = self
                .link
                .query::<()>(
                    "node_forget",
                    redis::cmd("HDEL").arg(keys::NODES).arg(&gone.id),
                )
                .await;
        }
        Ok(())
    }

    fn alive(&self, node: &NodeInfo) -> bool {
        now_ms() - node.seen_ms <= 2 * self.lease.as_millis() as i64
    }

    async fn read(&self) -> Result<Vec<NodeInfo>, LinkError> {
        let raw: Vec<(String, String)> = self
            .link
            .query("node_list", redis::cmd("HGETALL").arg(keys::NODES))
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|(_, json)| serde_json::from_str(&json).ok())
            .collect())
    }

    /// The nodes that wrote a heartbeat within the last `2 × lease`, by id.
    pub async fn list(&self) -> Result<Vec<NodeInfo>, LinkError> {
        let mut alive: Vec<NodeInfo> = self
            .read()
            .await?
            .into_iter()
            .filter(|n| self.alive(n))
            .collect();
        alive.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(alive)
    }

    /// Removes this node from the list (a planned shutdown).
    pub async fn leave(&self) {
        let _ = self
            .link
            .query::<()>(
                "node_leave",
                redis::cmd("HDEL").arg(keys::NODES).arg(&self.node),
            )
            .await;
    }
}
