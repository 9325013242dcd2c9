//! Command-line interface: global flags shared by every scenario plus one argument struct
//! per subcommand (a new scenario adds a variant here and a module under `scenarios/`).

use crate::duration::parse_duration;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

/// Load, soak and reconnect-storm client for a Liveshop engine (contract v1).
#[derive(Debug, Parser)]
#[command(name = "liveshop-load", version, about)]
pub struct Cli {
    /// Flags every scenario understands.
    #[command(flatten)]
    pub common: Common,
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
}

/// Flags shared by all scenarios.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Base URL of the engine; the WebSocket URL is derived (ws://HOST/v1/ws?token=...).
    #[arg(
        long,
        global = true,
        env = "LIVESHOP_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// HS256 secret of the engine: the tool mints operator, seller and viewer tokens itself.
    #[arg(
        long,
        global = true,
        env = "LIVESHOP_JWT_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,
    /// Operator token, used to create the tenant when no --secret is given.
    #[arg(long, global = true, env = "LIVESHOP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Use this existing tenant instead of creating one.
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Use this existing live stream instead of creating one (needs seller/viewer tokens or --secret).
    #[arg(long, global = true)]
    pub stream: Option<String>,
    /// Seller token for --stream (publishes chat); minted from --secret otherwise.
    #[arg(long, global = true, hide_env_values = true)]
    pub seller_token: Option<String>,
    /// Viewer token shared by all viewers; otherwise one token per viewer is minted from --secret.
    #[arg(long, global = true, hide_env_values = true)]
    pub viewer_token: Option<String>,
    /// Lifetime of minted tokens.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "24h")]
    pub token_ttl: Duration,
    /// Print a machine-readable JSON report on stdout (the human summary goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Objectives, e.g. "p99<50ms,lost=0,errors<=5"; a breach exits with code 2.
    #[arg(long, global = true)]
    pub slo: Option<String>,
    /// Spread connections over 127.0.0.1..N source addresses (loopback targets only).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=254))]
    pub source_ips: u8,
    /// PID of the server, to sample its RSS and CPU from /proc.
    #[arg(long, global = true)]
    pub server_pid: Option<u32>,
    /// Connection attempts in flight at once while opening the initial connections.
    #[arg(long, global = true, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// Worker threads of the tool's runtime (default: one per core). On a machine shared with the
    /// engine, `--threads 1` keeps the tool off the engine's and the database's other core, as a
    /// client machine of its own would; it runs everything on one thread (tokio's current-thread
    /// scheduler).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Timeout of one connect (TCP + upgrade + welcome + join) or HTTP request.
    #[arg(long, global = true, value_parser = parse_duration, default_value = "10s")]
    pub connect_timeout: Duration,
    /// Never draw a progress bar.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// The scenarios.
#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// N connections hammer one HTTP endpoint for T seconds.
    Http(HttpArgs),
    /// C viewers join one stream; a seller publishes R chats/s; end-to-end latency and loss.
    Fanout(FanoutArgs),
    /// C viewers stay for a long time while a fraction churns and resumes; proves no loss.
    Soak(SoakArgs),
    /// C viewers drop at once and reconnect with jittered backoff and resume.
    Storm(StormArgs),
    /// N buyers rush one drop of M units at once over HTTP and WebSocket; checks no oversell.
    Drop(DropArgs),
}

/// Flags of `http`.
#[derive(Debug, Args, Clone)]
pub struct HttpArgs {
    /// Concurrent connections (one request in flight each).
    #[arg(short = 'c', long, default_value_t = 50)]
    pub connections: usize,
    /// How long to run.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// Path (may contain {tenant} and {stream}, which the tool creates).
    #[arg(long, default_value = "/health")]
    pub path: String,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// Request body (JSON); `@FILE` reads it from a file.
    #[arg(long)]
    pub body: Option<String>,
    /// Bearer token sent as Authorization.
    #[arg(long, hide_env_values = true)]
    pub bearer: Option<String>,
    /// Mint a bearer token for this role from --secret (operator, viewer, seller, admin...).
    #[arg(long)]
    pub role: Option<String>,
    /// Extra header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
}

/// Flags of `fanout`.
#[derive(Debug, Args, Clone)]
pub struct FanoutArgs {
    /// Viewers.
    #[arg(short = 'c', long, default_value_t = 100)]
    pub connections: usize,
    /// Chat messages per second published by the seller.
    #[arg(short = 'r', long, default_value_t = 10.0)]
    pub rate: f64,
    /// Chat text size in bytes (at most 500).
    #[arg(short = 's', long, default_value_t = 200)]
    pub size: usize,
    /// How long the seller publishes.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// How long to wait after publishing for the last deliveries.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain: Duration,
}

/// Flags of `soak`.
#[derive(Debug, Args, Clone)]
pub struct SoakArgs {
    /// Viewers.
    #[arg(short = 'c', long, default_value_t = 100)]
    pub connections: usize,
    /// How long to run (e.g. 30m, 0.5m, 10s).
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub duration: Duration,
    /// Chat messages per second published by the seller.
    #[arg(short = 'r', long, default_value_t = 5.0)]
    pub rate: f64,
    /// Chat text size in bytes (at most 500).
    #[arg(short = 's', long, default_value_t = 100)]
    pub size: usize,
    /// Fraction of viewers (0..=1) that keep disconnecting and resuming.
    #[arg(long, default_value_t = 0.1)]
    pub churn: f64,
    /// Mean time a churning viewer stays connected (uniform in 0..2x).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub churn_every: Duration,
    /// First reconnect backoff window (full jitter).
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    pub backoff_base: Duration,
    /// Largest reconnect backoff window.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub backoff_cap: Duration,
    /// Server sampling period (with --server-pid).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub sample_every: Duration,
    /// How long to wait at the end for every viewer to catch up.
    #[arg(long, value_parser = parse_duration, default_value = "15s")]
    pub drain: Duration,
}

/// Flags of `storm`.
#[derive(Debug, Args, Clone)]
pub struct StormArgs {
    /// Viewers.
    #[arg(short = 'c', long, default_value_t = 1000)]
    pub connections: usize,
    /// Minimum time the seller keeps publishing after the drop.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub duration: Duration,
    /// Chats per second published before, during and after the storm (0: none).
    #[arg(short = 'r', long, default_value_t = 5.0)]
    pub rate: f64,
    /// Chat text size in bytes (at most 500).
    #[arg(short = 's', long, default_value_t = 100)]
    pub size: usize,
    /// Each viewer waits a uniform random time in 0..JITTER before its first reconnect.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub jitter: Duration,
    /// First backoff window after a failed reconnect (full jitter).
    #[arg(long, value_parser = parse_duration, default_value = "100ms")]
    pub backoff_base: Duration,
    /// Largest reconnect backoff window.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub backoff_cap: Duration,
    /// Time between all viewers joined and the drop.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub settle: Duration,
    /// Give up waiting for everyone to come back after this long.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
    /// How long to wait at the end for every viewer to catch up.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub drain: Duration,
}

/// Flags of `drop`.
#[derive(Debug, Args, Clone)]
pub struct DropArgs {
    /// Buyers, each a distinct user (`buyer-<i>`, role viewer) with its own token.
    #[arg(long, default_value_t = 1000)]
    pub buyers: usize,
    /// Fraction of buyers (0..=1) that claim over the WebSocket; the others use HTTP.
    #[arg(long, default_value_t = 0.5)]
    pub ws_fraction: f64,
    /// Units of the drop the tool creates.
    #[arg(long, default_value_t = 100)]
    pub units: u64,
    /// Per-user limit of the drop the tool creates.
    #[arg(long, default_value_t = 1)]
    pub per_user_limit: u64,
    /// Units asked by each claim.
    #[arg(long, default_value_t = 1)]
    pub quantity: u64,
    /// Hold time of the drop the tool creates (engine default when absent).
    #[arg(long)]
    pub hold_seconds: Option<u64>,
    /// Rush this existing drop instead of creating one (needs --tenant with --secret, or
    /// --viewer-token).
    #[arg(long = "drop")]
    pub drop_id: Option<String>,
    /// Each buyer sends its claim twice at once with the same idempotency key.
    #[arg(long)]
    pub retry_same_key: bool,
    /// WebSocket buyers join the drop's live stream before the barrier, as the show's viewers
    /// do: they get its `inventory` and `sold_out` events during the rush, and each must end up
    /// with `sold_out` exactly once and the latest inventory.
    #[arg(long)]
    pub join: bool,
    /// Buyers (with a reservation first) whose `GET /v1/claims` is checked afterwards.
    #[arg(long, default_value_t = 50)]
    pub verify_sample: usize,
    /// Give up on claim answers this long after the barrier is released.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub timeout: Duration,
    /// Claims per second offered after the release, buyer after buyer (open loop); without it,
    /// every buyer claims at the same instant (a burst). Latency then shows the service time at
    /// that arrival rate rather than the wait behind the whole burst.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Write one CSV line per answer to this file (`sent_ms,latency_ms,answer`, sent counted from
    /// the release): shows where in the rush the slow answers were.
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = Cli::try_parse_from([
            "liveshop-load",
            "soak",
            "--duration",
            "10s",
            "--json",
            "--slo",
            "lost=0",
            "-c",
            "5",
        ])
        .unwrap();
        assert!(cli.common.json);
        let Scenario::Soak(args) = cli.scenario else {
            panic!("soak expected")
        };
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.connections, 5);
    }

    #[test]
    fn drop_defaults() {
        let cli = Cli::try_parse_from(["liveshop-load", "drop"]).unwrap();
        let Scenario::Drop(args) = cli.scenario else {
            panic!("drop expected")
        };
        assert_eq!(args.buyers, 1000);
        assert_eq!(args.units, 100);
        assert_eq!(args.per_user_limit, 1);
        assert_eq!(args.quantity, 1);
        assert!((args.ws_fraction - 0.5).abs() < 1e-9);
        assert!(!args.retry_same_key);
        assert_eq!(args.drop_id, None);
    }
}
