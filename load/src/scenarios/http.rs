//! `http`: N connections, one request in flight each, hammer one endpoint for T seconds;
//! reports requests/s, latency percentiles and errors by status.

use super::bar;
use crate::cli::{Common, HttpArgs};
use crate::client::Endpoint;
use crate::latency::{Batch, Recorder, round3};
use crate::report::Report;
use crate::setup::{self, Api};
use anyhow::{Context as _, anyhow};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Everything one worker needs.
struct Request {
    method: reqwest::Method,
    url: String,
    body: Option<String>,
    headers: HeaderMap,
}

/// Runs the scenario.
pub async fn run(common: &Common, args: &HttpArgs) -> anyhow::Result<Report> {
    let request = Arc::new(build_request(common, args).await?);
    let endpoint = Endpoint::new(&common.url, common.source_ips, common.connect_timeout)?;
    let recorder = Recorder::shared();
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + args.duration;
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.connections {
        let mut builder = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .timeout(common.connect_timeout)
            .tcp_nodelay(true);
        if let Some(ip) = endpoint.source(worker) {
            builder = builder.local_address(IpAddr::V4(ip));
        }
        let client = builder.build().context("building HTTP client")?;
        let request = request.clone();
        let recorder = recorder.clone();
        let done = done.clone();
        workers.spawn(async move {
            let mut batch = Batch::new(recorder, worker);
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            while Instant::now() < deadline {
                let mut builder = client
                    .request(request.method.clone(), &request.url)
                    .headers(request.headers.clone());
                if let Some(body) = &request.body {
                    builder = builder.body(body.clone());
                }
                let sent = Instant::now();
                let label = match builder.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16().to_string();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(e) if e.is_timeout() => "timeout".to_string(),
                    Err(e) if e.is_connect() => "connect".to_string(),
                    Err(_) => "transport".to_string(),
                };
                batch.push(sent.elapsed().as_micros() as u64);
                *statuses.entry(label).or_default() += 1;
                done.fetch_add(1, Relaxed);
            }
            statuses
        });
    }
    let progress = bar(common, "http", args.duration.as_secs().max(1));
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let elapsed = started.elapsed().as_secs_f64();
        progress.set(elapsed as u64);
        progress.message(format!("{:.0} req/s", done.load(Relaxed) as f64 / elapsed));
    }
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(joined) = workers.join_next().await {
        for (label, n) in joined.map_err(|e| anyhow!("worker failed: {e}"))? {
            *statuses.entry(label).or_default() += n;
        }
    }
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let total: u64 = statuses.values().sum();
    let errors: BTreeMap<String, u64> = statuses
        .iter()
        .filter(|(label, _)| !is_success(label))
        .map(|(label, n)| (label.clone(), *n))
        .collect();

    let mut report = Report::new("http", &common.url);
    report.config("connections", args.connections);
    report.config("duration_s", args.duration.as_secs_f64());
    report.config("method", request.method.as_str());
    report.config("path", request.url.trim_start_matches(&common.url));
    report.config("source_ips", endpoint.source_count());
    report.duration_s = round3(elapsed);
    report.latency_ms = recorder.summary();
    report.errors = errors.values().sum();
    report.stat("requests", total);
    report.stat("requests_per_s", round3(total as f64 / elapsed.max(1e-9)));
    report.stat("status_counts", &statuses);
    report.stat("errors_by_status", &errors);
    report.headline = vec![format!(
        "{} {} x{} connections: {} requests, {:.0} req/s, {} errors",
        request.method,
        request.url,
        args.connections,
        total,
        total as f64 / elapsed.max(1e-9),
        report.errors
    )];
    Ok(report)
}

fn is_success(label: &str) -> bool {
    label.starts_with('2') || label.starts_with('3')
}

/// Resolves path placeholders, the token and the body.
async fn build_request(common: &Common, args: &HttpArgs) -> anyhow::Result<Request> {
    let method = reqwest::Method::from_bytes(args.method.to_uppercase().as_bytes())
        .with_context(|| format!("invalid --method {:?}", args.method))?;
    let mut path = args.path.clone();
    let mut token = args.bearer.clone();
    let needs_stream = path.contains("{stream}");
    let needs_tenant = path.contains("{tenant}")
        || args
            .role
            .as_deref()
            .is_some_and(|r| r != "operator" && token.is_none());
    if needs_stream {
        let target = setup::prepare(common).await?;
        path = path.replace("{stream}", &target.stream);
        if let Some(t) = &target.tenant {
            path = path.replace("{tenant}", t);
        }
        if token.is_none() && args.role.as_deref() == Some("seller") {
            token = Some(target.seller_token.clone());
        }
        if let (None, Some(role), Some(tenant)) = (&token, &args.role, &target.tenant) {
            token = Some(mint(common, role, Some(tenant))?);
        }
    } else if needs_tenant {
        let api = Api::new(&common.url, common.connect_timeout)?;
        let tenant = setup::tenant(common, &api).await?;
        path = path.replace("{tenant}", &tenant);
        if let (None, Some(role)) = (&token, &args.role) {
            token = Some(mint(common, role, Some(&tenant))?);
        }
    }
    if token.is_none() && args.role.as_deref() == Some("operator") {
        token = Some(setup::operator_token(common)?);
    }
    let mut headers = HeaderMap::new();
    if let Some(token) = token {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).context("bad token")?,
        );
    }
    let body = match args.body.as_deref() {
        Some(file) if file.starts_with('@') => {
            Some(std::fs::read_to_string(&file[1..]).with_context(|| format!("reading {file}"))?)
        }
        other => other.map(str::to_string),
    };
    if body.is_some() {
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    for header in &args.headers {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| anyhow!("--header {header:?} must be Name: value"))?;
        headers.insert(
            HeaderName::from_bytes(name.trim().as_bytes()).context("bad header name")?,
            HeaderValue::from_str(value.trim()).context("bad header value")?,
        );
    }
    let path = if path.starts_with('/') {
        path
    } else {
        format!("/{path}")
    };
    Ok(Request {
        method,
        url: format!("{}{path}", common.url.trim_end_matches('/')),
        body,
        headers,
    })
}

fn mint(common: &Common, role: &str, tenant: Option<&str>) -> anyhow::Result<String> {
    setup::minter(common)
        .ok_or_else(|| anyhow!("--role needs --secret"))?
        .token(&format!("load-{role}"), role, tenant)
}
