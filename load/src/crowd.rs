//! A crowd of viewers on one stream: spawns them, steers them with one command channel, and
//! exposes the shared counters and per-viewer progress the scenarios wait on and report.

use crate::latency::Recorder;
use crate::progress::Progress;
use crate::setup::Target;
use crate::viewer::{self, Command, Plan};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Lifecycle of one viewer, as seen by the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SlotState {
    /// Opening its first connection.
    Connecting = 0,
    /// Joined and receiving.
    Joined = 1,
    /// Between a disconnect and a successful resume.
    Down = 2,
    /// Could not connect (first connect or reconnect gave up).
    Failed = 3,
    /// Left on request.
    Done = 4,
}

/// Progress of one viewer, readable without locks.
#[derive(Debug, Default)]
pub struct Slot {
    state: AtomicU8,
    /// Last seq seen plus one (0: none yet).
    seq_plus_one: AtomicU64,
}

/// Counters shared by all viewers of a crowd.
#[derive(Debug, Default)]
pub struct Counters {
    /// Viewers whose first connect+join succeeded.
    pub ever_joined: AtomicU64,
    /// Viewers whose first connect never succeeded.
    pub initial_failed: AtomicU64,
    /// Failed connect/join attempts (each retry counts).
    pub connect_failures: AtomicU64,
    /// Successful reconnects (any cause).
    pub reconnects: AtomicU64,
    /// Joins answered `resumed:true`.
    pub resumed: AtomicU64,
    /// Joins answered `resumed:false` with a snapshot after a disconnect.
    pub resyncs: AtomicU64,
    /// Seqs skipped by resyncs (covered by the snapshot, not replayed).
    pub resync_skipped: AtomicU64,
    /// Connections closed by the server or the network, not by the tool.
    pub unexpected_closes: AtomicU64,
    /// Closes with code 1012 (server restarting).
    pub server_restarts: AtomicU64,
    /// Disconnects caused by a storm.
    pub storm_drops: AtomicU64,
    /// Viewers back after a storm drop.
    pub storm_back: AtomicU64,
    /// Latest storm comeback, microseconds on the process clock.
    pub back_at_us: AtomicU64,
    /// Disconnects caused by churn.
    pub churn_drops: AtomicU64,
    /// Chat events delivered (live or replayed).
    pub chat_delivered: AtomicU64,
    /// Chat events delivered as a resume replay.
    pub replayed: AtomicU64,
    /// Seqs missing inside the sequence (gaps).
    pub lost: AtomicU64,
    /// Duplicate or out-of-order events.
    pub out_of_order: AtomicU64,
    /// Seq spaces restarting at 1 (new epoch) while joined.
    pub epoch_restarts: AtomicU64,
    /// Error frames received.
    pub error_frames: AtomicU64,
    /// Viewers that gave up reconnecting.
    pub gave_up: AtomicU64,
}

/// Plain copy of [`Counters`] for reports.
#[derive(Debug, Clone, Default, Serialize)]
#[allow(missing_docs)]
pub struct CounterSnapshot {
    pub ever_joined: u64,
    pub initial_failed: u64,
    pub connect_failures: u64,
    pub reconnects: u64,
    pub resumed: u64,
    pub resyncs: u64,
    pub resync_skipped: u64,
    pub unexpected_closes: u64,
    pub server_restarts: u64,
    pub storm_drops: u64,
    pub storm_back: u64,
    pub churn_drops: u64,
    pub chat_delivered: u64,
    pub replayed: u64,
    pub lost: u64,
    pub out_of_order: u64,
    pub epoch_restarts: u64,
    pub error_frames: u64,
    pub gave_up: u64,
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            ever_joined: self.ever_joined.load(Relaxed),
            initial_failed: self.initial_failed.load(Relaxed),
            connect_failures: self.connect_failures.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
            resyncs: self.resyncs.load(Relaxed),
            resync_skipped: self.resync_skipped.load(Relaxed),
            unexpected_closes: self.unexpected_closes.load(Relaxed),
            server_restarts: self.server_restarts.load(Relaxed),
            storm_drops: self.storm_drops.load(Relaxed),
            storm_back: self.storm_back.load(Relaxed),
            churn_drops: self.churn_drops.load(Relaxed),
            chat_delivered: self.chat_delivered.load(Relaxed),
            replayed: self.replayed.load(Relaxed),
            lost: self.lost.load(Relaxed),
            out_of_order: self.out_of_order.load(Relaxed),
            epoch_restarts: self.epoch_restarts.load(Relaxed),
            error_frames: self.error_frames.load(Relaxed),
            gave_up: self.gave_up.load(Relaxed),
        }
    }
}

/// State shared by the viewers of a crowd and the scenario.
pub struct Fleet {
    /// Counters.
    pub counters: Counters,
    /// Live chat latency (send to delivery), microseconds.
    pub latency: Arc<Recorder>,
    /// Time from disconnect to resumed, microseconds.
    pub reconnect: Arc<Recorder>,
    /// Limits first connects in flight.
    pub gate: Semaphore,
    slots: Vec<Slot>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Fleet {
    fn new(viewers: usize, concurrency: usize) -> Self {
        Self {
            counters: Counters::default(),
            latency: Recorder::shared(),
            reconnect: Recorder::shared(),
            gate: Semaphore::new(concurrency.max(1)),
            slots: (0..viewers).map(|_| Slot::default()).collect(),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records viewer `id`'s state.
    pub fn set_state(&self, id: usize, state: SlotState) {
        self.slots[id].state.store(state as u8, Relaxed);
    }

    /// Records the last seq viewer `id` has seen.
    pub fn publish_seq(&self, id: usize, seq: Option<u64>) {
        if let Some(seq) = seq {
            self.slots[id].seq_plus_one.store(seq + 1, Relaxed);
        }
    }

    /// Counts one failure by label.
    pub fn count_error(&self, label: &str) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(label.to_string()).or_default() += 1;
    }

    /// Failures by label.
    pub fn errors(&self) -> BTreeMap<String, u64> {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Number of viewers in `state`.
    pub fn count(&self, state: SlotState) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state.load(Relaxed) == state as u8)
            .count()
    }

    /// Viewers still taking part (not failed).
    pub fn alive(&self) -> usize {
        self.slots.len() - self.count(SlotState::Failed)
    }

    /// Viewers that are joined and have seen `target`.
    pub fn caught_up(&self, target: u64) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.state.load(Relaxed) == SlotState::Joined as u8
                    && s.seq_plus_one.load(Relaxed) > target
            })
            .count()
    }

    /// Sum over viewers that are still taking part of the seqs up to `target` they never saw.
    pub fn missing_tail(&self, target: u64) -> u64 {
        self.slots
            .iter()
            .filter(|s| s.state.load(Relaxed) != SlotState::Failed as u8)
            .map(|s| target.saturating_sub(s.seq_plus_one.load(Relaxed).saturating_sub(1)))
            .sum()
    }
}

/// Running viewers and the handle to steer them.
pub struct Crowd {
    /// Shared state.
    pub fleet: Arc<Fleet>,
    ctl: watch::Sender<Command>,
    tasks: JoinSet<()>,
    size: usize,
}

impl Crowd {
    /// Spawns `size` viewers of `target`; the first `churners` of them churn.
    pub fn spawn(
        target: &Target,
        plan: Plan,
        size: usize,
        churners: usize,
        concurrency: usize,
    ) -> anyhow::Result<Self> {
        let fleet = Arc::new(Fleet::new(size, concurrency));
        let plan = Arc::new(plan);
        let (ctl, rx) = watch::channel(Command::Run);
        let mut tasks = JoinSet::new();
        for id in 0..size {
            let token = target.viewer_token(id)?;
            tasks.spawn(viewer::run(
                id,
                token,
                id < churners,
                plan.clone(),
                fleet.clone(),
                rx.clone(),
            ));
        }
        Ok(Self {
            fleet,
            ctl,
            tasks,
            size,
        })
    }

    /// Number of viewers.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Sends a command to every viewer.
    pub fn command(&self, command: Command) {
        let _ = self.ctl.send(command);
    }

    /// Waits until every viewer has joined or failed (at most `limit`); returns joined.
    pub async fn wait_connected(&self, limit: Duration, progress: &Progress) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let joined = self.fleet.count(SlotState::Joined);
            let failed = self.fleet.count(SlotState::Failed);
            let connecting = self.fleet.count(SlotState::Connecting);
            progress.set(joined as u64);
            progress.message(format!("connecting {connecting} failed {failed}"));
            if joined + failed >= self.size || Instant::now() >= deadline {
                return joined;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every viewer still taking part is joined and has seen `target` (at most
    /// `limit`); returns whether they all did.
    pub async fn wait_caught_up(&self, target: u64, limit: Duration, progress: &Progress) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let done = self.fleet.caught_up(target);
            progress.set(done as u64);
            if done >= self.fleet.alive() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every viewer and waits for them (stragglers are aborted after a few seconds).
    pub async fn stop(mut self) {
        self.command(Command::Stop);
        let drained = tokio::time::timeout(Duration::from_secs(10), async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}
