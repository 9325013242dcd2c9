//! End-to-end runs of every scenario against the real engine binary (started on port 0 with
//! a fresh SQLite database). Skipped with a message when the engine is not built, except
//! under CI. Assertions are on counts, never on timings.

mod common;

use common::{Engine, num};

#[test]
fn http_hammers_health_and_an_authenticated_route() {
    let Some(engine) = Engine::start() else {
        return;
    };
    let (code, report) = engine.load(&["http", "-c", "4", "--duration", "2s", "--slo", "errors=0"]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["scenario"], "http");
    assert!(num(&report, "requests") > 0);
    assert!(num(&report, "status_counts.200") > 0);
    assert_eq!(num(&report, "errors"), 0);
    assert!(report["latency_ms"]["p99"].as_f64().unwrap() > 0.0);

    // A tenant-scoped read with a minted viewer token (the tool creates the tenant); a
    // refused token would show up as 401/403.
    let (code, report) = engine.load(&[
        "http",
        "-c",
        "2",
        "--duration",
        "1s",
        "--path",
        "/v1/streams?status=live",
        "--role",
        "viewer",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert!(num(&report, "status_counts.200") > 0, "{report:#}");
    // The engine may rate-limit a single user (429); anything else is a failure.
    let errors = report["errors_by_status"]
        .as_object()
        .expect("errors_by_status");
    assert!(errors.keys().all(|status| status == "429"), "{report:#}");
}

#[test]
fn fanout_delivers_every_chat_to_every_viewer() {
    let Some(engine) = Engine::start() else {
        return;
    };
    let pid = engine.pid().to_string();
    let (code, report) = engine.load(&[
        "fanout",
        "-c",
        "30",
        "--rate",
        "20",
        "--size",
        "120",
        "--duration",
        "3s",
        "--drain",
        "15s",
        "--source-ips",
        "4",
        "--server-pid",
        &pid,
        "--slo",
        "lost=0,errors=0",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["scenario"], "fanout");
    assert_eq!(num(&report, "connected"), 30);
    let published = num(&report, "published");
    assert!(published > 0);
    assert_eq!(num(&report, "expected_deliveries"), published * 30);
    assert_eq!(num(&report, "delivered"), published * 30, "{report:#}");
    assert_eq!(num(&report, "lost"), 0);
    assert_eq!(num(&report, "out_of_order"), 0);
    assert_eq!(num(&report, "latency_ms.count"), published * 30);
    assert!(num(&report, "server.rss_end_kib") > 0);
}

#[test]
fn impossible_slo_exits_with_code_2() {
    let Some(engine) = Engine::start() else {
        return;
    };
    let (code, report) = engine.load(&[
        "fanout",
        "-c",
        "5",
        "--rate",
        "10",
        "--duration",
        "1s",
        "--slo",
        "p99<0ms",
    ]);
    assert_eq!(code, 2, "{report:#}");
    assert_eq!(report["slo"]["passed"], false);
    assert_eq!(report["slo"]["checks"][0]["metric"], "p99");
}

#[test]
fn soak_churn_resumes_without_loss() {
    let Some(engine) = Engine::start() else {
        return;
    };
    let pid = engine.pid().to_string();
    let (code, report) = engine.load(&[
        "soak",
        "-c",
        "30",
        "--duration",
        "6s",
        "--rate",
        "20",
        "--churn",
        "0.5",
        "--churn-every",
        "1s",
        "--backoff-base",
        "50ms",
        "--backoff-cap",
        "500ms",
        "--server-pid",
        &pid,
        "--sample-every",
        "500ms",
        "--slo",
        "lost=0",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["scenario"], "soak");
    assert_eq!(num(&report, "connected"), 30);
    assert!(num(&report, "churn_disconnects") > 0, "{report:#}");
    assert!(num(&report, "reconnects") > 0);
    assert!(num(&report, "resumed") > 0, "{report:#}");
    assert_eq!(num(&report, "lost"), 0);
    assert_eq!(num(&report, "out_of_order"), 0);
    let expected = num(&report, "expected_deliveries");
    assert!(expected > 0);
    assert_eq!(
        num(&report, "delivered") + num(&report, "resync_skipped"),
        expected,
        "{report:#}"
    );
    assert_eq!(report["exactly_once"], true);
    assert!(num(&report, "server.rss_start_kib") > 0);
    assert!(
        report["server"]["series"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
}

#[test]
fn storm_everyone_comes_back_and_resumes() {
    let Some(engine) = Engine::start() else {
        return;
    };
    let pid = engine.pid().to_string();
    let (code, report) = engine.load(&[
        "storm",
        "-c",
        "40",
        "--rate",
        "20",
        "--jitter",
        "500ms",
        "--settle",
        "500ms",
        "--duration",
        "3s",
        "--server-pid",
        &pid,
        "--slo",
        "lost=0",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["scenario"], "storm");
    assert_eq!(num(&report, "dropped"), 40);
    assert_eq!(num(&report, "back"), 40);
    assert_eq!(report["all_back"], true);
    assert_eq!(
        num(&report, "resumed") + num(&report, "resyncs"),
        40,
        "{report:#}"
    );
    assert!(num(&report, "resumed") > 0);
    assert_eq!(num(&report, "lost"), 0);
    assert_eq!(num(&report, "out_of_order"), 0);
    assert_eq!(num(&report, "latency_ms.count"), 40);
    assert_eq!(
        num(&report, "delivered") + num(&report, "resync_skipped"),
        num(&report, "expected_deliveries"),
        "{report:#}"
    );
    assert!(report["server_cpu_storm_s"].is_number());
}

#[test]
fn drop_rush_sells_every_unit_once() {
    let Some(engine) = Engine::start() else {
        return;
    };
    let (code, report) = engine.load(&[
        "drop",
        "--buyers",
        "200",
        "--units",
        "50",
        "--source-ips",
        "2",
        "--slo",
        "oversold=0,lost=0,errors=0",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["scenario"], "drop");
    assert_eq!(num(&report, "connected"), 200);
    assert_eq!(num(&report, "config.ws_buyers"), 100);
    assert_eq!(num(&report, "reservations"), 50, "{report:#}");
    assert_eq!(num(&report, "sold_out"), 150, "{report:#}");
    assert_eq!(num(&report, "decisions"), 200);
    assert_eq!(num(&report, "oversold"), 0);
    assert_eq!(num(&report, "lost"), 0);
    assert_eq!(num(&report, "errors"), 0);
    assert_eq!(
        num(&report, "drop_after.reserved") + num(&report, "drop_after.sold"),
        50
    );
    assert_eq!(num(&report, "drop_after.remaining"), 0);
    assert_eq!(num(&report, "listing.buyers_checked"), 50);
    assert_eq!(num(&report, "listing.missing"), 0);
    assert_eq!(num(&report, "latency_ms.count"), 200);
    assert_eq!(report["invariants_held"], true);
    assert!(report["claims_per_s"].as_f64().unwrap() > 0.0);

    // The same key sent twice at once is one claim: 20 reservations, each answered twice.
    let (code, report) = engine.load(&[
        "drop",
        "--buyers",
        "60",
        "--units",
        "20",
        "--retry-same-key",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(num(&report, "requests"), 120);
    assert_eq!(num(&report, "reservations"), 20, "{report:#}");
    assert_eq!(num(&report, "answers_by_code.reserved"), 40, "{report:#}");
    assert_eq!(num(&report, "sold_out"), 80);
    assert_eq!(num(&report, "idempotency_mismatches"), 0);
    assert_eq!(num(&report, "oversold"), 0);
    assert_eq!(num(&report, "lost"), 0);
}

#[test]
fn joined_buyers_see_the_sell_out_once_and_the_latest_inventory() {
    let Some(engine) = Engine::start() else {
        return;
    };
    // Half of the 200 buyers are on the WebSocket and join the show's stream first.
    let (code, report) = engine.load(&[
        "drop", "--buyers", "200", "--units", "50", "--join", "--rate", "2000",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["config"]["join"], true);
    assert_eq!(num(&report, "reservations"), 50, "{report:#}");
    assert_eq!(num(&report, "watched.joined"), 100, "{report:#}");
    assert_eq!(num(&report, "watched.sold_out_once"), 100, "{report:#}");
    assert_eq!(num(&report, "watched.sold_out_repeated"), 0);
    assert_eq!(num(&report, "watched.inventory_latest"), 100, "{report:#}");
    assert!(
        num(&report, "watched.inventory_events") >= 100,
        "{report:#}"
    );
    let passed = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["passed"].clone())
    };
    assert_eq!(passed("sold_out_once"), Some(serde_json::json!(true)));
    assert_eq!(passed("inventory_latest"), Some(serde_json::json!(true)));

    // A drop that does not sell out: no sold_out for anyone, and everybody ends up with the
    // 60 units left.
    let (code, report) = engine.load(&[
        "drop",
        "--buyers",
        "40",
        "--units",
        "100",
        "--ws-fraction",
        "1",
        "--join",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(num(&report, "drop_after.remaining"), 60, "{report:#}");
    assert_eq!(num(&report, "watched.joined"), 40);
    assert_eq!(num(&report, "watched.sold_out_once"), 0);
    assert_eq!(num(&report, "watched.inventory_latest"), 40, "{report:#}");
    assert_eq!(report["invariants_held"], true);
}

#[test]
fn a_paced_drop_rush_spreads_the_claims_over_time() {
    let Some(engine) = Engine::start() else {
        return;
    };
    // 100 claims offered at 200/s: the last one is sent about half a second after the release.
    let trace =
        std::env::temp_dir().join(format!("liveshop-drop-trace-{}.csv", std::process::id()));
    let trace_arg = trace.to_str().unwrap().to_owned();
    let (code, report) = engine.load(&[
        "drop",
        "--buyers",
        "100",
        "--units",
        "30",
        "--rate",
        "200",
        "--trace",
        &trace_arg,
        "--threads",
        "1",
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(num(&report, "config.rate"), 200);
    assert_eq!(num(&report, "decisions"), 100);
    assert_eq!(num(&report, "reservations"), 30, "{report:#}");
    assert_eq!(num(&report, "sold_out"), 70);
    assert_eq!(num(&report, "oversold"), 0);
    assert_eq!(num(&report, "lost"), 0);
    // Pacing is a lower bound on the wall time (the 100th buyer waits 99 intervals of 5 ms).
    assert!(
        report["duration_s"].as_f64().unwrap() >= 0.495,
        "{report:#}"
    );

    // The trace has one line per answer, in send order, spread over the paced half second.
    let text = std::fs::read_to_string(&trace).unwrap();
    let _ = std::fs::remove_file(&trace);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("sent_ms,latency_ms,answer"));
    let rows: Vec<(f64, f64, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                f[1].parse().unwrap(),
                f[2].to_owned(),
            )
        })
        .collect();
    assert_eq!(rows.len(), 100);
    assert!(rows.windows(2).all(|w| w[0].0 <= w[1].0), "send order");
    assert!(
        rows.last().unwrap().0 >= 490.0,
        "last sent {:?}",
        rows.last()
    );
    assert!(rows.iter().all(|r| r.1 >= 0.0));
    assert_eq!(rows.iter().filter(|r| r.2 == "reserved").count(), 30);
    assert_eq!(rows.iter().filter(|r| r.2 == "sold_out").count(), 70);
}

#[test]
fn drop_on_an_existing_drop_counts_only_the_run() {
    let Some(engine) = Engine::start() else {
        return;
    };
    // The first rush creates the drop and takes 20 of its 30 units.
    let (code, first) = engine.load(&["drop", "--buyers", "20", "--units", "30"]);
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(num(&first, "reservations"), 20);
    let drop = first["config"]["drop"].as_str().unwrap().to_string();
    let tenant = first["config"]["tenant"].as_str().unwrap().to_string();
    let stream = first["config"]["stream"].as_str().unwrap().to_string();
    // Buyers 0..20 are the same users again (per-user limit 1): limit_exceeded; buyers
    // 20..30 take the 10 units left. The 15 WebSocket buyers watch the stream meanwhile.
    let (code, report) = engine.load(&[
        "drop", "--drop", &drop, "--tenant", &tenant, "--buyers", "30", "--join", "--stream",
        &stream,
    ]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(num(&report, "watched.joined"), 15, "{report:#}");
    assert_eq!(num(&report, "watched.sold_out_once"), 15, "{report:#}");
    assert_eq!(num(&report, "watched.inventory_latest"), 15, "{report:#}");
    assert_eq!(report["config"]["created_drop"], false);
    assert_eq!(num(&report, "drop_before.remaining"), 10);
    assert_eq!(num(&report, "reservations"), 10, "{report:#}");
    assert_eq!(
        num(&report, "answers_by_code.limit_exceeded"),
        20,
        "{report:#}"
    );
    assert_eq!(num(&report, "sold_out"), 0);
    assert_eq!(num(&report, "drop_after.reserved"), 30);
    assert_eq!(num(&report, "oversold"), 0);
    assert_eq!(num(&report, "lost"), 0);
}
