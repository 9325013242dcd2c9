//! `/metrics` and `/ready` as an operator and an outsider see them: labels stay bounded whatever
//! a client sends, every contract metric is there from the start, readiness is cached, and
//! `/metrics` can be moved to a listener of its own.

#[macro_use]
mod common;

use std::time::Duration;

use common::{Backend, TestApp, config_for};
use liveshop_http::Application;
use liveshop_storage::testing::fresh;
use tokio::sync::Mutex;

both! {
    concurrent_ready_calls_probe_storage_about_once_a_second,
}

/// Tests that read the process-wide readiness probe counter take turns.
static PROBE_COUNTER: Mutex<()> = Mutex::const_new(());

async fn metrics_text(app: &TestApp) -> String {
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The sample lines of metric `name` (its series), `_count` lines for a histogram.
fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .collect()
}

fn value_of(text: &str, name: &str) -> f64 {
    let line = series(text, name);
    assert_eq!(line.len(), 1, "one series of {name}: {line:?}");
    line[0].rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn made_up_http_methods_do_not_add_metric_series() {
    let app = TestApp::default(Backend::Sqlite).await;
    let made_up = 3000;
    for i in 0..made_up {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let path = if i % 2 == 0 {
            "/health"
        } else {
            "/v1/no/such/path"
        };
        let response = app
            .http
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    let text = metrics_text(&app).await;
    assert!(
        !text.contains("MADEUP"),
        "a made-up method became a label value"
    );
    let requests = series(&text, "http_requests_total");
    let durations = series(&text, "http_request_duration_seconds_count");
    // Bounded by methods × routes × statuses the engine can produce, not by what clients send.
    assert!(
        requests.len() < 60,
        "{} series: {requests:#?}",
        requests.len()
    );
    assert!(durations.len() < 60, "{} series", durations.len());
    let other: f64 = requests
        .iter()
        .filter(|l| l.contains("method=\"other\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert!(
        other >= f64::from(made_up),
        "made-up methods count as other: {other}"
    );
}

#[tokio::test]
async fn a_fresh_engine_exports_every_metric_of_the_contract() {
    let app = TestApp::default(Backend::Sqlite).await;
    let text = metrics_text(&app).await;
    // Contract section 5, and what the engine adds.
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_count",
        "websocket_connections_total",
        "websocket_connections_active",
        "websocket_disconnects_total",
        "liveshop_actors",
        "liveshop_actor_restarts_total",
        "liveshop_actor_mailbox_depth",
        "liveshop_events_delivered_total",
        "liveshop_claims_total",
        "liveshop_slow_consumers_total",
        "liveshop_readiness_probes_total",
    ] {
        assert!(
            !series(&text, name).is_empty(),
            "{name} is missing:\n{text}"
        );
    }
    for reason in liveshop_http::ws::close::CloseReason::ALL {
        let label = format!(
            "websocket_disconnects_total{{reason=\"{}\"}}",
            reason.label()
        );
        assert!(text.contains(&label), "{label} is missing");
    }
}

async fn concurrent_ready_calls_probe_storage_about_once_a_second(backend: Backend) {
    let _turn = PROBE_COUNTER.lock().await;
    let app = TestApp::default(backend).await;
    let before = value_of(&metrics_text(&app).await, "liveshop_readiness_probes_total");
    let started = tokio::time::Instant::now();
    let mut calls = 0;
    // Five waves of 100 concurrent callers, 500 ms apart: about 2 s of polling.
    for _ in 0..5 {
        let wave: Vec<_> = (0..100)
            .map(|_| {
                let (http, url) = (app.http.clone(), app.url("/ready"));
                tokio::spawn(async move { http.get(url).send().await.unwrap() })
            })
            .collect();
        for call in wave {
            let response = call.await.unwrap();
            assert_eq!(response.status(), 200);
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["checks"]["storage"], "ok", "{body}");
            calls += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let probes = value_of(&metrics_text(&app).await, "liveshop_readiness_probes_total") - before;
    assert!(probes >= 1.0, "readiness was never probed");
    // One probe per started second, plus the first.
    assert!(
        probes <= seconds.ceil() + 1.0,
        "{calls} calls in {seconds:.1} s probed storage {probes} times"
    );
}

#[tokio::test]
async fn metrics_can_move_to_a_listener_of_their_own() {
    let db = fresh(Backend::Sqlite).await;
    let mut config = config_for(db.url());
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = Application::build(config).await.unwrap();
    let (addr, metrics_addr) = (app.addr(), app.metrics_addr().expect("metrics listener"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();

    let main = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404, "the serving port hides /metrics");
    let health = http
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    let apart = http
        .get(format!("http://{metrics_addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(apart.status(), 200);
    let text = apart.text().await.unwrap();
    assert!(text.contains("http_requests_total{"), "{text}");
    let other = http
        .get(format!("http://{metrics_addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        404,
        "the metrics listener serves /metrics only"
    );

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("server stops")
        .unwrap()
        .unwrap();
}
