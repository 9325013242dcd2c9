//! `drop`: N buyers rush one drop of M units at the same instant, a mix over HTTP
//! (`POST /v1/drops/{id}/claims`) and WebSocket (`claim` op), each with its own token and
//! idempotency key; then the drop's durable counts and the buyers' claim listings are checked
//! against every answer (contract 3.5: no oversell, no lost reservation). A broken invariant
//! exits with code 3.

use super::{bar, server_stats};
use crate::claims::{Answer, BuyerAnswers, DropCounts, Listing, Tally, Terms, Verdict};
use crate::cli::{Common, DropArgs};
use crate::client::{Conn, Endpoint, Frame, Incoming};
use crate::drop_events::{Final, Seen, Watched};
use crate::latency::{Recorder, round3};
use crate::report::Report;
use crate::setup::{self, Api};
use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use rand::Rng as _;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, oneshot, watch};

/// The drop under test and how to act in it.
struct DropTarget {
    id: String,
    tenant: Option<String>,
    stream: Option<String>,
    created: bool,
    /// Token used to read the drop's counts.
    reader: String,
    buyers: BuyerTokens,
}

enum BuyerTokens {
    Minted {
        minter: crate::auth::Minter,
        tenant: String,
    },
    Shared(String),
}

impl BuyerTokens {
    fn token(&self, i: usize) -> anyhow::Result<String> {
        match self {
            BuyerTokens::Minted { minter, tenant } => {
                minter.token(&format!("buyer-{i}"), "viewer", Some(tenant))
            }
            BuyerTokens::Shared(token) => Ok(token.clone()),
        }
    }
}

/// What one buyer task hands back once its claims are answered.
struct Outcome {
    buyer: usize,
    ws: bool,
    connect_error: Option<String>,
    answers: Vec<Answer>,
    last_answer: Option<Instant>,
}

/// Where buyers leave their outcomes. The coordinator is woken once, by the last one (or by its
/// progress tick), not once per buyer: a wake-up per answer crossed threads and cost a futex call
/// on both sides, CPU taken from the engine under test when both share a machine.
struct Outcomes {
    items: std::sync::Mutex<Vec<Outcome>>,
    expected: usize,
    all_in: tokio::sync::Notify,
}

impl Outcomes {
    fn new(expected: usize) -> Self {
        Self {
            items: std::sync::Mutex::new(Vec::with_capacity(expected)),
            expected,
            all_in: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Outcome>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, outcome: Outcome) {
        let mut items = self.lock();
        items.push(outcome);
        if items.len() == self.expected {
            self.all_in.notify_one();
        }
    }

    fn count(&self) -> usize {
        self.lock().len()
    }

    /// Waits until every buyer has reported or `deadline` passes, calling `tick` meanwhile.
    async fn wait(&self, deadline: tokio::time::Instant, mut tick: impl FnMut()) {
        let mut ticks = tokio::time::interval(Duration::from_millis(200));
        while self.count() < self.expected {
            tokio::select! {
                _ = self.all_in.notified() => {}
                _ = ticks.tick() => tick(),
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }

    fn take(&self) -> Vec<Outcome> {
        std::mem::take(&mut *self.lock())
    }
}

/// Shared by every buyer task.
struct Rush {
    endpoint: Arc<Endpoint>,
    /// One client for every HTTP buyer, with an idle connection per buyer after the warm-up.
    http: reqwest::Client,
    claim_url: String,
    health_url: String,
    drop: String,
    run_id: String,
    quantity: u64,
    sends: usize,
    timeout: Duration,
    connect_timeout: Duration,
    connects: Semaphore,
    ready: AtomicU64,
    answered: AtomicU64,
    latency: Arc<Recorder>,
    latency_http: Recorder,
    latency_ws: Recorder,
    /// Reservations wait for their commit; refusals do not: their latencies apart.
    latency_reserved: Recorder,
    latency_refused: Recorder,
    /// With `--trace`: every answer's send time, latency and label.
    trace: Option<std::sync::Mutex<Vec<Traced>>>,
    /// With `--rate`: time between two buyers' claims.
    pace: Option<Duration>,
    /// With `--join`: the live stream WebSocket buyers join before the barrier.
    join: Option<String>,
    /// With `--join`: the drop events each joined buyer received.
    seen: std::sync::Mutex<Vec<Seen>>,
}

impl Rush {
    /// Records one claim's send→answer time, overall, per transport and per kind of answer.
    fn record(&self, buyer: usize, ws: bool, answer: &Answer, sent: Instant, at: Instant) {
        let us = (at - sent).as_micros() as u64;
        if let Some(trace) = &self.trace {
            let line = Traced {
                sent,
                us,
                label: answer.label().to_owned(),
            };
            trace.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
        self.latency.record(buyer, us);
        let transport = if ws {
            &self.latency_ws
        } else {
            &self.latency_http
        };
        transport.record(buyer, us);
        match answer {
            Answer::Reserved { .. } => self.latency_reserved.record(buyer, us),
            Answer::Refused(_) => self.latency_refused.record(buyer, us),
            Answer::Failed(_) => {}
        }
        self.answered.fetch_add(1, Relaxed);
    }
}

/// Gives every buyer its turn, in buyer order: all at once in a burst, or one after the other
/// at the paced rate. One task and at most one timer a millisecond, instead of every buyer
/// waking at the release to set a timer of its own (10,000 wake-ups and timers in the first
/// millisecond of the rush, on the cores the engine needs).
async fn give_turns(turns: Vec<oneshot::Sender<()>>, pace: Option<Duration>) {
    let start = tokio::time::Instant::now();
    for (i, turn) in turns.into_iter().enumerate() {
        if let Some(pace) = pace {
            let at = start + pace.mul_f64(i as f64);
            if at > tokio::time::Instant::now() {
                tokio::time::sleep_until(at).await;
            }
        }
        let _ = turn.send(());
    }
}

/// CPU seconds this tool has used so far: the rush's share of a machine shared with the engine.
fn own_cpu_s() -> Option<f64> {
    crate::procstat::read(std::process::id()).map(|(_, cpu)| cpu)
}

/// One answer of `--trace`.
struct Traced {
    sent: Instant,
    us: u64,
    label: String,
}

/// Writes `--trace`: `sent_ms,latency_ms,answer` per answer, in send order.
fn write_trace(
    path: &std::path::Path,
    trace: &std::sync::Mutex<Vec<Traced>>,
    release: Instant,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut lines = std::mem::take(&mut *trace.lock().unwrap_or_else(|p| p.into_inner()));
    lines.sort_by_key(|t| t.sent);
    let file = std::fs::File::create(path)
        .with_context(|| format!("creating trace file {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    writeln!(out, "sent_ms,latency_ms,answer")?;
    for t in lines {
        let sent_ms = t.sent.saturating_duration_since(release).as_secs_f64() * 1e3;
        writeln!(out, "{sent_ms:.3},{:.3},{}", t.us as f64 / 1e3, t.label)?;
    }
    out.flush()?;
    Ok(())
}

/// Whether buyer `i` uses the WebSocket: spreads `fraction` evenly over the indices.
pub fn is_ws(i: usize, fraction: f64) -> bool {
    let f = fraction.clamp(0.0, 1.0);
    ((i + 1) as f64 * f).floor() > (i as f64 * f).floor()
}

/// Runs the scenario.
pub async fn run(common: &Common, args: &DropArgs) -> anyhow::Result<Report> {
    if args.buyers == 0 || args.quantity == 0 || args.units == 0 {
        bail!("--buyers, --units and --quantity must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.ws_fraction) {
        bail!("--ws-fraction must be within 0..=1");
    }
    let api = Api::new(&common.url, common.connect_timeout)?;
    let target = prepare(common, args, &api).await?;
    let join_stream = match (&target.stream, args.join) {
        (_, false) => None,
        (Some(stream), true) => Some(stream.clone()),
        (None, true) => bail!("--join with --drop needs --stream (the drop's live stream)"),
    };
    let (before, per_user_limit) = read_drop(&api, &target.id, &target.reader).await?;
    let tokens = (0..args.buyers)
        .map(|i| target.buyers.token(i))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let endpoint = Arc::new(Endpoint::new(
        &common.url,
        common.source_ips,
        common.connect_timeout,
    )?);
    let base = common.url.trim_end_matches('/');
    // HTTP buyers connect from the default source address: reqwest picks the source port at
    // `bind` when given a source address, which gets slow once earlier runs left tens of
    // thousands of connections in TIME_WAIT (see `port_at_connect` for the WebSocket side).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(300))
        .tcp_nodelay(true)
        .build()
        .context("building HTTP client")?;
    let rush = Arc::new(Rush {
        endpoint: endpoint.clone(),
        http,
        claim_url: format!("{base}/v1/drops/{}/claims", target.id),
        health_url: format!("{base}/health"),
        drop: target.id.clone(),
        run_id: format!("{:08x}", rand::rng().random::<u32>()),
        quantity: args.quantity,
        sends: if args.retry_same_key { 2 } else { 1 },
        timeout: args.timeout,
        connect_timeout: common.connect_timeout,
        connects: Semaphore::new(common.connect_concurrency.max(1)),
        ready: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        latency: Recorder::shared(),
        latency_http: Recorder::default(),
        latency_ws: Recorder::default(),
        latency_reserved: Recorder::default(),
        latency_refused: Recorder::default(),
        trace: args
            .trace
            .as_ref()
            .map(|_| std::sync::Mutex::new(Vec::new())),
        pace: args
            .rate
            .filter(|&r| r > 0)
            .map(|r| Duration::from_secs_f64(1.0 / r as f64)),
        join: join_stream,
        seen: std::sync::Mutex::new(Vec::new()),
    });
    let ws_buyers = (0..args.buyers)
        .filter(|&i| is_ws(i, args.ws_fraction))
        .count();

    // Phase 1: everybody connects (WebSocket: connect + welcome; HTTP: warm the pool).
    let mut turns = Vec::with_capacity(args.buyers);
    // Set once the rush is over: the drop's remaining units before and after it.
    let (finish_tx, finish_rx) = watch::channel(None::<Final>);
    let collected = Arc::new(Outcomes::new(args.buyers));
    let mut tasks = tokio::task::JoinSet::new();
    let connect_started = Instant::now();
    for (i, token) in tokens.into_iter().enumerate() {
        let rush = rush.clone();
        let (turn_tx, go) = oneshot::channel();
        turns.push(turn_tx);
        let finish = finish_rx.clone();
        let out = collected.clone();
        let ws = is_ws(i, args.ws_fraction);
        tasks.spawn(async move {
            let outcome = if ws {
                ws_buyer(&rush, i, &token, go, finish.clone(), &out).await
            } else {
                http_buyer(&rush, i, &token, go).await
            };
            if let Some(outcome) = outcome {
                out.push(outcome);
            }
        });
    }
    let progress = bar(common, "connect", args.buyers as u64);
    let waves = args.buyers.div_ceil(common.connect_concurrency.max(1)) as u32;
    let connect_limit = common.connect_timeout * waves.max(1) + Duration::from_secs(30);
    while rush.ready.load(Relaxed) < args.buyers as u64 {
        if connect_started.elapsed() > connect_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        progress.set(rush.ready.load(Relaxed));
    }
    progress.finish();
    let connect_s = connect_started.elapsed().as_secs_f64();

    // Phase 2: the barrier opens; every connected buyer claims at once.
    let sampler = common
        .server_pid
        .map(|pid| crate::procstat::Sampler::start(pid, Duration::from_millis(100)));
    let client_cpu_before = own_cpu_s();
    let release = Instant::now();
    let pacer = tokio::spawn(give_turns(turns, rush.pace));
    let progress = bar(common, "claims", (args.buyers * rush.sends) as u64);
    let deadline = tokio::time::Instant::now() + args.timeout + Duration::from_secs(5);
    collected
        .wait(deadline, || progress.set(rush.answered.load(Relaxed)))
        .await;
    let outcomes = collected.take();
    progress.finish();
    pacer.abort();
    if let (Some(path), Some(trace)) = (&args.trace, &rush.trace) {
        write_trace(path, trace, release)?;
    }
    let client_cpu_s = own_cpu_s()
        .zip(client_cpu_before)
        .map(|(end, start)| end - start);
    let series = match sampler {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    let (after, _) = read_drop(&api, &target.id, &target.reader).await?;
    let end = Final {
        before: before.remaining,
        remaining: after.remaining,
    };
    let _ = finish_tx.send(Some(end));
    // WebSocket buyers close their sockets now (joined ones once they have seen the drop's
    // final events); leftovers are cut after a grace period.
    let closing = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(Duration::from_secs(10) + SETTLE, closing)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    let seen = std::mem::take(&mut *rush.seen.lock().unwrap_or_else(|p| p.into_inner()));
    let watched = Watched::of(&seen, &end);

    // Phase 3: accounting against the drop's durable counts and the buyers' listings.
    let wall = outcomes
        .iter()
        .filter_map(|o| o.last_answer)
        .max()
        .map_or(0.0, |last| (last - release).as_secs_f64());
    let mut connect_errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered: Vec<BuyerAnswers> = Vec::with_capacity(outcomes.len());
    for o in &outcomes {
        if let Some(e) = &o.connect_error {
            *connect_errors.entry(e.clone()).or_default() += 1;
        } else {
            answered.push(BuyerAnswers {
                buyer: o.buyer,
                answers: o.answers.clone(),
            });
        }
    }
    let missing_buyers = args.buyers.saturating_sub(outcomes.len()) as u64;
    if missing_buyers > 0 {
        connect_errors.insert("no_outcome".into(), missing_buyers);
    }
    let connect_failed: u64 = connect_errors.values().sum();
    let tally = Tally::of(&answered);
    let listing = verify_listings(&api, &target, &answered, args.verify_sample).await;
    let terms = Terms {
        buyers: answered.len() as u64,
        quantity: args.quantity,
        per_user_limit,
    };
    let mut verdict = Verdict::judge(&tally, before, after, &listing, terms);
    verdict.checks.extend(watched.checks(&end));
    let ws_claimed = outcomes
        .iter()
        .filter(|o| o.ws && o.connect_error.is_none())
        .count();
    let per_s = tally.decisions as f64 / wall.max(1e-9);

    let mut report = Report::new("drop", &common.url);
    report.config("buyers", args.buyers);
    report.config("ws_buyers", ws_buyers);
    report.config("http_buyers", args.buyers - ws_buyers);
    report.config("units", before.quantity);
    report.config("per_user_limit", per_user_limit);
    report.config("quantity", args.quantity);
    report.config("retry_same_key", args.retry_same_key);
    report.config("rate", args.rate);
    report.config("source_ips", endpoint.source_count());
    report.config("drop", &target.id);
    report.config("stream", &target.stream);
    report.config("tenant", &target.tenant);
    report.config("created_drop", target.created);
    report.config("join", args.join);
    report.duration_s = round3(wall);
    report.latency_ms = rush.latency.summary();
    report.lost = verdict.lost;
    report.errors = tally.errors + connect_failed;
    report.stat("latency_http_ms", rush.latency_http.summary());
    report.stat("latency_ws_ms", rush.latency_ws.summary());
    report.stat("client_cpu_s", client_cpu_s.map(round3));
    report.stat("latency_reserved_ms", rush.latency_reserved.summary());
    report.stat("latency_refused_ms", rush.latency_refused.summary());
    report.stat("connected", answered.len());
    report.stat("connected_ws", ws_claimed);
    report.stat("connect_failed", connect_failed);
    report.stat("connect_errors", &connect_errors);
    report.stat("connect_s", round3(connect_s));
    report.stat("requests", tally.requests);
    report.stat("decisions", tally.decisions);
    report.stat("claims_per_s", round3(per_s));
    report.stat("reservations", tally.reservations);
    report.stat("reserved_units", tally.reserved_units);
    report.stat("sold_out", tally.sold_out);
    report.stat("replays", tally.replays);
    report.stat("answers_by_code", &tally.answers_by_code);
    report.stat("idempotency_mismatches", tally.idempotency_mismatches);
    report.stat("oversold", verdict.oversold);
    report.stat("unanswered_units", verdict.unanswered_units);
    report.stat("drop_before", before);
    report.stat("drop_after", after);
    report.stat("listing", &listing);
    if args.join {
        report.stat("watched", &watched);
    }
    report.stat("checks", &verdict.checks);
    report.violations = verdict.failures();
    report.stat("invariants_held", report.violations.is_empty());
    server_stats(&mut report, series, 0);
    let others: Vec<String> = tally
        .answers_by_code
        .iter()
        .filter(|(code, _)| !matches!(code.as_str(), "reserved" | "sold_out"))
        .map(|(code, n)| format!("{code} {n}"))
        .collect();
    report.headline = vec![
        format!(
            "{} buyers ({} WebSocket, {} HTTP), {} connected in {:.1}s; drop {} of {} units",
            args.buyers,
            ws_buyers,
            args.buyers - ws_buyers,
            answered.len(),
            connect_s,
            target.id,
            before.quantity
        ),
        format!(
            "reservations {} ({} units) | sold_out {} | other answers: {}",
            tally.reservations,
            tally.reserved_units,
            tally.sold_out,
            if others.is_empty() {
                "none".to_string()
            } else {
                others.join(", ")
            }
        ),
        format!(
            "{} decisions in {:.3}s = {:.0} claims/s",
            tally.decisions, wall, per_s
        ),
        format!(
            "drop after: reserved {} + sold {} of {} (remaining {}); oversold {}, lost {}, \
             listings checked {} buyers / {} claims, missing {}",
            after.reserved,
            after.sold,
            after.quantity,
            after.remaining,
            verdict.oversold,
            verdict.lost,
            listing.buyers_checked,
            listing.claims_checked,
            listing.missing
        ),
        format!(
            "checks: {}",
            verdict
                .checks
                .iter()
                .map(|c| format!(
                    "{} {}",
                    c.name,
                    match c.passed {
                        Some(true) => "ok",
                        Some(false) => "FAILED",
                        None => "n/a",
                    }
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ];
    Ok(report)
}

/// Creates tenant, seller, product, live stream and drop, or resolves `--drop`.
async fn prepare(common: &Common, args: &DropArgs, api: &Api) -> anyhow::Result<DropTarget> {
    let minter = setup::minter(common);
    if let Some(id) = &args.drop_id {
        let buyers = match (&common.viewer_token, minter, &common.tenant) {
            (Some(t), _, _) => BuyerTokens::Shared(t.clone()),
            (None, Some(minter), Some(tenant)) => BuyerTokens::Minted {
                minter,
                tenant: tenant.clone(),
            },
            _ => bail!("--drop needs --viewer-token (or --secret with --tenant)"),
        };
        let reader = match &common.seller_token {
            Some(t) => t.clone(),
            None => buyers.token(0)?,
        };
        return Ok(DropTarget {
            id: id.clone(),
            tenant: common.tenant.clone(),
            stream: common.stream.clone(),
            created: false,
            reader,
            buyers,
        });
    }
    let target = setup::prepare(common).await?;
    let tenant = target
        .tenant
        .clone()
        .ok_or_else(|| anyhow!("--stream needs --tenant to create a drop"))?;
    let product = api.create_product(&target.seller_token).await?;
    let mut body = json!({
        "product": product,
        "quantity": args.units,
        "per_user_limit": args.per_user_limit,
    });
    if let Some(hold) = args.hold_seconds {
        body["hold_seconds"] = hold.into();
    }
    let drop = api
        .create_drop(&target.seller_token, &target.stream, body)
        .await?;
    let buyers = match (&common.viewer_token, minter) {
        (Some(t), _) => BuyerTokens::Shared(t.clone()),
        (None, Some(minter)) => BuyerTokens::Minted {
            minter,
            tenant: tenant.clone(),
        },
        (None, None) => bail!("need --secret or --viewer-token"),
    };
    Ok(DropTarget {
        id: setup::id_of(&drop, "drop")?,
        tenant: Some(tenant),
        stream: Some(target.stream.clone()),
        created: true,
        reader: target.seller_token.clone(),
        buyers,
    })
}

/// `GET /v1/drops/{id}`: its counts and per-user limit.
async fn read_drop(api: &Api, id: &str, token: &str) -> anyhow::Result<(DropCounts, u64)> {
    let drop = api.get(&format!("/v1/drops/{id}"), token).await?;
    counts_of(&drop).with_context(|| format!("drop reply {drop}"))
}

/// Counts of a drop object.
pub fn counts_of(drop: &Value) -> anyhow::Result<(DropCounts, u64)> {
    let field = |name: &str| {
        drop.get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("no {name}"))
    };
    Ok((
        DropCounts {
            quantity: field("quantity")?,
            remaining: field("remaining")?,
            reserved: field("reserved")?,
            sold: field("sold")?,
        },
        field("per_user_limit").unwrap_or(1),
    ))
}

/// Reads the answer to one claim over HTTP.
async fn answer_of(response: Result<reqwest::Response, reqwest::Error>) -> Answer {
    let response = match response {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Answer::Failed("timeout".into()),
        Err(e) if e.is_connect() => return Answer::Failed("connect".into()),
        Err(_) => return Answer::Failed("transport".into()),
    };
    let status = response.status().as_u16();
    let body: Value = match response.bytes().await {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        Err(_) => return Answer::Failed("transport".into()),
    };
    classify_http(status, &body)
}

/// The answer an HTTP status and JSON body stand for.
pub fn classify_http(status: u16, body: &Value) -> Answer {
    match status {
        200 | 201 => match reservation(body) {
            Some((id, quantity)) => Answer::Reserved {
                id,
                quantity,
                replay: status == 200,
            },
            None => Answer::Failed(format!("http_{status}_bad_body")),
        },
        400..=499 => match body.pointer("/error/code").and_then(Value::as_str) {
            Some(code) => Answer::Refused(code.to_string()),
            None => Answer::Failed(format!("http_{status}")),
        },
        _ => Answer::Failed(format!("http_{status}")),
    }
}

/// The answer a WebSocket frame stands for (`None`: not an answer).
pub fn classify_frame(frame: &Frame) -> Option<Answer> {
    match frame.kind.as_str() {
        "ok" => Some(match frame.claim.as_deref().and_then(reservation) {
            Some((id, quantity)) => Answer::Reserved {
                id,
                quantity,
                replay: false,
            },
            None => Answer::Failed("ok_without_claim".into()),
        }),
        "error" => Some(Answer::Refused(
            frame.code.clone().unwrap_or_else(|| "error".into()),
        )),
        _ => None,
    }
}

/// Id and units of a claim object whose status is `reserved` (or `paid`).
fn reservation(claim: &Value) -> Option<(String, u64)> {
    let status = claim.get("status").and_then(Value::as_str)?;
    if status != "reserved" && status != "paid" {
        return None;
    }
    let id = match claim.get("id")? {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Some((id, claim.get("quantity").and_then(Value::as_u64)?))
}

/// An HTTP buyer: warms the shared pool (one request per claim it will send), waits for the
/// barrier, then posts its claim(s) at once.
async fn http_buyer(
    rush: &Rush,
    i: usize,
    token: &str,
    go: oneshot::Receiver<()>,
) -> Option<Outcome> {
    let client = &rush.http;
    let warm = futures_util::future::join_all((0..rush.sends).map(|_| async {
        let r = client
            .get(&rush.health_url)
            .timeout(rush.connect_timeout)
            .send()
            .await?;
        r.bytes().await
    }))
    .await;
    let connect_error = warm.into_iter().find_map(|r| {
        r.err().map(|e| {
            if e.is_timeout() {
                "http_warmup_timeout".to_string()
            } else {
                "http_warmup_connect".to_string()
            }
        })
    });
    rush.ready.fetch_add(1, Relaxed);
    if connect_error.is_some() {
        return Some(Outcome {
            buyer: i,
            ws: false,
            connect_error,
            answers: Vec::new(),
            last_answer: None,
        });
    }
    if go.await.is_err() {
        return None;
    }
    let key = format!("load-{}-{i}", rush.run_id);
    let body = json!({"quantity": rush.quantity, "idempotency_key": key}).to_string();
    let mut last = None;
    let answers = futures_util::future::join_all((0..rush.sends).map(|_| async {
        let sent = Instant::now();
        let response = client
            .post(&rush.claim_url)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .timeout(rush.timeout)
            .send()
            .await;
        let answer = answer_of(response).await;
        let at = Instant::now();
        rush.record(i, false, &answer, sent, at);
        (answer, at)
    }))
    .await
    .into_iter()
    .map(|(answer, at)| {
        last = last.max(Some(at));
        answer
    })
    .collect();
    Some(Outcome {
        buyer: i,
        ws: false,
        connect_error: None,
        answers,
        last_answer: last,
    })
}

/// How long a joined buyer waits, after the rush, for the drop events still owed to it.
const SETTLE: Duration = Duration::from_secs(3);

/// A WebSocket buyer: connects and reads the welcome (and with `--join` joins the stream),
/// waits for the barrier, sends its `claim` op(s) back to back, reads the answers, hands them
/// over and keeps the socket open until everybody is done; a joined buyer keeps reading until
/// it has seen the drop's final events.
async fn ws_buyer(
    rush: &Rush,
    i: usize,
    token: &str,
    go: oneshot::Receiver<()>,
    mut finish: watch::Receiver<Option<Final>>,
    out: &Outcomes,
) -> Option<Outcome> {
    let connected = {
        let _permit = rush.connects.acquire().await.ok()?;
        match &rush.join {
            Some(stream) => rush
                .endpoint
                .connect_and_join(token, i, stream, None)
                .await
                .map(|(conn, _joined)| conn),
            None => rush.endpoint.connect(token, i).await,
        }
    };
    rush.ready.fetch_add(1, Relaxed);
    let mut conn: Conn = match connected {
        Ok(conn) => conn,
        Err(e) => {
            return Some(Outcome {
                buyer: i,
                ws: true,
                connect_error: Some(format!("ws_{}", e.label())),
                answers: Vec::new(),
                last_answer: None,
            });
        }
    };
    // The frames are written before the turn comes, so the rush itself costs the tool only
    // the sends (CPU the engine under test does not lose when both share a machine).
    let key = format!("load-{}-{i}", rush.run_id);
    let ops: Vec<String> = (0..rush.sends)
        .map(|n| {
            json!({"op": "claim", "drop": rush.drop, "quantity": rush.quantity,
                   "key": key, "ref": format!("c{n}")})
            .to_string()
        })
        .collect();
    if go.await.is_err() {
        return None;
    }
    let sent = Instant::now();
    let mut answers: Vec<Option<Answer>> = vec![None; rush.sends];
    let mut last = None;
    let mut seen = Seen::default();
    if let Err(e) = conn.send_all(ops).await {
        let _ = e;
        answers
            .iter_mut()
            .for_each(|a| *a = Some(Answer::Failed("ws_send".into())));
    } else {
        let reading = async {
            while answers.iter().any(Option::is_none) {
                match conn.next().await {
                    Incoming::Frame(frame) => {
                        seen.observe(&frame, &rush.drop);
                        let slot = frame
                            .reference
                            .as_deref()
                            .and_then(|r| r.strip_prefix('c'))
                            .and_then(|n| n.parse::<usize>().ok())
                            .filter(|&n| n < answers.len());
                        if let (Some(n), Some(answer)) = (slot, classify_frame(&frame)) {
                            let at = Instant::now();
                            rush.record(i, true, &answer, sent, at);
                            last = Some(at);
                            answers[n] = Some(answer);
                        }
                    }
                    Incoming::Closed(code) => {
                        let label = format!("ws_closed_{}", code.unwrap_or(0));
                        for a in answers.iter_mut().filter(|a| a.is_none()) {
                            *a = Some(Answer::Failed(label.clone()));
                        }
                    }
                }
            }
        };
        if tokio::time::timeout(rush.timeout, reading).await.is_err() {
            for a in answers.iter_mut().filter(|a| a.is_none()) {
                *a = Some(Answer::Failed("timeout".into()));
            }
        }
    }
    out.push(Outcome {
        buyer: i,
        ws: true,
        connect_error: None,
        answers: answers.into_iter().flatten().collect(),
        last_answer: last,
    });
    let end = finish.wait_for(Option::is_some).await.ok().and_then(|e| *e);
    if let (Some(_), Some(end)) = (&rush.join, end) {
        let watching = async {
            while !seen.settled(&end) {
                match conn.next().await {
                    Incoming::Frame(frame) => seen.observe(&frame, &rush.drop),
                    Incoming::Closed(_) => break,
                }
            }
        };
        let _ = tokio::time::timeout(SETTLE, watching).await;
        rush.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(seen);
    }
    conn.close().await;
    None
}

/// `GET /v1/claims` as a sample of buyers (those answered `reserved` first, spread evenly):
/// every claim they were answered `reserved` for must be listed.
async fn verify_listings(
    api: &Api,
    target: &DropTarget,
    answered: &[BuyerAnswers],
    sample: usize,
) -> Listing {
    let reserved_ids = |b: &BuyerAnswers| -> HashSet<String> {
        b.answers
            .iter()
            .filter_map(|a| match a {
                Answer::Reserved { id, .. } => Some(id.clone()),
                _ => None,
            })
            .collect()
    };
    let (with, without): (Vec<&BuyerAnswers>, Vec<&BuyerAnswers>) =
        answered.iter().partition(|b| !reserved_ids(b).is_empty());
    let chosen: Vec<&BuyerAnswers> = spread(&with, sample)
        .into_iter()
        .chain(spread(&without, sample.saturating_sub(with.len())))
        .collect();
    let checks = futures_util::stream::iter(chosen.into_iter().map(|b| async move {
        let expected = reserved_ids(b);
        let listed = match target.buyers.token(b.buyer) {
            Ok(token) => api.get("/v1/claims", &token).await.ok(),
            Err(_) => None,
        };
        (expected, listed)
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let mut listing = Listing::default();
    for (expected, listed) in checks {
        let Some(listed) = listed else {
            listing.failed += 1;
            continue;
        };
        let ids: HashSet<String> = listed
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|c| match c.get("id") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            })
            .collect();
        listing.buyers_checked += 1;
        listing.claims_checked += expected.len() as u64;
        listing.missing += expected.iter().filter(|id| !ids.contains(*id)).count() as u64;
    }
    listing
}

/// Up to `n` items spread evenly over `items`.
fn spread<T: Copy>(items: &[T], n: usize) -> Vec<T> {
    if n == 0 || items.is_empty() {
        return Vec::new();
    }
    if items.len() <= n {
        return items.to_vec();
    }
    (0..n).map(|k| items[k * items.len() / n]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_fraction_spreads_evenly() {
        let count = |f: f64, n: usize| (0..n).filter(|&i| is_ws(i, f)).count();
        assert_eq!(count(0.5, 1000), 500);
        assert_eq!(count(0.0, 100), 0);
        assert_eq!(count(1.0, 100), 100);
        assert_eq!(count(0.25, 200), 50);
        // Alternating at one half, not one block then the other.
        assert!(!is_ws(0, 0.5) && is_ws(1, 0.5) && !is_ws(2, 0.5));
    }

    #[test]
    fn classifies_http_answers() {
        let claim = json!({"id": "c1", "drop": "d", "user": "u", "quantity": 1,
                           "status": "reserved", "expires_at": "x"});
        assert_eq!(
            classify_http(201, &claim),
            Answer::Reserved {
                id: "c1".into(),
                quantity: 1,
                replay: false
            }
        );
        assert!(matches!(
            classify_http(200, &claim),
            Answer::Reserved { replay: true, .. }
        ));
        let sold_out = json!({"error": {"code": "sold_out", "message": "no"}});
        assert_eq!(
            classify_http(409, &sold_out),
            Answer::Refused("sold_out".into())
        );
        assert_eq!(
            classify_http(500, &Value::Null),
            Answer::Failed("http_500".into())
        );
        assert_eq!(
            classify_http(429, &Value::Null),
            Answer::Failed("http_429".into())
        );
        assert_eq!(
            classify_http(201, &json!({"status": "expired"})),
            Answer::Failed("http_201_bad_body".into())
        );
    }

    #[test]
    fn classifies_ws_answers() {
        let ok = Frame::parse(
            r#"{"type":"ok","ref":"c0","claim":{"id":"c9","quantity":2,"status":"reserved"}}"#,
        );
        assert_eq!(
            classify_frame(&ok),
            Some(Answer::Reserved {
                id: "c9".into(),
                quantity: 2,
                replay: false
            })
        );
        let err = Frame::parse(r#"{"type":"error","ref":"c1","code":"sold_out","message":"x"}"#);
        assert_eq!(
            classify_frame(&err),
            Some(Answer::Refused("sold_out".into()))
        );
        assert_eq!(classify_frame(&Frame::parse(r#"{"type":"pong"}"#)), None);
    }

    #[test]
    fn reads_drop_counts() {
        let drop = json!({"id": "d", "quantity": 10, "remaining": 3, "reserved": 5,
                          "sold": 2, "per_user_limit": 2});
        let (counts, limit) = counts_of(&drop).unwrap();
        assert_eq!(counts.taken(), 7);
        assert_eq!(counts.remaining, 3);
        assert_eq!(limit, 2);
        assert!(counts_of(&json!({"quantity": 1})).is_err());
    }

    #[test]
    fn spreads_the_sample() {
        let items: Vec<usize> = (0..100).collect();
        assert_eq!(spread(&items, 4), vec![0, 25, 50, 75]);
        assert_eq!(spread(&items[..3], 10), vec![0, 1, 2]);
        assert!(spread(&items, 0).is_empty());
    }
}
