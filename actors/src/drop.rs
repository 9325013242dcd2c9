//! One actor per open drop: decides claims in arrival order, answers only once they are durable.
//!
//! Group commit ([`GroupCommit`]): claims decided while a write is in flight are queued and all go
//! into the next single transaction. The write runs in its own task, so the actor keeps deciding
//! meanwhile. A per-drop commit lock, held by the write task and taken by a restarting actor
//! before it reads storage, makes sure a restarted actor never rebuilds its inventory from a
//! half-finished picture.
//! Holds expire from what is stored (`expires_at`), checked every second (once one is due in the
//! book, which is rebuilt from storage on restart), so expiry survives restarts.
//!
//! The actor never waits for the database while claims may be arriving: commits, expiry checks and
//! open ⇄ sold-out status writes run in tasks of their own (under the commit lock) and report back
//! with a message, so a slow statement under load delays no decision.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liveshop_engine::drops::{Announce, CloseReason, Decision, DropBook};
use liveshop_engine::frames::{EventBody, ServerFrame};
use liveshop_engine::group_commit::{Finished, GroupCommit};
use liveshop_engine::ids::ClaimId;
use liveshop_engine::pacing::LatestValuePacer;
use liveshop_engine::records::{Claim, Drop, DropStatus};
use liveshop_engine::storage::{DropStore, NewClaim, RowOutcome, write_isolating};
use liveshop_engine::{DropId, ErrorCode, Rejection, TenantId, UserId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::Mutex;

use liveshop_engine::StreamId;
use liveshop_engine::storage::{Fence, StorageError};

use crate::clock::TimeAndIds;
use crate::fanout::notifier::Notifier;
use crate::mailbox::Depth;
use crate::metrics::{self, AliveGuard, kind};
use crate::slot::Slot;
use crate::stream::StreamMsg;
use crate::supervise::{Registry, StartError};
use crate::tree::ActorTree;

/// How often stored holds are checked for expiry: a hold is expired at most this long (plus one
/// timer period and the write) after its `expires_at`.
pub const EXPIRY_EVERY: Duration = Duration::from_millis(500);
/// Inventory events are sent at most this often per drop (10/s), each at least this long after
/// the first change it reports (see [`LatestValuePacer`]); also the actor's timer period.
pub const INVENTORY_EVERY: Duration = Duration::from_millis(100);

/// A claim's answer: the claim, and whether this call created it (201) or found it (200).
#[derive(Debug, Clone)]
pub struct ClaimOutcome {
    /// The claim.
    pub claim: Claim,
    /// True for a new reservation, false for a repeated idempotency key.
    pub created: bool,
}

type ClaimReply = RpcReplyPort<Result<ClaimOutcome, Rejection>>;

/// What a drop actor is given at spawn: only what it uses.
#[derive(Clone)]
pub struct DropCaps {
    /// The drop and its claims: the one aggregate it owns.
    pub store: Arc<dyn DropStore>,
    /// Where private `claim_update` frames go to buyers.
    pub notifier: Arc<dyn Notifier>,
    /// The stable addresses of streams, where the drop finds its own stream's (which outlives
    /// the stream actor's restarts).
    pub streams: Arc<Registry<StreamId, StreamMsg>>,
    /// Time and fresh ids.
    pub time: TimeAndIds,
    /// Most claims written in one transaction; 1 turns group commit off.
    pub claim_batch_max: usize,
    /// Where it lists itself for operators.
    pub tree: Arc<ActorTree>,
}

/// Start-up arguments of a drop actor.
pub struct DropArgs {
    /// Its capabilities.
    pub caps: DropCaps,
    /// Owning tenant.
    pub tenant: TenantId,
    /// The drop.
    pub drop: DropId,
    /// What its writes carry: its stream owner's token in cluster mode.
    pub fence: Fence,
    /// The drop's commit lock; it outlives the actor's incarnations.
    pub lock: Arc<Mutex<()>>,
    /// Its mailbox counter.
    pub depth: Depth,
}

/// Messages of a drop actor.
pub enum DropMsg {
    /// A buyer claims units.
    Claim {
        /// Buyer.
        user: UserId,
        /// Units.
        quantity: i64,
        /// Idempotency key.
        key: String,
        /// The answer, sent once the reservation is durable.
        reply: ClaimReply,
    },
    /// The write task finished a batch: what became of each claim, in the batch's order.
    Committed(Vec<RowOutcome>),
    /// The expiry task expired these holds in storage (already told to their buyers).
    Expired(Result<Vec<Claim>, StorageError>),
    /// The status task stored this open ⇄ sold-out status (or failed to).
    StatusStored(Result<DropStatus, StorageError>),
    /// Close the drop (seller, duration, stream end); answered once the close is stored.
    Close(CloseReason, Option<RpcReplyPort<Result<Drop, Rejection>>>),
    /// Mark a reservation paid.
    Pay(ClaimId, RpcReplyPort<Result<Claim, Rejection>>),
    /// Timer: expire due holds, send coalesced inventory, close when the duration ran out.
    Tick,
    /// Fault injection: panic.
    Crash,
}

/// The drop actor.
pub struct DropActor;

/// Its state.
pub struct DropState {
    caps: DropCaps,
    /// What its writes carry.
    fence: Fence,
    /// Its stream's stable address: events sent while the stream restarts wait for it.
    stream: Arc<Slot<StreamMsg>>,
    book: DropBook,
    /// Reservations decided but not yet durable: the batch being written, those queued for the
    /// next write, and every buyer waiting for each.
    commit: GroupCommit<ClaimId, Claim, ClaimReply>,
    lock: Arc<Mutex<()>>,
    depth: Depth,
    closed_announced: bool,
    /// Why the drop is closing, from the first close asked for, until it is stored.
    closing: Option<CloseReason>,
    /// A sell-out waits for its reservation to be durable before it is announced.
    sold_out_pending: bool,
    /// The status last written to storage (open ⇄ sold out changes are written on the tick).
    stored_status: DropStatus,
    /// A status write is in flight.
    storing_status: bool,
    /// An expiry check is in flight.
    expiring: bool,
    inventory: LatestValuePacer,
    last_expiry: Instant,
    _alive: AliveGuard,
}

impl DropState {
    fn stream_cast(&self, msg: StreamMsg) {
        self.stream.cast(msg);
    }

    fn announce(&mut self, a: Announce) {
        if a.inventory {
            self.inventory.changed(self.caps.time.clock.instant());
        }
        if a.sold_out {
            // Published when the batch holding the last reservation is durable.
            self.sold_out_pending = true;
        }
    }

    fn sync_stream_snapshot(&self) {
        self.stream_cast(StreamMsg::DropChanged(Box::new(self.book.drop().clone())));
    }

    fn claim(
        &mut self,
        myself: &ActorRef<DropMsg>,
        user: UserId,
        quantity: i64,
        key: String,
        reply: ClaimReply,
    ) {
        let ids = self.caps.time.ids.clone();
        let new_id = || ClaimId::generate(&ids.unique_suffix());
        match self
            .book
            .decide(&user, quantity, &key, self.caps.time.clock.now(), new_id)
        {
            Err(rejection) => {
                record_claim(result_label(rejection.code));
                let _ = reply.send(Err(rejection));
            }
            Ok((Decision::Existing(claim), _)) => {
                record_claim("duplicate");
                // A repeat of a claim not yet durable waits for its write; else it is answered
                // from the book.
                if let Err(reply) = self.commit.attach(&claim.id, reply) {
                    let claim = self.book.claim(&claim.id).cloned().unwrap_or(claim);
                    let _ = reply.send(Ok(ClaimOutcome {
                        claim,
                        created: false,
                    }));
                }
            }
            Ok((Decision::Reserved(claim), announce)) => {
                self.commit.add(claim.id.clone(), claim, reply);
                self.announce(announce);
                self.start_commit(myself);
            }
        }
    }

    /// Starts writing the next batch unless a write is in flight.
    fn start_commit(&mut self, myself: &ActorRef<DropMsg>) {
        let Some(batch) = self.commit.start_batch() else {
            return;
        };
        let claims: Vec<NewClaim> = batch
            .iter()
            .map(|(_, claim)| NewClaim {
                claim: claim.clone(),
            })
            .collect();
        let fence = self.fence.clone();
        self.write_under_lock(myself, move |store, drop| async move {
            // One write for the whole batch; only when storage refuses a row is it split to set
            // that row aside, so one bad claim never fails the others.
            let claims = Arc::new(claims);
            let outcome = write_isolating(claims.len(), |range| {
                let (store, drop, claims) = (store.clone(), drop.clone(), claims.clone());
                let fence = fence.clone();
                async move { store.commit_claims(&drop, &claims[range], &fence).await }
            })
            .await;
            for (i, why) in outcome.refused() {
                tracing::warn!(drop_id = %drop, claim_id = %claims[i].claim.id, reason = why,
                    "storage refused a claim; it is set aside and its buyer answered");
                ::metrics::counter!(metrics::ROWS_REFUSED, "kind" => "claims").increment(1);
            }
            if let Some(err) = &outcome.failure {
                tracing::error!(drop_id = %drop, error = %err, source = ?std::error::Error::source(err),
                    "claim batch was not written; its claims are refused");
            }
            DropMsg::Committed(outcome.rows)
        });
    }

    /// Runs a storage write in a task of its own, holding the drop's commit lock (which a
    /// restarting actor waits for before it reads storage), and reports to the actor with the
    /// message the write returns. The actor keeps deciding meanwhile.
    fn write_under_lock<F, Fut>(&self, myself: &ActorRef<DropMsg>, write: F)
    where
        F: FnOnce(Arc<dyn DropStore>, DropId) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = DropMsg> + Send + 'static,
    {
        let store = self.caps.store.clone();
        let lock = self.lock.clone();
        let drop = self.book.id().clone();
        let me = myself.clone();
        tokio::spawn(async move {
            let _held = lock.lock().await;
            let report = write(store, drop).await;
            // Not counted in the mailbox depth: it is the actor's own bookkeeping.
            let _ = me.cast(report);
        });
    }

    fn committed(&mut self, myself: &ActorRef<DropMsg>, outcomes: Vec<RowOutcome>) {
        let mut not_stored = Vec::new();
        let mut unknown = false;
        for finished in self.commit.finish(outcomes) {
            let Finished {
                item: claim,
                waiters,
                outcome,
            } = finished;
            let refusal = match outcome {
                RowOutcome::Stored => {
                    answer_stored(&claim, waiters);
                    continue;
                }
                RowOutcome::Refused(_) => Rejection::new(
                    ErrorCode::BadRequest,
                    "the claim could not be stored as sent and was not reserved",
                ),
                RowOutcome::Failed => {
                    unknown = true;
                    Rejection::new(
                        ErrorCode::Unavailable,
                        "reservation could not be stored; retry with the same key",
                    )
                }
            };
            for w in waiters {
                record_claim("error");
                let _ = w.send(Err(refusal.clone()));
            }
            not_stored.push(claim);
        }
        if unknown {
            // The database failed during the write (it went away, or the answer did not come
            // back in time): the batch may be stored or not, and the book cannot tell. Rolling
            // it back could hand its units out twice and forget keys a retry must find; so this
            // incarnation stops, and the next one (started by the next request, or by recovery)
            // reads what is stored, after any write still in flight (the commit lock). Claims
            // queued behind the batch were never written; their buyers are told `unavailable`
            // as the actor stops, and retry with the same key.
            tracing::warn!(drop_id = %self.book.id(),
                "a claim batch's outcome is unknown; the drop restarts from what is stored");
            myself.stop(Some("claim batch outcome unknown".into()));
            return;
        }
        if !not_stored.is_empty() {
            self.book.rollback(&not_stored);
            self.sold_out_pending = false;
            self.inventory.changed(self.caps.time.clock.instant());
        }
        if self.sold_out_pending && self.commit.is_idle() {
            self.sold_out_pending = false;
            // The final count goes with the sell-out when the rate allows: the fan-out
            // writes both to each viewer at once, one write instead of two.
            if self
                .inventory
                .may_send_early(self.caps.time.clock.instant())
            {
                self.publish_inventory();
            }
            let drop = self.book.id().to_string();
            self.stream_cast(StreamMsg::Publish(EventBody::SoldOut { drop }));
        }
        self.start_commit(myself);
    }

    /// Closes the drop (if not yet) and stores and announces it exactly once. The book closes
    /// at once, so no reservation is made after a close was asked for; when storage fails, the
    /// caller is told `unavailable` and the tick stores it later (with the first reason asked),
    /// so a close is never answered before it is durable.
    async fn close(&mut self, reason: CloseReason) -> Result<(), Rejection> {
        self.book.close();
        if self.closed_announced {
            return Ok(());
        }
        let first_try = self.closing.is_none();
        let reason = *self.closing.get_or_insert(reason);
        if let Err(e) = self
            .caps
            .store
            .set_drop_status(
                self.book.id(),
                DropStatus::Closed,
                Some(reason.as_str()),
                &self.fence,
            )
            .await
        {
            if first_try {
                tracing::error!(drop_id = %self.book.id(), error = %e,
                    "could not store the drop's closing; retrying every tick");
            } else {
                tracing::debug!(drop_id = %self.book.id(), error = %e, "drop closing still not stored");
            }
            return Err(Rejection::new(
                ErrorCode::Unavailable,
                "storage unavailable; retry",
            ));
        }
        self.closed_announced = true;
        let drop = self.book.id().to_string();
        self.stream_cast(StreamMsg::Publish(EventBody::DropClosed {
            drop,
            reason: reason.as_str().to_owned(),
        }));
        self.sync_stream_snapshot();
        Ok(())
    }

    /// Starts an expiry check in its own task. The task tells the buyers itself, so a restart
    /// between the write and the report loses no `claim_update`; the restarted actor reads the
    /// expiry from storage (the task holds the commit lock, which a restart waits for).
    fn start_expiry(&mut self, myself: &ActorRef<DropMsg>) {
        if self.expiring {
            return;
        }
        self.expiring = true;
        let notifier = self.caps.notifier.clone();
        let now = self.caps.time.clock.now();
        let tenant = self.book.drop().tenant.clone();
        let fence = self.fence.clone();
        self.write_under_lock(myself, move |store, drop| async move {
            let result = store.expire_claims(&drop, now, &fence).await;
            if let Ok(expired) = &result {
                for claim in expired {
                    notify_claim(notifier.as_ref(), &tenant, claim);
                }
            }
            DropMsg::Expired(result)
        });
    }

    fn expired(&mut self, result: Result<Vec<Claim>, StorageError>) {
        self.expiring = false;
        match result {
            Ok(expired) if !expired.is_empty() => {
                let announce = self.book.apply_expired(&expired);
                self.announce(announce);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(drop_id = %self.book.id(), error = %e, "hold expiry check failed; will retry")
            }
        }
    }

    /// Writes an open ⇄ sold-out change in its own task, so reads from storage show it too.
    fn start_status_write(&mut self, myself: &ActorRef<DropMsg>) {
        let status = self.book.drop().status;
        if self.storing_status || status == self.stored_status || status == DropStatus::Closed {
            return;
        }
        self.storing_status = true;
        let fence = self.fence.clone();
        self.write_under_lock(myself, move |store, drop| async move {
            let result = store.set_drop_status(&drop, status, None, &fence).await;
            DropMsg::StatusStored(result.map(|()| status))
        });
    }

    fn status_stored(&mut self, result: Result<DropStatus, StorageError>) {
        self.storing_status = false;
        match result {
            Ok(status) => self.stored_status = status,
            Err(e) => {
                tracing::warn!(drop_id = %self.book.id(), error = %e, "drop status write failed; will retry")
            }
        }
    }

    async fn tick(&mut self, myself: &ActorRef<DropMsg>) {
        let now = self.caps.time.clock.now();
        let due = self.book.drop().ends_at.is_some_and(|end| now >= end);
        // A claim may already have closed the book in memory when it found the drop past its end.
        if (due || self.book.drop().status == DropStatus::Closed) && !self.closed_announced {
            // Logged when it fails; the next tick tries again.
            let _ = self.close(CloseReason::Time).await;
        }
        if self
            .caps
            .time
            .clock
            .instant()
            .saturating_duration_since(self.last_expiry)
            >= EXPIRY_EVERY
        {
            self.last_expiry = self.caps.time.clock.instant();
            if self.book.holds_due(now) {
                self.start_expiry(myself);
            }
        }
        if self.commit.is_idle() {
            self.start_status_write(myself);
        }
        if self.inventory.due(self.caps.time.clock.instant()) {
            self.publish_inventory();
        }
        if self.settled() {
            // Nothing left to decide, expire, store or announce: it starts again from storage
            // if a buyer, an operator or recovery asks for it.
            // Draining: what is already queued is still answered.
            let _ = myself.drain();
        }
    }

    /// Closed and announced, no reservation left to expire, no write in flight, nothing to send.
    fn settled(&self) -> bool {
        self.closed_announced
            && self.book.drop().reserved == 0
            && self.commit.is_idle()
            && !self.expiring
            && !self.storing_status
            && !self.inventory.is_dirty()
    }

    /// Sends the latest `inventory` to the stream's viewers and refreshes the stream's snapshot.
    fn publish_inventory(&mut self) {
        self.inventory.sent(self.caps.time.clock.instant());
        let d = self.book.drop();
        self.stream_cast(StreamMsg::PublishEphemeral(EventBody::Inventory {
            drop: d.id.to_string(),
            remaining: d.remaining,
        }));
        self.sync_stream_snapshot();
    }
}

/// Sends the buyer of `claim` its `claim_update` frame, privately. A claim that cannot be
/// encoded (it always can: every key is a string) is logged and not sent, never sent empty.
fn notify_claim(notifier: &dyn Notifier, tenant: &TenantId, claim: &Claim) {
    if let Some(frame) = claim_update(claim) {
        notifier.notify(tenant, &claim.user, frame);
    }
}

/// The `claim_update` frame sent privately to a buyer; `None` (logged) if the claim could not
/// be encoded.
pub fn claim_update(claim: &Claim) -> Option<bytes::Bytes> {
    match serde_json::to_value(claim) {
        Ok(claim) => Some(ServerFrame::ClaimUpdate { claim }.encode()),
        Err(err) => {
            tracing::error!(claim_id = %claim.id, error = %err, "claim_update could not be encoded; not sent");
            None
        }
    }
}

/// Answers everyone waiting for a stored claim: 201 to the first, 200 to repeats of its key.
fn answer_stored(claim: &Claim, waiters: Vec<ClaimReply>) {
    record_claim("reserved");
    let mut waiters = waiters.into_iter();
    if let Some(first) = waiters.next() {
        let _ = first.send(Ok(ClaimOutcome {
            claim: claim.clone(),
            created: true,
        }));
    }
    for w in waiters {
        let _ = w.send(Ok(ClaimOutcome {
            claim: claim.clone(),
            created: false,
        }));
    }
}

fn record_claim(result: &'static str) {
    ::metrics::counter!(metrics::CLAIMS, "result" => result).increment(1);
}

fn result_label(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::SoldOut => "sold_out",
        ErrorCode::LimitExceeded => "limit_exceeded",
        ErrorCode::DropClosed => "drop_closed",
        ErrorCode::BadRequest | ErrorCode::Conflict => "invalid",
        _ => "error",
    }
}

impl Actor for DropActor {
    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.caps.tree.remove(kind::DROP, state.book.id().as_str());
        Ok(())
    }

    type Msg = DropMsg;
    type State = DropState;
    type Arguments = DropArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: DropArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let lock = args.lock;
        // Wait for any write of a previous incarnation, so storage is complete before reading it.
        let guard = lock.lock().await;
        let store = args.caps.store.clone();
        let record = match store.drop_by_id(&args.drop).await? {
            Some(d) if d.tenant == args.tenant => d,
            _ => return Err(Box::new(StartError::NotFound("drop"))),
        };
        let claims = store.claims_of_drop(&args.drop).await?;
        std::mem::drop(guard);
        myself.send_interval(INVENTORY_EVERY, || DropMsg::Tick);
        args.caps.tree.register(
            kind::DROP,
            args.drop.as_str(),
            Some(format!("stream:{}", record.stream)),
            args.depth.clone(),
        );
        let closed_announced = record.status == DropStatus::Closed;
        Ok(DropState {
            closed_announced,
            closing: None,
            stored_status: record.status,
            storing_status: false,
            expiring: false,
            sold_out_pending: false,
            stream: args.caps.streams.slot(&record.tenant, &record.stream),
            last_expiry: args.caps.time.clock.instant() - EXPIRY_EVERY,
            book: DropBook::restore(record, claims),
            commit: GroupCommit::new(args.caps.claim_batch_max),
            caps: args.caps,
            fence: args.fence,
            lock,
            depth: args.depth,
            inventory: LatestValuePacer::new(INVENTORY_EVERY),
            _alive: AliveGuard::new(kind::DROP),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let started = Instant::now();
        if !matches!(
            message,
            DropMsg::Tick | DropMsg::Committed(_) | DropMsg::Expired(_) | DropMsg::StatusStored(_)
        ) {
            state.depth.taken();
        }
        match message {
            DropMsg::Claim {
                user,
                quantity,
                key,
                reply,
            } => {
                state.claim(&myself, user, quantity, key, reply);
            }
            DropMsg::Committed(result) => state.committed(&myself, result),
            DropMsg::Expired(result) => state.expired(result),
            DropMsg::StatusStored(result) => state.status_stored(result),
            DropMsg::Close(reason, reply) => {
                let closed = state.close(reason).await;
                if let Some(reply) = reply {
                    let _ = reply.send(closed.map(|()| state.book.drop().clone()));
                }
            }
            DropMsg::Pay(id, reply) => {
                let result = match state.caps.store.mark_claim_paid(&id, &state.fence).await {
                    Ok(Some(paid)) => {
                        state.book.apply_paid(&paid);
                        notify_claim(state.caps.notifier.as_ref(), &paid.tenant, &paid);
                        Ok(paid)
                    }
                    Ok(None) => Err(Rejection::new(
                        ErrorCode::InvalidState,
                        "claim is not reserved",
                    )),
                    Err(e) => {
                        tracing::error!(error = %e, "mark paid failed");
                        Err(Rejection::new(
                            ErrorCode::Unavailable,
                            "storage unavailable; retry",
                        ))
                    }
                };
                let _ = reply.send(result);
            }
            DropMsg::Tick => state.tick(&myself).await,
            DropMsg::Crash => panic!("fault injection: drop actor crash requested"),
        }
        metrics::record_handling(kind::DROP, started);
        Ok(())
    }
}
