//! Logs and metrics set-up.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::Mode;

/// Installs the log subscriber: JSON in production, human-readable in development. `RUST_LOG`
/// filters (default `info`). Safe to call more than once (later calls do nothing).
pub fn init_logs(mode: Mode) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal());
    let _ = match mode {
        Mode::Production => builder.json().with_current_span(true).try_init(),
        Mode::Dev => builder.try_init(),
    };
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("liveshop_storage_batch_size".into()),
                        &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (embedding in a host process): expose ours anyway.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Counter of readiness checks that actually probed storage (and Redis); `/ready` answers from a
/// cache between probes.
pub const READINESS_PROBES: &str = "liveshop_readiness_probes_total";

/// Registers every metric of the contract (section 5) and of the engine at zero, so `/metrics`
/// lists each name from the start, not only after its first event. Labels come from fixed sets.
pub fn describe_metrics() {
    use liveshop_actors::metrics::{self as m, kind};
    // The HTTP series of the probes, which are the first requests any deployment sees.
    for route in ["/health", "/ready"] {
        metrics::counter!("http_requests_total", "method" => "GET", "route" => route, "status" => "200")
            .increment(0);
        let _ = metrics::histogram!("http_request_duration_seconds", "method" => "GET", "route" => route);
    }
    for reason in crate::ws::close::CloseReason::ALL {
        metrics::counter!("websocket_disconnects_total", "reason" => reason.label()).increment(0);
    }
    metrics::counter!(READINESS_PROBES).increment(0);
    metrics::counter!("websocket_connections_total").absolute(0);
    metrics::gauge!("websocket_connections_active").increment(0.0);
    metrics::counter!("liveshop_events_delivered_total").absolute(0);
    for k in [
        kind::TENANT,
        kind::STREAM,
        kind::DROP,
        kind::SESSION,
        kind::PERSISTER,
    ] {
        metrics::gauge!(m::ACTORS, "kind" => k).increment(0.0);
        metrics::counter!(m::ACTOR_RESTARTS, "kind" => k).increment(0);
        metrics::gauge!(m::ACTOR_MAILBOX_DEPTH, "kind" => k).increment(0.0);
    }
    for result in [
        "reserved",
        "sold_out",
        "limit_exceeded",
        "drop_closed",
        "duplicate",
        "invalid",
        "error",
    ] {
        metrics::counter!(m::CLAIMS, "result" => result).increment(0);
    }
    for k in m::ROWS_REFUSED_KINDS {
        metrics::counter!(m::ROWS_REFUSED, "kind" => k).increment(0);
    }
    for reason in m::CHAT_MODERATED_REASONS {
        metrics::counter!(m::CHAT_MODERATED, "reason" => reason).increment(0);
    }
    for action in m::MODERATION_ACTION_NAMES {
        metrics::counter!(m::MODERATION_ACTIONS, "action" => action).increment(0);
    }
    metrics::counter!(m::SLOW_CONSUMERS).increment(0);
    metrics::counter!(m::BROADCAST_LAG).increment(0);
    metrics::counter!("liveshop_chat_dropped_total").increment(0);
    metrics::gauge!(liveshop_actors::persister::CHAT_BACKLOG).set(0.0);
    metrics::counter!("liveshop_chat_fenced_total").increment(0);
}

/// Registers the cluster's metrics at zero (cluster mode only: a single node has no such series).
pub fn describe_cluster_metrics() {
    use liveshop_cluster::{bus, lease, nodes, relay};
    metrics::gauge!(nodes::CLUSTER_NODES).set(1.0);
    metrics::counter!(bus::MESSAGES_PUBLISHED).increment(0);
    metrics::counter!(bus::MESSAGES_RECEIVED).increment(0);
    // Drops move with their stream: one change of a stream's owner moves its drops too.
    metrics::counter!(lease::OWNER_CHANGES, "kind" => "stream").increment(0);
    for outcome in ["ok", "refused", "unavailable"] {
        metrics::counter!(relay::RELAY_REQUESTS, "outcome" => outcome).increment(0);
    }
}
