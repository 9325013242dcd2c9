//! The drop actor alone, against an in-memory store, a recording notifier and a probe in its
//! stream's slot, on paused time: every wait below is tokio time advanced by the test.

use std::sync::Arc;

use liveshop_actors::clock::{Counter, TimeAndIds, TokioClock};
use liveshop_actors::drop::{ClaimOutcome, DropActor, DropArgs, DropCaps, DropMsg, EXPIRY_EVERY};
use liveshop_actors::mailbox::Depth;
use liveshop_actors::metrics::kind;
use liveshop_actors::slot::Slot;
use liveshop_actors::stream::StreamMsg;
use liveshop_actors::supervise::Registry;
use liveshop_actors::testing::{
    MemoryStore, RecordingNotifier, StreamProbe, advance_ms, records, settle,
};
use liveshop_actors::tree::ActorTree;
use liveshop_engine::records::{ClaimStatus, Drop, DropStatus};
use liveshop_engine::storage::{DropStore, Fence, NewClaim};
use liveshop_engine::{ErrorCode, Rejection, StreamId, TenantId, Timestamp, UserId};
use ractor::{Actor, ActorRef};
use tokio::sync::Mutex;

/// Engine time when each test starts.
const T0: i64 = 1_000_000;

/// One drop, its stream's slot with a probe in it, and the capabilities its actors get.
struct Harness {
    store: Arc<MemoryStore>,
    notifier: Arc<RecordingNotifier>,
    streams: Arc<Registry<StreamId, StreamMsg>>,
    probe: StreamProbe,
    lock: Arc<Mutex<()>>,
    time: TimeAndIds,
    drop: Drop,
}

impl Harness {
    /// Stores a tenant, a live stream and `drop`, and puts a probe in the stream's slot.
    async fn new(drop: Drop) -> Self {
        let store = MemoryStore::with_live_stream().await;
        store.create_drop(&drop, &Fence::Unfenced).await.unwrap();
        let streams = Arc::new(Registry::new(kind::STREAM));
        let probe = StreamProbe::attach(&streams.slot(&drop.tenant, &drop.stream)).await;
        Self {
            store,
            notifier: RecordingNotifier::new(),
            streams,
            probe,
            lock: Arc::default(),
            time: TimeAndIds {
                clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(T0))),
                ids: Arc::new(Counter::default()),
            },
            drop,
        }
    }

    /// The stream's stable address.
    fn slot(&self) -> Arc<Slot<StreamMsg>> {
        self.streams.slot(&self.drop.tenant, &self.drop.stream)
    }

    /// Starts an incarnation of the drop's actor (the commit lock is shared by all of them).
    async fn spawn(&self) -> ActorRef<DropMsg> {
        let args = DropArgs {
            caps: DropCaps {
                store: self.store.clone(),
                notifier: self.notifier.clone(),
                streams: self.streams.clone(),
                time: self.time.clone(),
                claim_batch_max: 1000,
                tree: Arc::new(ActorTree::default()),
            },
            tenant: self.drop.tenant.clone(),
            drop: self.drop.id.clone(),
            fence: Fence::Unfenced,
            lock: self.lock.clone(),
            depth: Depth::new(kind::DROP),
        };
        let (actor, _) = Actor::spawn(None, DropActor, args).await.unwrap();
        actor
    }

    /// The drop as stored now.
    async fn stored(&self) -> Drop {
        self.store.drop_by_id(&self.drop.id).await.unwrap().unwrap()
    }
}

fn drop_of(quantity: i64, per_user_limit: i64, hold_seconds: i64) -> Drop {
    records::drop(
        "ten_1",
        "str_1",
        "drp_1",
        quantity,
        per_user_limit,
        hold_seconds,
        Timestamp::from_millis(T0),
    )
}

/// Claims through the actor's message and waits for the answer (no timeout: no timer runs).
async fn claim(
    actor: &ActorRef<DropMsg>,
    user: &str,
    quantity: i64,
    key: &str,
) -> Result<ClaimOutcome, Rejection> {
    let (user, key) = (UserId::from_trusted(user), key.to_owned());
    actor
        .call(
            |reply| DropMsg::Claim {
                user,
                quantity,
                key,
                reply,
            },
            None,
        )
        .await
        .expect("the drop actor answers")
        .expect("the drop actor answers in time")
}

/// Lets `ms` of paused time pass in steps of 50 ms, so every timer tick on the way is handled.
async fn run_for(ms: u64) {
    for _ in 0..ms / 50 {
        advance_ms(50).await;
    }
}

/// Stops an incarnation and waits until it is gone.
async fn kill(actor: ActorRef<DropMsg>) {
    actor.stop(None);
    while actor.get_status() != ractor::ActorStatus::Stopped {
        tokio::task::yield_now().await;
    }
    settle().await;
}

#[tokio::test(start_paused = true)]
async fn a_claim_is_answered_only_after_its_batch_is_stored() {
    let h = Harness::new(drop_of(5, 5, 60)).await;
    let actor = h.spawn().await;
    h.store.hold_writes();
    let waiting = tokio::spawn({
        let actor = actor.clone();
        async move { claim(&actor, "alice", 1, "k1").await }
    });
    settle().await;
    assert_eq!(h.store.writes_waiting(), 1, "the batch is being written");
    assert!(
        !waiting.is_finished(),
        "no answer before the batch is stored"
    );
    assert!(
        h.store.claims_of_drop(&h.drop.id).await.unwrap().is_empty(),
        "nothing stored yet"
    );

    h.store.release_writes();
    settle().await;
    assert!(waiting.is_finished(), "answered once stored");
    let outcome = waiting.await.unwrap().expect("reserved");
    assert!(outcome.created);
    let stored = h.store.claim_by_id(&outcome.claim.id).await.unwrap();
    assert_eq!(
        stored.map(|c| c.status),
        Some(ClaimStatus::Reserved),
        "the answered claim is the stored one"
    );
    assert_eq!(h.stored().await.remaining, 4);
}

#[tokio::test(start_paused = true)]
async fn a_hold_expires_at_its_expires_at_and_not_before() {
    let h = Harness::new(drop_of(3, 3, 2)).await;
    let actor = h.spawn().await;
    let outcome = claim(&actor, "alice", 1, "k1").await.expect("reserved");
    assert_eq!(
        outcome.claim.expires_at,
        Timestamp::from_millis(T0 + 2_000),
        "held for hold_seconds"
    );

    run_for(1_900).await;
    let claim_now = h.store.claim_by_id(&outcome.claim.id).await.unwrap();
    assert_eq!(claim_now.map(|c| c.status), Some(ClaimStatus::Reserved));
    assert_eq!(h.stored().await.remaining, 2);
    assert!(h.notifier.frames_for("alice").is_empty());

    // Past `expires_at` by at most one expiry period and a tick.
    run_for(100 + EXPIRY_EVERY.as_millis() as u64 + 200).await;
    let claim_now = h.store.claim_by_id(&outcome.claim.id).await.unwrap();
    assert_eq!(claim_now.map(|c| c.status), Some(ClaimStatus::Expired));
    assert_eq!(h.stored().await.remaining, 3, "the unit went back");
    let updates = h.notifier.frames_for("alice");
    assert_eq!(updates.len(), 1, "{updates:?}");
    assert_eq!(updates[0]["type"], "claim_update");
    assert_eq!(updates[0]["claim"]["status"], "expired");
    let inventory = h.probe.ephemeral("inventory");
    assert_eq!(
        inventory.last().map(|d| d["remaining"].clone()),
        Some(3.into()),
        "viewers see the unit back: {inventory:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_drop_with_an_end_time_closes_at_its_end_and_not_before() {
    let mut drop = drop_of(3, 3, 60);
    drop.ends_at = Some(Timestamp::from_millis(T0 + 5_000));
    let h = Harness::new(drop).await;
    let _actor = h.spawn().await;

    run_for(4_900).await;
    assert!(h.probe.ordered("drop_closed").is_empty());
    assert_eq!(h.stored().await.status, DropStatus::Open);

    run_for(200).await;
    let closed = h.probe.ordered("drop_closed");
    assert_eq!(
        closed,
        [serde_json::json!({"drop": "drp_1", "reason": "time"})]
    );
    let stored = h.stored().await;
    assert_eq!(stored.status, DropStatus::Closed);
    assert_eq!(stored.closed_reason.as_deref(), Some("time"));
}

#[tokio::test(start_paused = true)]
async fn a_claim_whose_write_fails_is_answered_unavailable_and_the_drop_restarts_from_storage() {
    let h = Harness::new(drop_of(1, 1, 60)).await;
    let actor = h.spawn().await;
    h.store.fail_next_writes(1);

    let refused = claim(&actor, "alice", 1, "k1").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(h.store.claims_of_drop(&h.drop.id).await.unwrap().is_empty());
    // Whether the batch was stored is unknown to it: the actor stops rather than guess.
    settle().await;
    assert_eq!(actor.get_status(), ractor::ActorStatus::Stopped);

    // The next incarnation reads storage: the unit is there to sell, once.
    let next = h.spawn().await;
    let bob = claim(&next, "bob", 1, "k1")
        .await
        .expect("the unit is back");
    assert!(bob.created);
    let again = claim(&next, "alice", 1, "k1").await.unwrap_err();
    assert_eq!(again.code, ErrorCode::SoldOut, "bob has the only unit");
    assert_eq!(h.stored().await.remaining, 0);
}

#[tokio::test(start_paused = true)]
async fn a_claim_stored_but_answered_unavailable_is_found_again_by_its_key() {
    let h = Harness::new(drop_of(2, 1, 60)).await;
    let actor = h.spawn().await;
    h.store.lose_next_answers(1);

    let refused = claim(&actor, "alice", 1, "k1").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    settle().await;
    assert_eq!(actor.get_status(), ractor::ActorStatus::Stopped);
    let stored = h.store.claims_of_drop(&h.drop.id).await.unwrap();
    assert_eq!(stored.len(), 1, "the database kept it");

    // Alice's retry with the same key is answered with the stored claim, not a second one; the
    // unit is not sold twice.
    let next = h.spawn().await;
    let again = claim(&next, "alice", 1, "k1")
        .await
        .expect("found by its key");
    assert_eq!(
        (again.claim.id.clone(), again.created),
        (stored[0].id.clone(), false)
    );
    claim(&next, "bob", 1, "k1").await.expect("the other unit");
    let carol = claim(&next, "carol", 1, "k1").await.unwrap_err();
    assert_eq!(carol.code, ErrorCode::SoldOut);
    assert_eq!(h.store.claims_of_drop(&h.drop.id).await.unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_close_storage_fails_is_answered_unavailable_stops_sales_and_is_stored_later() {
    let h = Harness::new(drop_of(5, 1, 60)).await;
    let actor = h.spawn().await;
    h.store.fail_next_writes(1);
    let refused = actor
        .call(
            |reply| DropMsg::Close(liveshop_engine::drops::CloseReason::Seller, Some(reply)),
            None,
        )
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(
        h.probe.ordered("drop_closed").is_empty(),
        "not announced before it is stored"
    );
    let late = claim(&actor, "alice", 1, "k1").await.unwrap_err();
    assert_eq!(
        late.code,
        ErrorCode::DropClosed,
        "no sale after a close was asked for"
    );

    advance_ms(200).await;
    let stored = h.stored().await;
    assert_eq!(
        (stored.status, stored.closed_reason.as_deref()),
        (DropStatus::Closed, Some("seller"))
    );
    assert_eq!(h.probe.ordered("drop_closed").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_sell_out_sent_while_the_stream_restarts_reaches_its_next_incarnation() {
    let h = Harness::new(drop_of(1, 1, 60)).await;
    let actor = h.spawn().await;
    let probe = h.slot().running().expect("the probe runs").actor().get_id();
    assert!(h.slot().restarting(probe));

    claim(&actor, "alice", 1, "k1").await.expect("reserved");
    settle().await;
    assert!(
        h.probe.ordered("sold_out").is_empty(),
        "the old incarnation is gone"
    );

    let next = StreamProbe::attach(&h.slot()).await;
    settle().await;
    assert_eq!(
        next.ordered("sold_out"),
        [serde_json::json!({"drop": "drp_1"})]
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_drop_actor_rebuilds_from_storage_and_expires_lapsed_holds_at_once() {
    let h = Harness::new(drop_of(4, 4, 2)).await;
    // A hold made long ago and still running, stored before any actor ran.
    let long = records::claim(
        &h.drop,
        "clm_long",
        "carol",
        1,
        "kc",
        Timestamp::from_millis(T0),
        Timestamp::from_millis(T0 + 600_000),
    );
    h.store
        .commit_claims(
            &h.drop.id,
            &[NewClaim {
                claim: long.clone(),
            }],
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let first = h.spawn().await;
    let bob = claim(&first, "bob", 1, "kb").await.expect("reserved");
    kill(first).await;

    // Bob's hold lapses while no actor runs.
    tokio::time::advance(std::time::Duration::from_secs(5)).await;
    assert_eq!(
        h.store
            .claim_by_id(&bob.claim.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ClaimStatus::Reserved,
        "nothing expires it while the actor is down"
    );

    let second = h.spawn().await;
    run_for(EXPIRY_EVERY.as_millis() as u64 + 200).await;
    assert_eq!(
        h.store
            .claim_by_id(&bob.claim.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ClaimStatus::Expired
    );
    assert_eq!(h.notifier.frames_for("bob").len(), 1);
    assert_eq!(h.stored().await.remaining, 3, "only carol's hold remains");

    // The rebuilt inventory counts carol's hold and remembers her key.
    let repeat = claim(&second, "carol", 1, "kc").await.expect("found");
    assert!(!repeat.created);
    assert_eq!(repeat.claim.id, long.id);
    claim(&second, "dave", 3, "kd").await.expect("three left");
    let refused = claim(&second, "erin", 1, "ke").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::SoldOut);
}

#[tokio::test(start_paused = true)]
async fn a_tenant_mismatch_keeps_the_drop_actor_from_starting() {
    let h = Harness::new(drop_of(1, 1, 60)).await;
    let args = DropArgs {
        caps: DropCaps {
            store: h.store.clone(),
            notifier: h.notifier.clone(),
            streams: h.streams.clone(),
            time: h.time.clone(),
            claim_batch_max: 1000,
            tree: Arc::new(ActorTree::default()),
        },
        tenant: TenantId::from_trusted("ten_other"),
        drop: h.drop.id.clone(),
        fence: Fence::Unfenced,
        lock: h.lock.clone(),
        depth: Depth::new(kind::DROP),
    };
    assert!(Actor::spawn(None, DropActor, args).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_closed_drop_stops_its_actor_once_no_reservation_is_left_to_expire() {
    let h = Harness::new(drop_of(5, 1, 2)).await;
    let actor = h.spawn().await;
    claim(&actor, "alice", 1, "k1").await.expect("reserved");
    actor
        .call(
            |reply| DropMsg::Close(liveshop_engine::drops::CloseReason::Seller, Some(reply)),
            None,
        )
        .await
        .unwrap()
        .unwrap()
        .expect("the close is stored");
    advance_ms(500).await;
    assert_eq!(
        actor.get_status(),
        ractor::ActorStatus::Running,
        "alice's hold still has to expire"
    );
    advance_ms(3_000).await;
    assert_eq!(h.stored().await.reserved, 0, "the hold expired");
    advance_ms(500).await;
    assert_eq!(actor.get_status(), ractor::ActorStatus::Stopped);
}
