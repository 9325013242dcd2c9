//! One module per subcommand; each turns its flags into a [`Report`]. Helpers shared by the
//! WebSocket scenarios live here.

pub mod drops;
pub mod fanout;
pub mod http;
pub mod soak;
pub mod storm;

use crate::backoff::Backoff;
use crate::cli::{Cli, Common, Scenario};
use crate::client::Endpoint;
use crate::crowd::{CounterSnapshot, Crowd, Fleet};
use crate::procstat::{Sampler, Series};
use crate::progress::Progress;
use crate::publisher::{Published, Publisher};
use crate::report::Report;
use crate::setup::Target;
use crate::viewer::Plan;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the scenario selected on the command line.
pub async fn run(cli: &Cli) -> anyhow::Result<Report> {
    match &cli.scenario {
        Scenario::Http(args) => http::run(&cli.common, args).await,
        Scenario::Fanout(args) => fanout::run(&cli.common, args).await,
        Scenario::Soak(args) => soak::run(&cli.common, args).await,
        Scenario::Storm(args) => storm::run(&cli.common, args).await,
        Scenario::Drop(args) => drops::run(&cli.common, args).await,
    }
}

/// Endpoint of the engine from the common flags.
pub(crate) fn endpoint(common: &Common) -> anyhow::Result<Arc<Endpoint>> {
    Ok(Arc::new(Endpoint::new(
        &common.url,
        common.source_ips,
        common.connect_timeout,
    )?))
}

/// Viewer behaviour with the given backoff; the other knobs have scenario defaults.
pub(crate) fn plan(endpoint: Arc<Endpoint>, target: &Target, backoff: Backoff) -> Plan {
    Plan {
        endpoint,
        stream: target.stream.clone(),
        backoff,
        storm_jitter: Duration::from_secs(1),
        churn_mean: Duration::from_secs(10),
        outage_limit: Duration::from_secs(60),
        initial_attempts: 5,
    }
}

/// Default reconnect backoff of scenarios without backoff flags.
pub(crate) fn default_backoff() -> Backoff {
    Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
    }
}

/// A progress bar unless `--no-progress`.
pub(crate) fn bar(common: &Common, phase: &str, len: u64) -> Progress {
    Progress::new(!common.no_progress, phase, len)
}

/// Opens the crowd's first connections with a progress bar; fails when nobody joined.
pub(crate) async fn connect_crowd(common: &Common, crowd: &Crowd) -> anyhow::Result<usize> {
    let progress = bar(common, "connect", crowd.size() as u64);
    // Five attempts each, `connect_concurrency` at a time, plus slack for backoff.
    let waves = crowd.size().div_ceil(common.connect_concurrency.max(1)) as u32;
    let limit = common.connect_timeout * 5 * waves.max(1) + Duration::from_secs(30);
    let joined = crowd.wait_connected(limit, &progress).await;
    progress.finish();
    if joined == 0 {
        let errors = crowd.fleet.errors();
        anyhow::bail!("no viewer could connect and join: {errors:?}");
    }
    Ok(joined)
}

/// Spawns `connections` viewers (`churners` of them churning) and waits until they joined. On
/// failure the crowd is stopped before the error is returned.
pub(crate) async fn gather_crowd(
    common: &Common,
    target: &Target,
    plan: Plan,
    connections: usize,
    churners: usize,
) -> anyhow::Result<(Crowd, usize)> {
    let crowd = Crowd::spawn(
        target,
        plan,
        connections,
        churners,
        common.connect_concurrency,
    )?;
    match connect_crowd(common, &crowd).await {
        Ok(joined) => Ok((crowd, joined)),
        Err(e) => {
            crowd.stop().await;
            Err(e)
        }
    }
}

/// What the end of a WebSocket scenario found.
pub(crate) struct WindDown {
    pub published: Published,
    pub caught_up: bool,
    /// When the viewers had caught up (or the drain gave up).
    pub drained_at: Instant,
    pub tail: u64,
    pub counters: CounterSnapshot,
    pub series: Option<Series>,
    pub fleet: Arc<Fleet>,
}

/// Stops the publisher, waits (at most `drain`) for every viewer to catch up with its last
/// event, then stops the sampler and the crowd.
pub(crate) async fn wind_down(
    common: &Common,
    crowd: Crowd,
    publisher: Publisher,
    drain: Duration,
    sampler: Option<Sampler>,
) -> WindDown {
    let published = publisher.finish(drain).await;
    let progress = bar(common, "drain", crowd.fleet.alive() as u64);
    let caught_up = crowd
        .wait_caught_up(published.last_seq, drain, &progress)
        .await;
    progress.finish();
    let drained_at = Instant::now();
    let tail = crowd.fleet.missing_tail(published.last_seq);
    let counters = crowd.fleet.counters.snapshot();
    let series = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let fleet = crowd.fleet.clone();
    crowd.stop().await;
    WindDown {
        published,
        caught_up,
        drained_at,
        tail,
        counters,
        series,
        fleet,
    }
}

impl WindDown {
    /// Chats every viewer that stayed should have received: each acknowledged chat once per
    /// viewer that joined and did not give up.
    pub(crate) fn expected_deliveries(&self) -> u64 {
        let viewers = self
            .counters
            .ever_joined
            .saturating_sub(self.counters.gave_up);
        self.published.acked * viewers
    }

    /// Records the report fields common to the WebSocket scenarios.
    pub(crate) fn record(&self, report: &mut Report) {
        report.lost = self.counters.lost + self.tail;
        report.errors = self.counters.initial_failed
            + self.counters.gave_up
            + self.counters.error_frames
            + self.published.rejected
            + u64::from(self.published.connection_lost);
        report.stat("connected", self.counters.ever_joined);
        report.stat("connect_failed", self.counters.initial_failed);
        report.stat("published", self.published.acked);
        report.stat("expected_deliveries", self.expected_deliveries());
        report.stat("delivered", self.counters.chat_delivered);
        report.stat("lost_in_gaps", self.counters.lost);
        report.stat("lost_at_tail", self.tail);
        report.stat("out_of_order", self.counters.out_of_order);
        report.stat("resyncs", self.counters.resyncs);
        report.stat("resync_skipped", self.counters.resync_skipped);
        report.stat("epoch_restarts", self.counters.epoch_restarts);
        report.stat("unexpected_disconnects", self.counters.unexpected_closes);
        report.stat("server_restart_closes", self.counters.server_restarts);
        report.stat("publisher", &self.published);
        report.stat("viewers", &self.counters);
        report.stat("errors_by_kind", self.fleet.errors());
        report.stat("all_caught_up", self.caught_up);
    }
}

/// Adds the `server` object when `--server-pid` was sampled.
pub(crate) fn server_stats(report: &mut Report, series: Option<Series>, keep_samples: usize) {
    let Some(series) = series else { return };
    if let Some(mut summary) = series.summary() {
        if keep_samples > 0 {
            summary["series"] = serde_json::to_value(series.thinned(keep_samples))
                .unwrap_or(serde_json::Value::Null);
        }
        report.stat("server", summary);
    }
}
