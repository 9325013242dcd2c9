//! Cluster mode's composition (contract section 6): with `REDIS_URL` set, this node's fan-out,
//! placement and relay come from `liveshop-cluster` instead of their single-node versions. The
//! actor tree and the front door are the same in both modes.

use std::sync::Arc;
use std::time::Duration;

use liveshop_actors::engine::Cluster;
use liveshop_actors::fanout::Fanout;
use liveshop_actors::fanout::bus::BusSink;
use liveshop_actors::fanout::hub::Hub;
use liveshop_actors::{Engine, EngineConfig};
use liveshop_cluster::bus::RedisBus;
use liveshop_cluster::lease::Leases;
use liveshop_cluster::link::Link;
use liveshop_cluster::nodes::{NodeStats, Nodes};
use liveshop_cluster::notifier::RedisNotifier;
use liveshop_cluster::presence::RedisPresence;
use liveshop_cluster::relay::Relay;
use liveshop_engine::storage::Storage;

use crate::config::Config;
use crate::ws::keepalive::Live;

/// Events kept per stream in Redis for resume on any node (at least the contract's 1,000).
const MIN_HISTORY: usize = 1000;

/// This node's parts of the cluster, kept by the application.
pub struct ClusterNode {
    /// This node's id.
    pub node_id: String,
    /// The shared Redis connection (readiness pings it).
    pub link: Link,
    /// The node list and this node's heartbeat.
    nodes: std::sync::OnceLock<Arc<Nodes>>,
    relay: Arc<Relay>,
    leases: Arc<Leases>,
    lease: Duration,
}

impl ClusterNode {
    /// Opens the link and builds the fan-out and placement of a cluster node. Nothing waits on
    /// Redis: a node starts (and serves its own connections) while Redis is down.
    pub fn build(
        config: &Config,
        store: &Arc<dyn Storage>,
        url: &str,
        resume_buffer: usize,
    ) -> anyhow::Result<(Self, Fanout, Cluster)> {
        let node_id = config.node_id();
        let link = Link::open(url)?;
        crate::telemetry::describe_cluster_metrics();
        let hub = Arc::new(Hub::new(resume_buffer));
        let sink: Arc<dyn BusSink> = hub.clone();
        let bus = RedisBus::start(
            link.clone(),
            node_id.clone(),
            sink,
            resume_buffer.max(MIN_HISTORY),
        );
        let presence = RedisPresence::start(link.clone(), node_id.clone(), hub.clone());
        let notifier = RedisNotifier::start(link.clone(), node_id.clone());
        let fanout = Fanout::new(hub, bus, presence, notifier);
        let leases = Leases::start(
            link.clone(),
            node_id.clone(),
            config.owner_lease(),
            store.clone(),
        );
        let relay = Relay::start(link.clone(), node_id.clone());
        let cluster = Cluster {
            placement: leases.clone(),
            remote: relay.clone(),
            offer_live_streams: true,
        };
        tracing::info!(node_id = %node_id, lease_ms = config.owner_lease_ms, "cluster mode: this node shares its streams through Redis");
        Ok((
            Self {
                node_id,
                link,
                nodes: std::sync::OnceLock::new(),
                relay,
                leases,
                lease: config.owner_lease(),
            },
            fanout,
            cluster,
        ))
    }

    /// The engine's tunables in cluster mode: live streams nobody owns (their owner died, or
    /// handed them over) are looked for every half lease, and at least every second, so one is
    /// taken over within `2 × lease`, and a handed-over one within about a second.
    pub fn engine_config(&self, config: EngineConfig) -> EngineConfig {
        EngineConfig {
            recovery_every: (self.lease / 2).min(Duration::from_secs(1)),
            ..config
        }
    }

    /// Starts serving relayed calls with `engine` and writing this node's heartbeat.
    pub fn serve(&self, engine: &Engine, live: Arc<Live>) {
        self.relay.serve(engine.clone());
        let stats = Arc::new(Stats {
            engine: engine.clone(),
            live,
        });
        let nodes = Nodes::start(self.link.clone(), self.node_id.clone(), self.lease, stats);
        let _ = self.nodes.set(nodes);
    }

    /// The node list.
    pub fn nodes(&self) -> Option<&Arc<Nodes>> {
        self.nodes.get()
    }

    /// A planned shutdown: hands every stream this node owns to other nodes before its
    /// connections close, and leaves the node list.
    pub async fn hand_over(&self, engine: &Engine) {
        self.leases.stop_taking();
        let streams = engine.hand_over().await;
        tracing::info!(node_id = %self.node_id, streams, "streams handed over to other nodes");
        if let Some(nodes) = self.nodes.get() {
            nodes.leave().await;
        }
    }
}

/// What the heartbeat reports, read from the engine and the connection list.
struct Stats {
    engine: Engine,
    live: Arc<Live>,
}

impl NodeStats for Stats {
    fn connections(&self) -> u64 {
        self.live.len() as u64
    }

    fn streams_owned(&self) -> u64 {
        self.engine.streams_owned() as u64
    }
}
