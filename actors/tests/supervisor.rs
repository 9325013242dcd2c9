//! The generic supervisor with a child that fails on demand, and recovery starting the drops
//! storage lists, on paused time against an in-memory store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use liveshop_actors::clock::{Counter, TimeAndIds, TokioClock};
use liveshop_actors::directory::{Capabilities, Directory};
use liveshop_actors::fanout::Fanout;
use liveshop_actors::mailbox::Depth;
use liveshop_actors::metrics::kind;
use liveshop_actors::persister::PersisterPort;
use liveshop_actors::recovery;
use liveshop_actors::slot::Slot;
use liveshop_actors::supervise::{
    ActorChild, StartError, Supervisor, SupervisorArgs, SupervisorMsg,
};
use liveshop_actors::testing::{MemoryStore, records, settle};
use liveshop_actors::tree::ActorTree;
use liveshop_engine::limits::Limits;
use liveshop_engine::records::{Drop, DropStatus};
use liveshop_engine::storage::{DropStore, Fence, NewClaim};
use liveshop_engine::{DropId, Timestamp};
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// A child that counts its starts (and restarts) and panics on any message.
struct Flaky;

/// What every incarnation of [`Flaky`] shares with the test.
#[derive(Clone, Default)]
struct Starts {
    all: Arc<AtomicUsize>,
    restarted: Arc<AtomicUsize>,
}

impl Actor for Flaky {
    type Msg = ();
    type State = ();
    type Arguments = (Starts, bool);

    async fn pre_start(
        &self,
        _myself: ActorRef<()>,
        (starts, restarted): Self::Arguments,
    ) -> Result<(), ActorProcessingErr> {
        starts.all.fetch_add(1, Ordering::SeqCst);
        if restarted {
            starts.restarted.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<()>,
        _message: (),
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        panic!("asked to fail");
    }
}

async fn supervisor() -> ActorRef<SupervisorMsg> {
    let (root, _) = Actor::spawn(
        None,
        Supervisor,
        SupervisorArgs {
            kind: kind::SUPERVISOR,
            id: "root".into(),
            parent: None,
            listed: false,
            tree: Arc::new(ActorTree::default()),
            depth: Depth::new(kind::SUPERVISOR),
            check: None,
            clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(T0))),
        },
    )
    .await
    .unwrap();
    root
}

async fn ensure(
    root: &ActorRef<SupervisorMsg>,
    child: Arc<ActorChild<Flaky, Arc<Slot<()>>>>,
) -> Result<(), StartError> {
    root.call(|reply| SupervisorMsg::Ensure(child, reply), None)
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_failing_child_is_restarted_within_its_budget_then_given_up_until_next_use() {
    let root = supervisor().await;
    let slot: Arc<Slot<()>> = Arc::new(Slot::new("flaky"));
    let starts = Starts::default();
    let child = Arc::new(ActorChild::new(
        "flaky",
        "one".into(),
        || Flaky,
        slot.clone(),
        Box::new({
            let starts = starts.clone();
            move |_depth, restarted| (starts.clone(), restarted)
        }),
    ));
    ensure(&root, child.clone()).await.unwrap();
    assert_eq!(starts.all.load(Ordering::SeqCst), 1);

    // The standard budget: five restarts within ten seconds.
    for failure in 1..=5 {
        slot.cast(());
        settle().await;
        assert!(
            slot.running().is_some(),
            "restarted after failure {failure}"
        );
        assert_eq!(starts.restarted.load(Ordering::SeqCst), failure);
    }
    slot.cast(());
    settle().await;
    assert!(slot.running().is_none(), "the sixth failure gives it up");
    assert_eq!(starts.all.load(Ordering::SeqCst), 6, "not started again");

    ensure(&root, child).await.unwrap();
    assert!(slot.running().is_some(), "it starts again on its next use");
    assert_eq!(starts.all.load(Ordering::SeqCst), 7);
}

/// A child of the test's supervisor that counts its starts.
fn flaky_child(slot: &Arc<Slot<()>>, starts: &Starts) -> Arc<ActorChild<Flaky, Arc<Slot<()>>>> {
    Arc::new(ActorChild::new(
        "flaky",
        "one".into(),
        || Flaky,
        slot.clone(),
        Box::new({
            let starts = starts.clone();
            move |_depth, restarted| (starts.clone(), restarted)
        }),
    ))
}

#[tokio::test(start_paused = true)]
async fn failures_spread_wider_than_the_budget_window_are_all_restarted() {
    let root = supervisor().await;
    let slot: Arc<Slot<()>> = Arc::new(Slot::new("flaky"));
    let starts = Starts::default();
    ensure(&root, flaky_child(&slot, &starts)).await.unwrap();
    // Twelve failures, 2.5 s apart: never more than four within any ten seconds.
    for failure in 1..=12 {
        slot.cast(());
        settle().await;
        assert!(
            slot.running().is_some(),
            "restarted after failure {failure}"
        );
        tokio::time::advance(std::time::Duration::from_millis(2_500)).await;
    }
    assert_eq!(starts.restarted.load(Ordering::SeqCst), 12);
}

const T0: i64 = 1_000_000;

fn drop_in(id: &str, quantity: i64) -> Drop {
    records::drop(
        "ten_1",
        "str_1",
        id,
        quantity,
        quantity,
        600,
        Timestamp::from_millis(T0),
    )
}

/// Stores `drop` and, if `hold`, one reservation of one unit on it.
async fn store_drop(store: &MemoryStore, drop: &Drop, hold: bool) {
    store.create_drop(drop, &Fence::Unfenced).await.unwrap();
    if hold {
        let claim = records::claim(
            drop,
            &format!("clm_{}", drop.id),
            "alice",
            1,
            "k",
            Timestamp::from_millis(T0),
            Timestamp::from_millis(T0 + 600_000),
        );
        store
            .commit_claims(&drop.id, &[NewClaim { claim }], &Fence::Unfenced)
            .await
            .unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn recovery_starts_exactly_the_drops_storage_lists_to_recover() {
    let store = MemoryStore::with_live_stream().await;
    let mut ends = drop_in("drp_ends", 5);
    ends.ends_at = Some(Timestamp::from_millis(T0 + 600_000));
    let mut closed = drop_in("drp_closed", 5);
    closed.ends_at = Some(Timestamp::from_millis(T0 + 600_000));
    closed.status = DropStatus::Closed;
    store_drop(&store, &drop_in("drp_held", 5), true).await;
    store_drop(&store, &ends, false).await;
    store_drop(&store, &drop_in("drp_idle", 5), false).await;
    store_drop(&store, &closed, true).await;
    store_drop(&store, &drop_in("drp_sold_out", 1), true).await;
    store
        .set_drop_status(
            &DropId::from_trusted("drp_sold_out"),
            DropStatus::SoldOut,
            None,
            &Fence::Unfenced,
        )
        .await
        .unwrap();
    let listed: Vec<_> = store
        .drops_to_recover()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(listed, ["drp_held", "drp_ends", "drp_sold_out"]);

    let directory = Directory::new(
        supervisor().await,
        Capabilities {
            store: store.clone(),
            fanout: Fanout::in_process(Limits::default().resume_buffer),
            persister: PersisterPort::new(),
            time: TimeAndIds {
                clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(T0))),
                ids: Arc::new(Counter::default()),
            },
            limits: Limits::default(),
            claim_batch_max: 1000,
            tree: Arc::new(ActorTree::default()),
            placement: Arc::new(liveshop_actors::placement::Local),
        },
    );
    assert_eq!(recovery::pass(&directory, store.as_ref()).await, 3);
    settle().await;
    for id in ["drp_held", "drp_ends", "drp_sold_out"] {
        assert!(directory.drop_is_running(&DropId::from_trusted(id)), "{id}");
    }
    for id in ["drp_idle", "drp_closed"] {
        assert!(
            !directory.drop_is_running(&DropId::from_trusted(id)),
            "{id}"
        );
    }
    assert_eq!(
        recovery::pass(&directory, store.as_ref()).await,
        0,
        "a running drop is not started twice"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recovery_pass_that_cannot_list_drops_starts_nothing_and_tries_again_later() {
    let store = MemoryStore::with_live_stream().await;
    store_drop(&store, &drop_in("drp_held", 5), true).await;
    let directory = Directory::new(
        supervisor().await,
        Capabilities {
            store: store.clone(),
            fanout: Fanout::in_process(Limits::default().resume_buffer),
            persister: PersisterPort::new(),
            time: TimeAndIds::system(),
            limits: Limits::default(),
            claim_batch_max: 1000,
            tree: Arc::new(ActorTree::default()),
            placement: Arc::new(liveshop_actors::placement::Local),
        },
    );
    store.set_down(true);
    assert_eq!(recovery::pass(&directory, store.as_ref()).await, 0);
    store.set_down(false);
    assert_eq!(recovery::pass(&directory, store.as_ref()).await, 1);
}
