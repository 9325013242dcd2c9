//! Postgres outages, over real sockets: the engine (the `liveshop` binary) reaches its database
//! through a TCP proxy of the test's own ([`common::proxy`]), which the test cuts and heals while
//! viewers chat and buyers rush a drop. Each test runs twice: with the database refusing
//! connections (down) and with it blackholed (a partition: connections stay open, nothing
//! answers).
//!
//! What must hold while the database is away: live chat, fan-out and resume keep working; every
//! durable write (claim, stream end, pin, new drop, drop close, mute) is answered 503 `unavailable` within
//! [`ANSWER_BOUND`], never with an answer that is later lost; `/ready` says 503 naming `storage`;
//! chat sent meanwhile is stored once the database is back; everything recovers by itself. In a
//! rush: every reservation answered is stored, nothing is oversold, and every buyer retrying with
//! the same key gets an answer after the database is back.
//!
//! The outage lasts `LIVESHOP_OUTAGE_SECS` seconds (default [`DEFAULT_OUTAGE_SECS`]); docs/OPERATIONS.md
//! records a run with 30.

#[macro_use]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{Mode, Proxy};
use common::{EngineProcess, WsClient, client_of, operator, token};
use liveshop_engine::auth::Role;
use liveshop_engine::ids::{DropId, StreamId};
use liveshop_engine::records::{ClaimStatus, DropStatus};
use liveshop_engine::storage::{ChatStore, DropStore};
use liveshop_storage::SqlStore;
use liveshop_storage::testing::{TestDb, fresh_postgres};
use serde_json::{Value, json};

/// How long the database stays away unless `LIVESHOP_OUTAGE_SECS` says otherwise.
const DEFAULT_OUTAGE_SECS: u64 = 8;
/// The longest any request may wait for its answer while the database is away (the documented
/// bound is 5 s; the rest is slack for a busy test machine).
const ANSWER_BOUND: Duration = Duration::from_secs(7);
/// Once the engine knows the database is away, a durable write fails at once.
const FAST_ANSWER: Duration = Duration::from_secs(2);
/// How soon `/ready` must say 503 after the cut, and 200 after the heal.
const READY_BOUND: Duration = Duration::from_secs(6);
/// The longest a chat message may take from one viewer to the other during the outage.
const CHAT_BOUND: Duration = Duration::from_secs(3);

mod live_chat_through_an_outage {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_refusing() {
        super::live_chat_through_an_outage(super::Mode::Refused).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_blackholed() {
        super::live_chat_through_an_outage(super::Mode::Blackhole).await;
    }
}

mod a_rush_through_an_outage {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_refusing() {
        super::a_rush_through_an_outage(super::Mode::Refused).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn database_blackholed() {
        super::a_rush_through_an_outage(super::Mode::Blackhole).await;
    }
}

fn outage_length() -> Duration {
    let secs = std::env::var("LIVESHOP_OUTAGE_SECS")
        .ok()
        .map(|v| {
            v.parse::<u64>()
                .expect("LIVESHOP_OUTAGE_SECS is whole seconds")
        })
        .unwrap_or(DEFAULT_OUTAGE_SECS);
    Duration::from_secs(secs)
}

/// A Postgres database, a proxy in front of it and the engine behind the proxy.
struct Setup {
    // Dropped in this order: the engine first, the database last.
    engine: EngineProcess,
    proxy: Proxy,
    rest: Rest,
    db: TestDb,
}

impl Setup {
    async fn start() -> Self {
        let db = fresh_postgres().await;
        let proxy = Proxy::in_front_of(db.url()).await;
        let (engine, addr) = EngineProcess::start(&proxy.url_for(db.url()), &[]);
        Self {
            engine,
            proxy,
            rest: Rest::new(addr),
            db,
        }
    }

    /// A store on the real database, past the proxy: what is really stored.
    async fn truth(&self) -> SqlStore {
        SqlStore::connect(self.db.url())
            .await
            .expect("the test reaches the database directly")
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for line in self.engine.lines_so_far() {
                eprintln!("engine: {line}");
            }
        }
    }
}

/// A REST client of the engine; every answer within [`ANSWER_BOUND`] plus slack, or the test
/// fails (a hung request is a failure, not a wait).
#[derive(Clone)]
struct Rest {
    http: reqwest::Client,
    addr: SocketAddr,
}

/// An answer: its status, body and how long it took.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
    took: Duration,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// Asserts a 503 `unavailable`.
    fn assert_unavailable(&self, what: &str) {
        assert_eq!(
            (self.status, self.code()),
            (503, "unavailable"),
            "{what}: {self:?}"
        );
    }
}

impl Rest {
    fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            addr,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let started = Instant::now();
        let response = tokio::time::timeout(ANSWER_BOUND * 2, request.send())
            .await
            .expect("the engine answers instead of hanging")
            .expect("the request is answered");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            body,
            took: started.elapsed(),
        }
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        let url = format!("http://{}{path}", self.addr);
        self.send(self.http.post(url).bearer_auth(token).json(&body))
            .await
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.http.get(format!("http://{}{path}", self.addr));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn created(&self, path: &str, token: &str, body: Value) -> Value {
        let answer = self.post(path, token, body).await;
        assert_eq!(answer.status, 201, "{path}: {answer:?}");
        answer.body
    }

    /// Waits until `/ready` answers `status`; returns how long that took and the last body.
    async fn ready_becomes(&self, status: u16, within: Duration) -> (Duration, Value) {
        let started = Instant::now();
        loop {
            let answer = self.get("/ready", None).await;
            if answer.status == status {
                return (started.elapsed(), answer.body);
            }
            assert!(
                started.elapsed() < within,
                "/ready never answered {status} within {within:?}: {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A tenant with a live stream, two products and two open drops, made over REST.
struct Show {
    tenant: String,
    seller: String,
    stream: String,
    products: [String; 2],
    /// `quantity` units.
    drop: String,
    /// Another, of one unit.
    other_drop: String,
}

async fn show(rest: &Rest, slug: &str, quantity: i64) -> Show {
    let tenant = rest
        .created(
            "/v1/tenants",
            &operator(),
            json!({ "slug": slug, "name": "Outage" }),
        )
        .await["id"]
        .as_str()
        .expect("tenant id")
        .to_owned();
    let seller = token(Role::Seller, Some(&tenant), "seller-1");
    let mut products = Vec::new();
    for sku in ["SKU-1", "SKU-2"] {
        let body = json!({ "sku": sku, "title": sku, "price_cents": 1000, "currency": "EUR" });
        let product = rest.created("/v1/products", &seller, body).await;
        products.push(product["id"].as_str().expect("product id").to_owned());
    }
    let stream = rest
        .created("/v1/streams", &seller, json!({ "title": "Outage show" }))
        .await["id"]
        .as_str()
        .expect("stream id")
        .to_owned();
    let started = rest
        .post(&format!("/v1/streams/{stream}/start"), &seller, json!({}))
        .await;
    assert_eq!(started.status, 200, "{started:?}");
    let mut drops = Vec::new();
    for quantity in [quantity, 1] {
        let drop = rest
            .created(
                &format!("/v1/streams/{stream}/drops"),
                &seller,
                json!({ "product": products[0], "quantity": quantity }),
            )
            .await;
        drops.push(drop["id"].as_str().expect("drop id").to_owned());
    }
    let products = [products[0].clone(), products[1].clone()];
    Show {
        tenant,
        seller,
        stream,
        products,
        drop: drops[0].clone(),
        other_drop: drops[1].clone(),
    }
}

/// A viewer joined to the stream, checking that its ordered events come without a gap.
struct Viewer {
    ws: WsClient,
    token: String,
    stream: String,
    epoch: u64,
    seq: u64,
}

impl Viewer {
    async fn join(addr: SocketAddr, token: String, stream: &str) -> Self {
        let mut ws = client_of(addr, &token).await;
        let joined = ws.join(stream, None).await;
        Self {
            ws,
            token,
            stream: stream.to_owned(),
            epoch: joined["epoch"].as_u64().expect("epoch"),
            seq: joined["seq"].as_u64().expect("seq"),
        }
    }

    /// Sends a chat message and waits for its `ok`.
    async fn say(&mut self, text: &str) {
        let frame = json!({ "op": "chat", "stream": self.stream, "text": text, "ref": text });
        self.ws.send_json(&frame).await;
        let reply = self.reply(text).await;
        assert_eq!(reply["type"], "ok", "chat refused: {reply}");
    }

    /// Reads until the reply with `ref`; the events read meanwhile are checked.
    async fn reply(&mut self, r#ref: &str) -> Value {
        loop {
            let frame = self.ws.next_json().await;
            if frame["ref"] == r#ref {
                return frame;
            }
            self.ordered(&frame);
        }
    }

    /// Reads until the chat message `text` arrives; every ordered event must follow the last.
    async fn hears(&mut self, text: &str) {
        loop {
            let frame = self.ws.next_json().await;
            if self.ordered(&frame).iter().any(|t| t == text) {
                return;
            }
        }
    }

    /// Checks an ordered event's seq; returns the chat text it carries, if any.
    fn ordered(&mut self, frame: &Value) -> Option<String> {
        let seq = frame["seq"].as_u64()?;
        assert_eq!(seq, self.seq + 1, "a gap or repeat in seq: {frame}");
        self.seq = seq;
        (frame["kind"] == "chat").then(|| frame["data"]["text"].as_str().unwrap_or("").to_owned())
    }
}

/// Asserts that `from`'s message reaches `to` within [`CHAT_BOUND`]; returns how long it took.
async fn chat_crosses(from: &mut Viewer, to: &mut Viewer, text: &str) -> Duration {
    let started = Instant::now();
    from.say(text).await;
    to.hears(text).await;
    let took = started.elapsed();
    assert!(
        took < CHAT_BOUND,
        "chat took {took:?} from one viewer to another"
    );
    took
}

async fn live_chat_through_an_outage(mode: Mode) {
    let outage = outage_length();
    let setup = Setup::start().await;
    let rest = &setup.rest;
    let show = show(rest, "outage-chat", 10).await;
    let addr = rest.addr;
    let viewer = |sub: &str| token(Role::Viewer, Some(&show.tenant), sub);
    let mut a = Viewer::join(addr, viewer("viewer-a"), &show.stream).await;
    let mut b = Viewer::join(addr, viewer("viewer-b"), &show.stream).await;
    let mut sent = vec!["before the cut".to_owned()];
    chat_crosses(&mut a, &mut b, "before the cut").await;

    setup.proxy.cut(mode);
    let cut = Instant::now();

    // The first durable write after the cut meets a database the engine still thinks is there:
    // it waits, within the bound, and fails closed; chat crosses meanwhile.
    let pin = {
        let (rest, seller) = (rest.clone(), show.seller.clone());
        let path = format!("/v1/streams/{}/pin", show.stream);
        let body = json!({ "product": show.products[1] });
        tokio::spawn(async move { rest.post(&path, &seller, body).await })
    };
    let (ready_after, body) = rest.ready_becomes(503, READY_BOUND).await;
    assert_eq!(body["checks"]["storage"], "down", "{body}");
    let mut slowest_chat = Duration::ZERO;
    for i in 0..3 {
        let text = format!("during the cut {i}");
        let took = if i % 2 == 0 {
            chat_crosses(&mut a, &mut b, &text).await
        } else {
            chat_crosses(&mut b, &mut a, &text).await
        };
        slowest_chat = slowest_chat.max(took);
        sent.push(text);
    }
    let first = pin.await.expect("pin task");
    first.assert_unavailable("the first pin after the cut");
    assert!(
        first.took < ANSWER_BOUND,
        "the first write waited {:?}",
        first.took
    );

    eprintln!(
        "/ready said 503 {ready_after:?} after the cut; first pin answered in {:?}; slowest chat {:?}",
        first.took, slowest_chat
    );

    // Every durable write fails closed, and fast now that the engine knows.
    let buyer = viewer("buyer-1");
    let claim_body = json!({ "quantity": 1, "idempotency_key": "during" });
    let writes = [
        (
            format!("/v1/drops/{}/claims", show.drop),
            buyer.clone(),
            claim_body.clone(),
        ),
        (
            format!("/v1/streams/{}/end", show.stream),
            show.seller.clone(),
            json!({}),
        ),
        (
            format!("/v1/streams/{}/pin", show.stream),
            show.seller.clone(),
            json!({ "product": show.products[1] }),
        ),
        (
            format!("/v1/streams/{}/drops", show.stream),
            show.seller.clone(),
            json!({ "product": show.products[1], "quantity": 3 }),
        ),
        (
            format!("/v1/streams/{}/mutes", show.stream),
            show.seller.clone(),
            json!({ "user": "viewer-b", "duration_seconds": 60 }),
        ),
        (
            format!("/v1/drops/{}/close", show.other_drop),
            show.seller.clone(),
            json!({}),
        ),
    ];
    for (path, token, body) in &writes {
        let answer = rest.post(path, token, body.clone()).await;
        answer.assert_unavailable(path);
        assert!(answer.took < FAST_ANSWER, "{path} waited {:?}", answer.took);
    }
    // A claim over the WebSocket fails closed too.
    a.ws.send_json(
        &json!({ "op": "claim", "drop": show.drop, "quantity": 1, "key": "ws", "ref": "c1" }),
    )
    .await;
    let refused = a.reply("c1").await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("error"), Some("unavailable")),
        "{refused}"
    );

    // A viewer that drops off and comes back resumes with what it missed.
    let (epoch, since) = (b.epoch, b.seq);
    b.ws.close().await;
    let missed: Vec<String> = (0..3).map(|i| format!("missed by b {i}")).collect();
    for text in &missed {
        a.say(text).await;
        sent.push(text.clone());
    }
    let mut ws = client_of(addr, &b.token).await;
    let joined = ws.join(&show.stream, Some((epoch, since))).await;
    assert_eq!(joined["resumed"], true, "{joined}");
    let mut b = Viewer {
        ws,
        token: b.token.clone(),
        stream: show.stream.clone(),
        epoch,
        seq: since,
    };
    for text in &missed {
        b.hears(text).await;
    }
    chat_crosses(&mut b, &mut a, "b is back").await;
    sent.push("b is back".to_owned());

    // Chat keeps crossing for the rest of the outage.
    let mut i = 0;
    while cut.elapsed() < outage {
        let text = format!("still cut {i}");
        slowest_chat = slowest_chat.max(chat_crosses(&mut a, &mut b, &text).await);
        sent.push(text);
        i += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (_, body) = rest.ready_becomes(503, READY_BOUND).await;
    assert_eq!(
        body["checks"]["storage"], "down",
        "still not ready at the end: {body}"
    );
    let held = metric(rest, "liveshop_chat_backlog").await;
    assert!(
        held > 0.0,
        "the chat of the outage waits to be written: {held}"
    );

    setup.proxy.heal();
    let healed = Instant::now();
    let (took, body) = rest.ready_becomes(200, READY_BOUND).await;
    assert_eq!(body["checks"]["storage"], "ok", "{body}");
    eprintln!(
        "outage of {outage:?}: {} chat messages, slowest {slowest_chat:?}; /ready said 200 {took:?} after the heal",
        sent.len()
    );

    // Writes succeed again by themselves: the buyer's retry with the same key reserves.
    let path = format!("/v1/drops/{}/claims", show.drop);
    let claim = retry_until_answered(rest, &path, &buyer, claim_body).await;
    assert_eq!(claim.status, 201, "{claim:?}");
    assert!(
        healed.elapsed() < READY_BOUND,
        "writes recovered after {:?}",
        healed.elapsed()
    );
    let pinned = rest
        .post(
            &format!("/v1/streams/{}/pin", show.stream),
            &show.seller,
            json!({ "product": show.products[1] }),
        )
        .await;
    assert_eq!(pinned.status, 200, "{pinned:?}");
    // The close asked during the outage stopped the drop's sales at once; it is stored once the
    // database is back, with its reason, and asking again answers it.
    let close = format!("/v1/drops/{}/close", show.other_drop);
    let closed = retry_until_answered(rest, &close, &show.seller, json!({})).await;
    assert_eq!(closed.status, 200, "{closed:?}");
    let other = DropId::parse(&show.other_drop).expect("drop id");
    let truth = setup.truth().await;
    let stored = truth
        .drop_by_id(&other)
        .await
        .expect("drop read")
        .expect("drop");
    assert_eq!(
        (stored.status, stored.closed_reason.as_deref()),
        (DropStatus::Closed, Some("seller")),
        "{stored:?}"
    );
    chat_crosses(&mut a, &mut b, "after the heal").await;
    sent.push("after the heal".to_owned());

    // Every message sent during the outage is stored, and none was dropped.
    let stream = StreamId::parse(&show.stream).expect("stream id");
    let deadline = Instant::now() + READY_BOUND;
    loop {
        let stored: Vec<String> = truth
            .recent_chat(&stream, 500)
            .await
            .expect("chat is read")
            .into_iter()
            .map(|m| m.text.to_string())
            .collect();
        let missing: Vec<&String> = sent.iter().filter(|t| !stored.contains(t)).collect();
        if missing.is_empty() {
            assert_eq!(
                stored.len(),
                sent.len(),
                "each message stored once: {stored:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "chat never stored: {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(rest, "liveshop_chat_dropped_total").await, 0.0);
    let deadline = Instant::now() + READY_BOUND;
    while metric(rest, "liveshop_chat_backlog").await > 0.0 {
        assert!(Instant::now() < deadline, "the chat backlog never emptied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    truth.close().await;
    drop(setup);
}

/// The value of an unlabelled metric in `/metrics`.
async fn metric(rest: &Rest, name: &str) -> f64 {
    let answer = rest.get("/metrics", None).await;
    let text = answer.body.as_str().expect("metrics are text");
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
        .trim()
        .parse()
        .expect("a number")
}

/// Posts until the answer is not 503 (the database may take a moment to be found again).
async fn retry_until_answered(rest: &Rest, path: &str, token: &str, body: Value) -> Answer {
    let started = Instant::now();
    loop {
        let answer = rest.post(path, token, body.clone()).await;
        if answer.status != 503 {
            return answer;
        }
        assert!(
            started.elapsed() < READY_BOUND,
            "{path} still unavailable: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a buyer was finally told.
#[derive(Debug, Clone)]
enum Outcome {
    Reserved { claim: String },
    SoldOut,
}

/// One buyer's story: the final outcome, how many tries it took and the longest it waited for
/// an answer.
#[derive(Debug)]
struct Story {
    outcome: Outcome,
    attempts: usize,
    slowest: Duration,
}

async fn a_rush_through_an_outage(mode: Mode) {
    const UNITS: i64 = 60;
    const BUYERS: usize = 150;
    let outage = outage_length();
    let setup = Setup::start().await;
    let rest = &setup.rest;
    let show = show(rest, "outage-rush", UNITS).await;
    let addr = rest.addr;
    let path = Arc::new(format!("/v1/drops/{}/claims", show.drop));
    let tenant = show.tenant.clone();

    // Buyers arrive over the first second and through the outage; each retries with its key on
    // `unavailable` until it is answered. Every fifth buyer claims over the WebSocket.
    let spread = Duration::from_secs(1) + outage;
    let started = Instant::now();
    let buyers: Vec<_> = (0..BUYERS)
        .map(|i| {
            let (rest, path) = (rest.clone(), path.clone());
            let (token, drop) = (
                token(Role::Viewer, Some(&tenant), &format!("buyer-{i}")),
                show.drop.clone(),
            );
            let arrive = spread.mul_f64(i as f64 / BUYERS as f64);
            let give_up = spread + Duration::from_secs(20);
            tokio::spawn(async move {
                tokio::time::sleep(arrive).await;
                if i % 5 == 0 {
                    buy_over_ws(addr, &token, &drop, give_up).await
                } else {
                    buy_over_rest(&rest, &path, &token, give_up).await
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    setup.proxy.cut(mode);
    let cut = Instant::now();
    tokio::time::sleep(outage).await;
    setup.proxy.heal();
    eprintln!(
        "cut {:?} after the rush began, for {:?}",
        cut - started,
        cut.elapsed()
    );

    let mut stories = Vec::new();
    for buyer in buyers {
        stories.push(buyer.await.expect("buyer task"));
    }
    let answered: BTreeSet<String> = stories
        .iter()
        .filter_map(|s| match &s.outcome {
            Outcome::Reserved { claim } => Some(claim.clone()),
            Outcome::SoldOut => None,
        })
        .collect();
    let sold_out = stories
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::SoldOut))
        .count();
    let retried = stories.iter().filter(|s| s.attempts > 1).count();
    let slowest = stories.iter().map(|s| s.slowest).max().unwrap_or_default();
    eprintln!(
        "{} reserved, {sold_out} sold out, {retried} buyers retried, slowest answer {slowest:?}",
        answered.len()
    );
    assert!(retried > 0, "the outage met the rush");
    assert!(
        slowest < ANSWER_BOUND,
        "a claim waited {slowest:?} for its answer"
    );

    // What is stored, read past the proxy.
    let truth = setup.truth().await;
    let drop_id = DropId::parse(&show.drop).expect("drop id");
    let stored = truth
        .claims_of_drop(&drop_id)
        .await
        .expect("claims are read");
    let record = truth
        .drop_by_id(&drop_id)
        .await
        .expect("drop is read")
        .expect("drop exists");
    let live: BTreeMap<String, ClaimStatus> = stored
        .iter()
        .map(|c| (c.id.to_string(), c.status))
        .collect();
    for claim in &answered {
        assert_eq!(
            live.get(claim),
            Some(&ClaimStatus::Reserved),
            "answered reservation {claim} is stored"
        );
    }
    let stored_ids: BTreeSet<String> = live.keys().cloned().collect();
    assert_eq!(
        stored_ids, answered,
        "every stored claim was answered to its buyer"
    );
    assert!(
        record.reserved + record.sold <= record.quantity,
        "{record:?}"
    );
    assert_eq!(
        answered.len() as i64,
        UNITS,
        "every unit reserved once the database was back"
    );
    assert_eq!(record.reserved, UNITS, "{record:?}");
    assert_eq!(sold_out, BUYERS - UNITS as usize);
    truth.close().await;
    drop(setup);
}

/// Claims over REST with one key until answered (reserved or sold out); 503 means retry.
async fn buy_over_rest(rest: &Rest, path: &str, token: &str, give_up: Duration) -> Story {
    let body = json!({ "quantity": 1, "idempotency_key": "rush" });
    let started = Instant::now();
    let (mut attempts, mut slowest) = (0, Duration::ZERO);
    loop {
        attempts += 1;
        let answer = rest.post(path, token, body.clone()).await;
        slowest = slowest.max(answer.took);
        let outcome = match (answer.status, answer.code()) {
            (200 | 201, _) => {
                assert_eq!(answer.body["status"], "reserved", "{answer:?}");
                Some(Outcome::Reserved {
                    claim: answer.body["id"].as_str().expect("claim id").to_owned(),
                })
            }
            (409, "sold_out") => Some(Outcome::SoldOut),
            (503, "unavailable") => None,
            _ => panic!("unexpected answer to a claim: {answer:?}"),
        };
        if let Some(outcome) = outcome {
            return Story {
                outcome,
                attempts,
                slowest,
            };
        }
        assert!(started.elapsed() < give_up, "a buyer was never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Claims over the WebSocket with one key until answered; `unavailable` means retry.
async fn buy_over_ws(addr: SocketAddr, token: &str, drop: &str, give_up: Duration) -> Story {
    let mut ws = client_of(addr, token).await;
    let started = Instant::now();
    let (mut attempts, mut slowest) = (0, Duration::ZERO);
    loop {
        attempts += 1;
        let r#ref = format!("c{attempts}");
        let sent = Instant::now();
        ws.send_json(
            &json!({ "op": "claim", "drop": drop, "quantity": 1, "key": "rush", "ref": r#ref }),
        )
        .await;
        let reply = loop {
            let frame = ws.next_json().await;
            if frame["ref"] == r#ref.as_str() {
                break frame;
            }
        };
        slowest = slowest.max(sent.elapsed());
        let outcome = match (reply["type"].as_str(), reply["code"].as_str()) {
            (Some("ok"), _) => {
                assert_eq!(reply["claim"]["status"], "reserved", "{reply}");
                Some(Outcome::Reserved {
                    claim: reply["claim"]["id"].as_str().expect("claim id").to_owned(),
                })
            }
            (Some("error"), Some("sold_out")) => Some(Outcome::SoldOut),
            (Some("error"), Some("unavailable")) => None,
            _ => panic!("unexpected answer to a claim: {reply}"),
        };
        if let Some(outcome) = outcome {
            ws.close().await;
            return Story {
                outcome,
                attempts,
                slowest,
            };
        }
        assert!(started.elapsed() < give_up, "a buyer was never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
