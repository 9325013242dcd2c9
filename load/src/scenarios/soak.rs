//! `soak`: C viewers stay for a long time while a fraction churns (disconnect, full-jitter
//! backoff, resume); proves every published chat reaches every viewer exactly once and in
//! order, live or replayed, and tracks the server's memory drift and CPU.

use super::{bar, endpoint, gather_crowd, plan, server_stats, wind_down};
use crate::backoff::Backoff;
use crate::cli::{Common, SoakArgs};
use crate::crowd::SlotState;
use crate::latency::round3;
use crate::procstat::Sampler;
use crate::publisher::Publisher;
use crate::report::Report;
use crate::setup;
use crate::viewer::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Runs the scenario.
pub async fn run(common: &Common, args: &SoakArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.churn),
        "--churn is a fraction between 0 and 1"
    );
    let target = setup::prepare(common).await?;
    let endpoint = endpoint(common)?;
    let backoff = Backoff {
        base: args.backoff_base,
        cap: args.backoff_cap,
    };
    let mut plan = plan(endpoint.clone(), &target, backoff);
    plan.churn_mean = args.churn_every;
    let churners = (args.connections as f64 * args.churn).round() as usize;
    let sampler = common
        .server_pid
        .map(|pid| Sampler::start(pid, args.sample_every));
    let (crowd, joined) = gather_crowd(common, &target, plan, args.connections, churners).await?;
    let publisher = Publisher::start(
        &endpoint,
        &target.seller_token,
        &target.stream,
        args.rate,
        args.size,
    )
    .await?;
    let started = Instant::now();
    let progress = bar(common, "soak", args.duration.as_secs().max(1));
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        progress.set(started.elapsed().as_secs());
        let c = &crowd.fleet.counters;
        progress.message(format!(
            "joined {} reconnects {} resyncs {} lost {}",
            crowd.fleet.count(SlotState::Joined),
            c.reconnects.load(Relaxed),
            c.resyncs.load(Relaxed),
            c.lost.load(Relaxed),
        ));
    }
    progress.finish();
    crowd.command(Command::Settle);
    let done = wind_down(common, crowd, publisher, args.drain, sampler).await;
    let phase_s = (done.drained_at - started).as_secs_f64();
    let mut report = Report::new("soak", &common.url);
    report.config("connections", args.connections);
    report.config("duration_s", args.duration.as_secs_f64());
    report.config("rate", args.rate);
    report.config("size", args.size);
    report.config("churn", args.churn);
    report.config("churners", churners);
    report.config("churn_every_s", args.churn_every.as_secs_f64());
    report.config("backoff_base_ms", args.backoff_base.as_millis() as u64);
    report.config("backoff_cap_ms", args.backoff_cap.as_millis() as u64);
    report.config("source_ips", endpoint.source_count());
    report.config("stream", &target.stream);
    report.duration_s = round3(phase_s);
    report.latency_ms = done.fleet.latency.summary();
    done.record(&mut report);
    let expected = done.expected_deliveries();
    let accounted = done.counters.chat_delivered + done.counters.resync_skipped;
    let exactly_once = report.lost == 0 && done.counters.out_of_order == 0 && accounted == expected;
    report.stat(
        "delivered_live",
        done.counters.chat_delivered - done.counters.replayed,
    );
    report.stat("delivered_replayed", done.counters.replayed);
    report.stat("churn_disconnects", done.counters.churn_drops);
    report.stat("reconnects", done.counters.reconnects);
    report.stat("resumed", done.counters.resumed);
    report.stat("exactly_once", exactly_once);
    report.stat("reconnect_ms", done.fleet.reconnect.summary());
    server_stats(&mut report, done.series, 300);
    report.headline = vec![
        format!(
            "viewers {joined}/{} joined, {churners} churning every ~{:.1}s; {} disconnects, {} resumed, {} resyncs",
            args.connections,
            args.churn_every.as_secs_f64(),
            done.counters.churn_drops + done.counters.unexpected_closes,
            done.counters.resumed,
            done.counters.resyncs
        ),
        format!(
            "published {}; delivered {} of {} expected ({} replayed, {} skipped by resyncs); lost {}; out-of-order {}; exactly once: {}",
            done.published.acked,
            done.counters.chat_delivered,
            expected,
            done.counters.replayed,
            done.counters.resync_skipped,
            report.lost,
            done.counters.out_of_order,
            exactly_once
        ),
    ];
    if let Some(server) = report.stats.get("server") {
        report.headline.push(format!(
            "server RSS {} -> {} KiB (drift {} KiB, peak {}), CPU {} s",
            server["rss_start_kib"],
            server["rss_end_kib"],
            server["rss_drift_kib"],
            server["rss_peak_kib"],
            server["cpu_s"]
        ));
    }
    Ok(report)
}
