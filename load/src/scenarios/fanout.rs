//! `fanout`: C viewers on one live stream while the seller publishes R chats/s of S bytes;
//! measures end-to-end latency, deliveries/s, loss and ordering.

use super::{bar, default_backoff, endpoint, gather_crowd, plan, server_stats, wind_down};
use crate::cli::{Common, FanoutArgs};
use crate::latency::round3;
use crate::procstat::Sampler;
use crate::publisher::Publisher;
use crate::report::Report;
use crate::setup;
use std::time::{Duration, Instant};

/// Runs the scenario.
pub async fn run(common: &Common, args: &FanoutArgs) -> anyhow::Result<Report> {
    let target = setup::prepare(common).await?;
    let endpoint = endpoint(common)?;
    let plan = plan(endpoint.clone(), &target, default_backoff());
    let (crowd, joined) = gather_crowd(common, &target, plan, args.connections, 0).await?;
    let sampler = common
        .server_pid
        .map(|pid| Sampler::start(pid, Duration::from_millis(500)));
    let publisher = Publisher::start(
        &endpoint,
        &target.seller_token,
        &target.stream,
        args.rate,
        args.size,
    )
    .await?;
    let started = Instant::now();
    let progress = bar(common, "publish", args.duration.as_secs().max(1));
    while started.elapsed() < args.duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress.set(started.elapsed().as_secs());
        let c = &crowd.fleet.counters;
        progress.message(format!(
            "sent {} delivered {}",
            publisher.sent(),
            c.chat_delivered.load(std::sync::atomic::Ordering::Relaxed)
        ));
    }
    progress.finish();
    let publish_s = started.elapsed().as_secs_f64();
    let done = wind_down(common, crowd, publisher, args.drain, sampler).await;
    let phase_s = (done.drained_at - started).as_secs_f64();
    let mut report = Report::new("fanout", &common.url);
    report.config("connections", args.connections);
    report.config("rate", args.rate);
    report.config("size", args.size);
    report.config("duration_s", args.duration.as_secs_f64());
    report.config("drain_s", args.drain.as_secs_f64());
    report.config("source_ips", endpoint.source_count());
    report.config("stream", &target.stream);
    report.duration_s = round3(phase_s);
    report.latency_ms = done.fleet.latency.summary();
    done.record(&mut report);
    let per_s = done.counters.chat_delivered as f64 / phase_s.max(1e-9);
    let expected = done.expected_deliveries();
    report.stat("publish_s", round3(publish_s));
    report.stat("deliveries_per_s", round3(per_s));
    report.stat("target_deliveries_per_s", round3(args.rate * joined as f64));
    server_stats(&mut report, done.series, 0);
    if let Some(server) = report.stats.get("server")
        && let Some(cpu) = server.get("cpu_s").and_then(|v| v.as_f64())
        && done.counters.chat_delivered > 0
    {
        let us = cpu * 1e6 / done.counters.chat_delivered as f64;
        report.stat("server_cpu_us_per_delivery", round3(us));
    }
    report.headline = vec![
        format!(
            "viewers {joined}/{} joined; seller published {} chats ({} rejected) at {}/s, {} B",
            args.connections, done.published.acked, done.published.rejected, args.rate, args.size
        ),
        format!(
            "delivered {} of {} expected ({:.0}/s); lost {}; out-of-order {}",
            done.counters.chat_delivered, expected, per_s, report.lost, done.counters.out_of_order
        ),
    ];
    Ok(report)
}
