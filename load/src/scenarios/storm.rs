//! `storm`: C viewers connected, all drop at once and come back with jittered backoff and
//! resume; measures time until everyone is back, failed attempts, events missed and the
//! server CPU the storm cost.

use super::{bar, endpoint, gather_crowd, plan, server_stats, wind_down};
use crate::backoff::Backoff;
use crate::cli::{Common, StormArgs};
use crate::crowd::SlotState;
use crate::latency::round3;
use crate::payload;
use crate::procstat::{self, Sampler};
use crate::publisher::Publisher;
use crate::report::Report;
use crate::setup;
use crate::viewer::Command;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// Runs the scenario.
pub async fn run(common: &Common, args: &StormArgs) -> anyhow::Result<Report> {
    let target = setup::prepare(common).await?;
    let endpoint = endpoint(common)?;
    let backoff = Backoff {
        base: args.backoff_base,
        cap: args.backoff_cap,
    };
    let mut plan = plan(endpoint.clone(), &target, backoff);
    plan.storm_jitter = args.jitter;
    plan.outage_limit = args.timeout;
    let (crowd, joined) = gather_crowd(common, &target, plan, args.connections, 0).await?;
    let publisher = Publisher::start(
        &endpoint,
        &target.seller_token,
        &target.stream,
        args.rate,
        args.size,
    )
    .await?;
    tokio::time::sleep(args.settle).await;

    let sampler = common
        .server_pid
        .map(|pid| Sampler::start(pid, Duration::from_millis(100)));
    let cpu_before = common.server_pid.and_then(procstat::read).map(|r| r.1);
    let expected_back = crowd.fleet.count(SlotState::Joined) as u64;
    let dropped_at_us = payload::now_us();
    let started = Instant::now();
    crowd.command(Command::Drop(1));

    let progress = bar(common, "storm", expected_back);
    let c = &crowd.fleet.counters;
    let all_back = loop {
        let back = c.storm_back.load(Relaxed);
        let gave_up = c.gave_up.load(Relaxed);
        progress.set(back);
        progress.message(format!(
            "failed attempts {}",
            c.connect_failures.load(Relaxed)
        ));
        if back >= expected_back {
            break true;
        }
        if back + gave_up >= expected_back || started.elapsed() > args.timeout {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    progress.finish();
    let storm_s = started.elapsed().as_secs_f64();
    let cpu_after = common.server_pid.and_then(procstat::read).map(|r| r.1);
    let back_at = c.back_at_us.load(Relaxed);
    let all_back_s = (back_at > dropped_at_us).then(|| (back_at - dropped_at_us) as f64 / 1e6);
    let failures_during_storm = c.connect_failures.load(Relaxed);

    if let Some(rest) = args.duration.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
    crowd.command(Command::Settle);
    let done = wind_down(common, crowd, publisher, args.drain, sampler).await;
    let mut report = Report::new("storm", &common.url);
    report.config("connections", args.connections);
    report.config("jitter_ms", args.jitter.as_millis() as u64);
    report.config("backoff_base_ms", args.backoff_base.as_millis() as u64);
    report.config("backoff_cap_ms", args.backoff_cap.as_millis() as u64);
    report.config("rate", args.rate);
    report.config("size", args.size);
    report.config("timeout_s", args.timeout.as_secs_f64());
    report.config("source_ips", endpoint.source_count());
    report.config("stream", &target.stream);
    report.duration_s = round3(storm_s);
    report.latency_ms = done.fleet.reconnect.summary();
    done.record(&mut report);
    report.stat("dropped", done.counters.storm_drops);
    report.stat("back", done.counters.storm_back);
    report.stat(
        "never_back",
        expected_back.saturating_sub(done.counters.storm_back),
    );
    report.stat("all_back", all_back);
    report.stat("all_back_s", all_back_s.map(round3));
    report.stat("reconnect_failures", failures_during_storm);
    report.stat("resumed", done.counters.resumed);
    report.stat("events_missed", report.lost + done.counters.resync_skipped);
    report.stat("live_latency_ms", done.fleet.latency.summary());
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        report.stat("server_cpu_storm_s", round3(after - before));
    }
    server_stats(&mut report, done.series, 0);
    report.headline = vec![
        format!(
            "{} of {joined} viewers dropped at once; {} back{} ({} failed attempts, {} gave up)",
            done.counters.storm_drops,
            done.counters.storm_back,
            all_back_s
                .filter(|_| all_back)
                .map(|s| format!(", all within {s:.2}s"))
                .unwrap_or_default(),
            failures_during_storm,
            done.counters.gave_up
        ),
        format!(
            "{} resumed, {} resyncs ({} events skipped); lost {}; out-of-order {}",
            done.counters.resumed,
            done.counters.resyncs,
            done.counters.resync_skipped,
            report.lost,
            done.counters.out_of_order
        ),
    ];
    Ok(report)
}
