//! Ownership: one owner node per live stream, by a lease in Redis, with a fencing token from
//! storage.
//!
//! - A node takes a free stream with `SET lease <node> NX PX <lease>`, then takes the next fencing
//!   token of the stream from storage (`StreamStore::take_fence`) before anything of the stream
//!   runs here. From that moment storage refuses every write of the previous owner, however late
//!   it wakes up (a GC pause, SIGSTOP, a stalled network): that, not the lease, is what keeps a
//!   stale owner from writing a claim, a chat row or a status change.
//! - The owner renews its leases every third of the lease. A lease found held by another node,
//!   or gone (it lapsed, or Redis restarted empty), is lost: the stream's actors here are stopped
//!   and any node may place it again, with a new token.
//! - While Redis cannot be reached the owner keeps its streams and keeps serving them (contract
//!   section 6); a node that does not own a stream answers `unavailable` for it.
//! - Who owns another node's stream is remembered for a third of the lease, so relaying a request
//!   costs no Redis round trip of its own.
//!
//! Invariant: this node runs a stream's actors only while the stream is in `held`, and every
//! write they make carries the token taken when it entered `held`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use liveshop_actors::placement::{Placed, Placement};
use liveshop_engine::storage::{Fence, StreamStore};
use liveshop_engine::{ErrorCode, Rejection, StreamId};
use redis::Script;
use tokio::sync::mpsc;

use crate::keys;
use crate::link::Link;

/// Counter of streams this node became the owner of, by `kind`.
pub const OWNER_CHANGES: &str = "liveshop_owner_changes_total";

/// Longest a node trusts what it learnt of another node's ownership (a handed-over stream's
/// requests find its new owner after at most this).
const OWNER_MEMORY: Duration = Duration::from_secs(1);

/// Renews the lease if this node holds it: 1 renewed, 0 held by another node, -1 it was gone
/// and is this node's again (set anew: Redis restarted empty, or the lease lapsed while Redis
/// was out of reach); the caller then checks that nobody took the stream meanwhile.
const RENEW: &str = r#"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif owner then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return -1
"#;

/// Deletes the lease only if this node holds it.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// A stream this node owns.
#[derive(Debug, Clone, Copy)]
struct Held {
    token: u64,
}

/// Ownership leases of this node, in Redis, with fencing tokens from storage.
pub struct Leases {
    link: Link,
    node: String,
    lease: Duration,
    fences: Arc<dyn StreamStore>,
    held: DashMap<StreamId, Held>,
    /// Where a stream handed over to this node in order continues, until its actor starts.
    continuations: DashMap<StreamId, (u64, u64)>,
    /// Owners of other nodes' streams, and when that was learnt.
    owners: DashMap<StreamId, (String, Instant)>,
    /// One acquisition at a time, so two requests for a free stream never take two tokens.
    acquiring: tokio::sync::Mutex<()>,
    /// When a Redis call of this node last failed: for a lease after Redis is back, free
    /// streams are left to their previous owners, which set their vanished leases again.
    redis_failed_at: Mutex<Option<Instant>>,
    /// Set by a planned shutdown: this node takes no stream any more.
    draining: std::sync::atomic::AtomicBool,
    lost: Mutex<Option<mpsc::UnboundedSender<StreamId>>>,
    renew: Script,
    release: Script,
}

impl Leases {
    /// Leases of node `node`, lasting `lease` unless renewed, taking tokens from `fences`; renews
    /// them in a background task until the returned value is dropped.
    pub fn start(
        link: Link,
        node: String,
        lease: Duration,
        fences: Arc<dyn StreamStore>,
    ) -> Arc<Self> {
        let leases = Arc::new(Self {
            link,
            node,
            lease,
            fences,
            held: DashMap::new(),
            continuations: DashMap::new(),
            owners: DashMap::new(),
            acquiring: tokio::sync::Mutex::new(()),
            draining: std::sync::atomic::AtomicBool::new(false),
            redis_failed_at: Mutex::new(None),
            lost: Mutex::new(None),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        });
        let weak = Arc::downgrade(&leases);
        let every = lease / 3;
        tokio::spawn(async move {
            let mut timer = tokio::time::interval(every);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                timer.tick().await;
                let Some(leases) = weak.upgrade() else { return };
                leases.renew_all().await;
            }
        });
        leases
    }

    /// A planned shutdown begins: from now on this node takes no stream (the streams it hands
    /// over go to other nodes, not back to itself).
    pub fn stop_taking(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    /// Renews every lease held; those lost are reported and forgotten.
    async fn renew_all(&self) {
        let streams: Vec<StreamId> = self.held.iter().map(|e| e.key().clone()).collect();
        for stream in streams {
            let mut call = self.renew.key(keys::lease(&stream));
            call.arg(&self.node).arg(self.lease_ms());
            match self.link.script::<i64>("lease_renew", &call).await {
                Ok(1) => {}
                Ok(-1) => self.reclaim(&stream).await,
                Ok(_) => {
                    tracing::warn!(stream_id = %stream, node_id = %self.node, "lost a stream: another node holds its lease");
                    self.lose(&stream);
                }
                // Redis unreachable: keep serving what this node owns (fencing guards storage).
                Err(err) => {
                    self.redis_failed();
                    tracing::warn!(error = %err, "could not renew a lease; keeping the stream");
                }
            }
        }
    }

    /// The lease had vanished and is set again for this node: it keeps the stream only if no
    /// other node took a fencing token for it meanwhile (else that node may have written, and
    /// this node's view of the stream is stale).
    async fn reclaim(&self, stream: &StreamId) {
        let Some(mine) = self.held.get(stream).map(|h| h.token) else {
            return;
        };
        match self.fences.fence_of(stream.as_str()).await {
            Ok(Some(token)) if token == mine => {
                tracing::info!(stream_id = %stream, node_id = %self.node, token, "lease set again after it vanished; nobody took the stream meanwhile");
            }
            Ok(other) => {
                tracing::warn!(stream_id = %stream, node_id = %self.node, mine, highest = ?other, "lost a stream: another node took it while the lease was gone");
                self.lose(stream);
                self.release_in_redis(stream).await;
            }
            // Storage cannot tell: keep serving; storage refuses the writes if it was taken.
            Err(err) => {
                tracing::warn!(stream_id = %stream, error = %err, "could not check a stream's fence after its lease vanished; keeping it");
            }
        }
    }

    fn lose(&self, stream: &StreamId) {
        self.held.remove(stream);
        let lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = lost.as_ref() {
            let _ = tx.send(stream.clone());
        }
    }

    /// Takes `stream` for this node if nobody holds it; else says who does.
    async fn acquire(&self, stream: &StreamId) -> Result<Placed, Rejection> {
        let _one_at_a_time = self.acquiring.lock().await;
        if let Some(held) = self.held.get(stream) {
            return Ok(Placed::Here(Fence::owner(stream.as_str(), held.token)));
        }
        let key = keys::lease(stream);
        let recovering = self
            .redis_failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < self.lease);
        let draining = self.draining.load(std::sync::atomic::Ordering::Relaxed) || recovering;
        if draining {
            return match self.lease_owner(&key).await? {
                Some(owner) if owner != self.node => Ok(Placed::Elsewhere(owner)),
                _ => Err(Rejection::new(
                    ErrorCode::Unavailable,
                    "the stream's owner is not known yet; retry",
                )),
            };
        }
        for _ in 0..2 {
            let mut set = redis::cmd("SET");
            set.arg(&key)
                .arg(&self.node)
                .arg("NX")
                .arg("PX")
                .arg(self.lease_ms());
            let taken: Option<String> = self
                .link
                .query("lease_take", &set)
                .await
                .map_err(|e| self.unreachable(&e))?;
            if taken.is_some() {
                return self.took(stream).await;
            }
            match self.lease_owner(&key).await? {
                // A lease of this node's id that this process does not hold: an earlier process
                // with the same id. Take it over with a new token.
                Some(owner) if owner == self.node => return self.took(stream).await,
                Some(owner) => {
                    self.owners
                        .insert(stream.clone(), (owner.clone(), Instant::now()));
                    return Ok(Placed::Elsewhere(owner));
                }
                // It lapsed between the two calls: try again.
                None => continue,
            }
        }
        Err(Rejection::new(
            ErrorCode::Unavailable,
            "stream ownership is changing; retry",
        ))
    }

    /// The lease is this node's: take the next fencing token before anything runs.
    async fn took(&self, stream: &StreamId) -> Result<Placed, Rejection> {
        match self.fences.take_fence(stream.as_str()).await {
            Ok(token) => {
                self.continuation(stream).await;
                self.held.insert(stream.clone(), Held { token });
                self.owners.remove(stream);
                metrics::counter!(OWNER_CHANGES, "kind" => "stream").increment(1);
                tracing::info!(stream_id = %stream, node_id = %self.node, token, "this node owns the stream");
                Ok(Placed::Here(Fence::owner(stream.as_str(), token)))
            }
            Err(err) => {
                tracing::error!(stream_id = %stream, error = %err, source = ?std::error::Error::source(&err),
                    "could not take a fencing token; giving the lease back");
                self.release_in_redis(stream).await;
                Err(Rejection::new(
                    ErrorCode::Unavailable,
                    "storage unavailable; retry",
                ))
            }
        }
    }

    /// Reads (and consumes) the previous owner's hand-over mark: with it, the stream continues
    /// the epoch and seq of its history.
    async fn continuation(&self, stream: &StreamId) {
        let marked: Option<String> = match self
            .link
            .query(
                "handover_take",
                redis::cmd("GETDEL").arg(keys::handover(stream)),
            )
            .await
        {
            Ok(marked) => marked,
            Err(err) => {
                tracing::warn!(stream_id = %stream, error = %err, "could not read a hand-over mark; a new epoch begins");
                return;
            }
        };
        if marked.is_none() {
            return;
        }
        let head: Result<(Option<u64>, Option<u64>), _> = self
            .link
            .query(
                "handover_head",
                redis::cmd("HMGET")
                    .arg(keys::meta(stream))
                    .arg("epoch")
                    .arg("seq"),
            )
            .await;
        if let Ok((Some(epoch), Some(seq))) = head {
            tracing::info!(stream_id = %stream, epoch, seq, "handed over in order: the epoch continues");
            self.continuations.insert(stream.clone(), (epoch, seq));
        }
    }

    /// The node holding the lease at `key`, if any.
    async fn lease_owner(&self, key: &str) -> Result<Option<String>, Rejection> {
        self.link
            .query("lease_owner", redis::cmd("GET").arg(key))
            .await
            .map_err(|e| self.unreachable(&e))
    }

    async fn release_in_redis(&self, stream: &StreamId) {
        release(&self.link, &self.node, &self.release, stream).await;
    }
}

impl Leases {
    fn redis_failed(&self) {
        *self
            .redis_failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// [`unreachable_coordination`], remembering that Redis failed.
    fn unreachable(&self, err: &crate::link::LinkError) -> Rejection {
        self.redis_failed();
        unreachable_coordination(err)
    }
}

/// Deletes `stream`'s lease if `node` holds it; a failure only logs (the lease lapses by itself).
async fn release(link: &Link, node: &str, script: &Script, stream: &StreamId) {
    let mut call = script.key(keys::lease(stream));
    call.arg(node);
    if let Err(err) = link.script::<i64>("lease_release", &call).await {
        tracing::warn!(stream_id = %stream, error = %err, "could not release a lease; it lapses by itself");
    }
}

fn unreachable_coordination(err: &crate::link::LinkError) -> Rejection {
    tracing::warn!(error = %err, "stream ownership could not be read from Redis");
    Rejection::new(
        ErrorCode::Unavailable,
        "the cluster cannot be reached; retry",
    )
}

#[async_trait::async_trait]
impl Placement for Leases {
    async fn place(&self, stream: &StreamId) -> Result<Placed, Rejection> {
        if let Some(held) = self.held.get(stream) {
            return Ok(Placed::Here(Fence::owner(stream.as_str(), held.token)));
        }
        if let Some(owner) = self.owners.get(stream)
            && owner.1.elapsed() < (self.lease / 3).min(OWNER_MEMORY)
        {
            return Ok(Placed::Elsewhere(owner.0.clone()));
        }
        self.acquire(stream).await
    }

    fn released(&self, stream: &StreamId) {
        if self.held.remove(stream).is_none() {
            return;
        }
        let (link, node, script) = (self.link.clone(), self.node.clone(), self.release.clone());
        let stream = stream.clone();
        tokio::spawn(async move { release(&link, &node, &script, &stream).await });
    }

    fn take_continuation(&self, stream: &StreamId) -> Option<(u64, u64)> {
        self.continuations.remove(stream).map(|(_, at)| at)
    }

    async fn hand_over(&self, stream: &StreamId, history_complete: bool) {
        if self.held.remove(stream).is_none() {
            return;
        }
        if history_complete {
            let mut mark = redis::cmd("SET");
            mark.arg(keys::handover(stream))
                .arg("1")
                .arg("PX")
                .arg(60_000);
            if let Err(err) = self.link.query::<()>("handover_mark", &mark).await {
                tracing::warn!(stream_id = %stream, error = %err, "could not mark a hand-over; the next owner begins a new epoch");
            }
        }
        self.release_in_redis(stream).await;
    }

    fn unreachable(&self, stream: &StreamId, node: &str) {
        self.owners.remove_if(stream, |_, (owner, _)| owner == node);
    }

    fn on_lost(&self, lost: mpsc::UnboundedSender<StreamId>) {
        *self.lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(lost);
    }

    fn held(&self) -> Vec<StreamId> {
        self.held.iter().map(|e| e.key().clone()).collect()
    }
}
