//! One simulated viewer: joins the stream, checks every ordered event (seq order, gaps,
//! duplicates), measures live chat latency, and on churn, storm or an unexpected close
//! reconnects with full-jitter backoff and resumes with `join {epoch, since}`.

use crate::backoff::{Backoff, full_jitter};
use crate::client::{Conn, Endpoint, Frame, Incoming, Resume};
use crate::crowd::{Fleet, SlotState};
use crate::latency::Batch;
use crate::payload;
use crate::tracker::{Observation, SeqTracker};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Orders from the scenario to every viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Keep going.
    Run,
    /// Disconnect abruptly now and come back (storm number n).
    Drop(u32),
    /// Stop churning; finish any reconnect in progress.
    Settle,
    /// Leave.
    Stop,
}

/// How viewers behave.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Server to connect to.
    pub endpoint: Arc<Endpoint>,
    /// Stream to join.
    pub stream: String,
    /// Backoff between failed (re)connect attempts.
    pub backoff: Backoff,
    /// Window of the first reconnect delay after a storm drop.
    pub storm_jitter: Duration,
    /// Mean connected time of churning viewers.
    pub churn_mean: Duration,
    /// Give up reconnecting after this long without success.
    pub outage_limit: Duration,
    /// Attempts for the first connection.
    pub initial_attempts: u32,
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy)]
enum Outage {
    Storm,
    Churn,
    Lost(Option<u16>),
}

/// What the command channel said.
enum Heard {
    Nothing,
    Drop,
    Stop,
}

struct Viewer {
    id: usize,
    token: String,
    plan: Arc<Plan>,
    fleet: Arc<Fleet>,
    tracker: SeqTracker,
    epoch: Option<Value>,
    replay_until: u64,
    churns: bool,
    last_drop: u32,
    latency: Batch,
}

/// Runs viewer `id` until told to stop; `churns` makes it disconnect and resume
/// periodically.
pub async fn run(
    id: usize,
    token: String,
    churns: bool,
    plan: Arc<Plan>,
    fleet: Arc<Fleet>,
    mut ctl: watch::Receiver<Command>,
) {
    let latency = Batch::new(fleet.latency.clone(), id);
    let mut v = Viewer {
        id,
        token,
        plan,
        fleet,
        tracker: SeqTracker::default(),
        epoch: None,
        replay_until: 0,
        churns,
        last_drop: 0,
        latency,
    };
    let Some(mut conn) = v.first_connect(&mut ctl).await else {
        return;
    };
    loop {
        let churn_at = v.churn_deadline();
        let outage = loop {
            tokio::select! {
                biased;
                changed = ctl.changed() => match v.heard(changed.is_ok(), &mut ctl) {
                    Heard::Stop => {
                        v.fleet.set_state(v.id, SlotState::Done);
                        conn.close().await;
                        return;
                    }
                    Heard::Drop => break Outage::Storm,
                    Heard::Nothing => {}
                },
                incoming = conn.next() => match incoming {
                    Incoming::Frame(frame) => v.handle(frame),
                    Incoming::Closed(code) => break Outage::Lost(code),
                },
                _ = sleep_until(churn_at), if v.churns => break Outage::Churn,
            }
        };
        conn.abort();
        match v.recover(outage, &mut ctl).await {
            Some(next) => conn = next,
            None => return,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

impl Viewer {
    fn churn_deadline(&self) -> Option<Instant> {
        if !self.churns {
            return None;
        }
        let window = self.plan.churn_mean * 2;
        Some(Instant::now() + full_jitter(window, &mut rand::rng()))
    }

    fn heard(&mut self, open: bool, ctl: &mut watch::Receiver<Command>) -> Heard {
        if !open {
            return Heard::Stop;
        }
        match *ctl.borrow_and_update() {
            Command::Stop => Heard::Stop,
            Command::Settle => {
                self.churns = false;
                Heard::Nothing
            }
            Command::Drop(n) if n != self.last_drop => {
                self.last_drop = n;
                Heard::Drop
            }
            _ => Heard::Nothing,
        }
    }

    /// Sleeps `pause` unless told to stop (returns false then).
    async fn pause(&mut self, pause: Duration, ctl: &mut watch::Receiver<Command>) -> bool {
        let until = tokio::time::Instant::now() + pause;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => return true,
                changed = ctl.changed() => {
                    if let Heard::Stop = self.heard(changed.is_ok(), ctl) {
                        return false;
                    }
                }
            }
        }
    }

    async fn first_connect(&mut self, ctl: &mut watch::Receiver<Command>) -> Option<Conn> {
        let fleet = self.fleet.clone();
        let c = &fleet.counters;
        for attempt in 0..self.plan.initial_attempts {
            let permit = fleet.gate.acquire().await.ok()?;
            let result = self
                .plan
                .endpoint
                .connect_and_join(&self.token, self.id, &self.plan.stream, None)
                .await;
            drop(permit);
            match result {
                Ok((conn, joined)) => {
                    self.tracker.start_at(joined.seq.unwrap_or(0));
                    self.epoch = joined.epoch;
                    self.fleet.publish_seq(self.id, self.tracker.last());
                    self.fleet.set_state(self.id, SlotState::Joined);
                    c.ever_joined.fetch_add(1, Relaxed);
                    return Some(conn);
                }
                Err(e) => {
                    c.connect_failures.fetch_add(1, Relaxed);
                    self.fleet.count_error(&format!("connect_{}", e.label()));
                    let wait = self.plan.backoff.delay(attempt, &mut rand::rng());
                    if !self.pause(wait, ctl).await {
                        break;
                    }
                }
            }
        }
        c.initial_failed.fetch_add(1, Relaxed);
        self.fleet.set_state(self.id, SlotState::Failed);
        None
    }

    async fn recover(&mut self, why: Outage, ctl: &mut watch::Receiver<Command>) -> Option<Conn> {
        let fleet = self.fleet.clone();
        let c = &fleet.counters;
        fleet.set_state(self.id, SlotState::Down);
        match why {
            Outage::Storm => c.storm_drops.fetch_add(1, Relaxed),
            Outage::Churn => c.churn_drops.fetch_add(1, Relaxed),
            Outage::Lost(code) => {
                if code == Some(1012) {
                    c.server_restarts.fetch_add(1, Relaxed);
                }
                c.unexpected_closes.fetch_add(1, Relaxed)
            }
        };
        let started = Instant::now();
        let first = match why {
            Outage::Storm => full_jitter(self.plan.storm_jitter, &mut rand::rng()),
            _ => self.plan.backoff.delay(0, &mut rand::rng()),
        };
        if !self.pause(first, ctl).await {
            return None;
        }
        let mut attempt = 0;
        loop {
            let resume = match (&self.epoch, self.tracker.last()) {
                (Some(epoch), Some(since)) => Some(Resume {
                    epoch: epoch.clone(),
                    since,
                }),
                _ => None,
            };
            let result = self
                .plan
                .endpoint
                .connect_and_join(&self.token, self.id, &self.plan.stream, resume.as_ref())
                .await;
            match result {
                Ok((conn, joined)) => {
                    self.rejoined(&joined);
                    let took = started.elapsed();
                    fleet.reconnect.record(self.id, took.as_micros() as u64);
                    c.reconnects.fetch_add(1, Relaxed);
                    if let Outage::Storm = why {
                        c.storm_back.fetch_add(1, Relaxed);
                        c.back_at_us.fetch_max(payload::now_us(), Relaxed);
                    }
                    fleet.set_state(self.id, SlotState::Joined);
                    return Some(conn);
                }
                Err(e) => {
                    c.connect_failures.fetch_add(1, Relaxed);
                    fleet.count_error(&format!("reconnect_{}", e.label()));
                    attempt += 1;
                    if started.elapsed() > self.plan.outage_limit {
                        c.gave_up.fetch_add(1, Relaxed);
                        fleet.set_state(self.id, SlotState::Failed);
                        return None;
                    }
                    let wait = self.plan.backoff.delay(attempt, &mut rand::rng());
                    if !self.pause(wait, ctl).await {
                        return None;
                    }
                }
            }
        }
    }

    fn rejoined(&mut self, joined: &Frame) {
        let c = &self.fleet.counters;
        let seq = joined.seq.unwrap_or(0);
        if joined.resumed {
            c.resumed.fetch_add(1, Relaxed);
            self.replay_until = seq;
        } else {
            c.resyncs.fetch_add(1, Relaxed);
            let same_epoch = joined.epoch.is_some() && joined.epoch == self.epoch;
            let skipped = self.tracker.resync(seq, same_epoch);
            c.resync_skipped.fetch_add(skipped, Relaxed);
            self.replay_until = 0;
        }
        self.epoch = joined.epoch.clone();
        self.fleet.publish_seq(self.id, self.tracker.last());
    }

    fn handle(&mut self, frame: Frame) {
        let c = &self.fleet.counters;
        match frame.kind.as_str() {
            "event" => {
                let Some(seq) = frame.seq else {
                    return; // ephemeral: viewers, reactions, inventory
                };
                match self.tracker.observe(seq) {
                    Observation::Stale => {
                        c.out_of_order.fetch_add(1, Relaxed);
                        return;
                    }
                    Observation::Gap(n) => {
                        c.lost.fetch_add(n, Relaxed);
                    }
                    Observation::Restart => {
                        c.epoch_restarts.fetch_add(1, Relaxed);
                        self.replay_until = 0;
                    }
                    Observation::InOrder => {}
                }
                self.fleet.publish_seq(self.id, Some(seq));
                if let Some(text) = frame.chat_text() {
                    c.chat_delivered.fetch_add(1, Relaxed);
                    if seq <= self.replay_until {
                        c.replayed.fetch_add(1, Relaxed);
                    } else if let Some((_, sent)) = payload::decode(text) {
                        self.latency
                            .push(payload::now_us().saturating_sub(sent).max(1));
                    }
                }
            }
            "error" => {
                c.error_frames.fetch_add(1, Relaxed);
                let code = frame.code.as_deref().unwrap_or("unknown");
                self.fleet.count_error(&format!("frame_{code}"));
            }
            _ => {}
        }
    }
}
