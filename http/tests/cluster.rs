//! Cluster mode (contract section 6) with real processes: three `liveshop serve` nodes on one
//! fresh Postgres database and a `redis-server` of the test's own (so it can be stopped and
//! restarted), talked to over real HTTP and WebSocket. The lease is short (1 s) so that failover
//! happens within a test's patience; the contract's bound is `2 × LIVESHOP_OWNER_LEASE_MS`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{EngineProcess, WsClient, expect_error, expect_json, operator, token};
use liveshop_cluster::testing::RedisServer;
use liveshop_engine::auth::Role;
use liveshop_engine::storage::DropStore;
use liveshop_storage::Backend;
use liveshop_storage::testing::{TestDb, fresh};
use serde_json::{Value, json};

/// The owner lease the nodes of most of these tests run with.
const LEASE_MS: u64 = 1000;

/// Failover's bound (`2 × lease`) plus what a loaded 2-core machine adds (process scheduling,
/// the nodes' actor start-up from storage, the client's own reads).
const FAILOVER_PATIENCE: Duration = Duration::from_millis(2 * LEASE_MS + 6000);

/// One node of the test cluster.
struct Node {
    id: String,
    process: Option<EngineProcess>,
    addr: SocketAddr,
}

/// Three nodes, their database and their Redis.
struct Cluster {
    nodes: Vec<Node>,
    lease_ms: u64,
    http: reqwest::Client,
    redis: RedisServer,
    db: TestDb,
}

impl Cluster {
    async fn start(nodes: usize) -> Self {
        Self::start_with_lease(nodes, LEASE_MS).await
    }

    async fn start_with_lease(nodes: usize, lease_ms: u64) -> Self {
        let db = fresh(Backend::Postgres).await;
        let redis = RedisServer::start();
        let mut cluster = Self {
            nodes: Vec::new(),
            lease_ms,
            http: reqwest::Client::new(),
            redis,
            db,
        };
        for i in 0..nodes {
            let id = format!("node-{}", i + 1);
            let (process, addr) = cluster.spawn(&id);
            cluster.nodes.push(Node {
                id,
                process: Some(process),
                addr,
            });
        }
        cluster
    }

    fn spawn(&self, id: &str) -> (EngineProcess, SocketAddr) {
        let lease = self.lease_ms.to_string();
        let url = self.redis.url();
        EngineProcess::start(
            self.db.url(),
            &[
                ("REDIS_URL", Some(&url)),
                ("LIVESHOP_NODE_ID", Some(id)),
                ("LIVESHOP_OWNER_LEASE_MS", Some(&lease)),
                ("LIVESHOP_CHAT_BURST", Some("1000")),
                ("LIVESHOP_CHAT_PER_SEC", Some("1000")),
                ("LIVESHOP_UPGRADES_PER_IP_PER_SEC", Some("0")),
                ("LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP", Some("0")),
            ],
        )
    }

    fn url(&self, node: usize, path: &str) -> String {
        format!("http://{}{path}", self.nodes[node].addr)
    }

    async fn post(&self, node: usize, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(node, path))
            .bearer_auth(token)
            .json(&body)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("request")
    }

    async fn get(&self, node: usize, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(node, path))
            .bearer_auth(token)
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .expect("request")
    }

    async fn viewer(&self, node: usize, tenant: &str, user: &str) -> WsClient {
        common::client_of(
            self.nodes[node].addr,
            &token(Role::Viewer, Some(tenant), user),
        )
        .await
    }

    /// The node (index) that holds the stream's lease now, read from Redis.
    async fn owner_of(&self, stream: &str) -> Option<usize> {
        let client = redis::Client::open(self.redis.url()).ok()?;
        let mut conn = client.get_multiplexed_async_connection().await.ok()?;
        let owner: Option<String> = redis::cmd("GET")
            .arg(format!("liveshop:{{{stream}}}:lease"))
            .query_async(&mut conn)
            .await
            .ok()?;
        let owner = owner?;
        self.nodes.iter().position(|n| n.id == owner)
    }

    /// Waits until some node owns the stream; returns it.
    async fn wait_owner(&self, stream: &str, not: Option<usize>) -> usize {
        let deadline = Instant::now() + FAILOVER_PATIENCE;
        loop {
            if let Some(owner) = self.owner_of(stream).await
                && Some(owner) != not
            {
                return owner;
            }
            assert!(Instant::now() < deadline, "nobody took the stream over");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill(&mut self, node: usize) {
        if let Some(mut process) = self.nodes[node].process.take() {
            process.kill();
        }
    }
}

/// A tenant with a seller, a product and a live stream, made through node 0.
struct Show {
    tenant: String,
    seller: String,
    stream: String,
    product: String,
}

async fn show(cluster: &Cluster, slug: &str) -> Show {
    let tenant = cluster
        .post(
            0,
            "/v1/tenants",
            &operator(),
            json!({ "slug": slug, "name": "Cluster" }),
        )
        .await;
    let tenant = expect_json(tenant, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let seller = token(Role::Seller, Some(&tenant), "seller-1");
    let product = cluster
        .post(
            0,
            "/v1/products",
            &seller,
            json!({ "sku": "SKU-1", "title": "Sneaker", "price_cents": 9900, "currency": "EUR" }),
        )
        .await;
    let product = expect_json(product, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let stream = cluster
        .post(0, "/v1/streams", &seller, json!({ "title": "Everywhere" }))
        .await;
    let stream = expect_json(stream, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = cluster
        .post(
            0,
            &format!("/v1/streams/{stream}/start"),
            &seller,
            json!({}),
        )
        .await;
    expect_json(started, 200).await;
    Show {
        tenant,
        seller,
        stream,
        product,
    }
}

/// Sends a chat message and waits for its `ok`; returns its seq. Events that arrive meanwhile
/// are kept in `seen`.
async fn say(ws: &mut WsClient, stream: &str, text: &str, seen: &mut Vec<Value>) -> u64 {
    ws.send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": text }))
        .await;
    loop {
        let frame = ws.next_json().await;
        match frame["type"].as_str() {
            Some("ok") if frame["ref"] == text => {
                return frame["seq"].as_u64().unwrap_or_else(|| panic!("{frame}"));
            }
            Some("error") => panic!("chat {text:?} refused: {frame}"),
            _ => seen.push(frame),
        }
    }
}

/// Like [`say`], retrying (as a client does) while the answer is `unavailable`: the stream's
/// owner is changing.
async fn say_until_answered(ws: &mut WsClient, stream: &str, text: &str, seen: &mut Vec<Value>) {
    let deadline = Instant::now() + FAILOVER_PATIENCE;
    loop {
        ws.send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": text }))
            .await;
        loop {
            let frame = ws.next_json().await;
            match frame["type"].as_str() {
                Some("ok") if frame["ref"] == text => return,
                Some("error") if frame["code"] == "unavailable" => break,
                Some("error") => panic!("chat {text:?} refused: {frame}"),
                _ => seen.push(frame),
            }
        }
        assert!(Instant::now() < deadline, "chat {text:?} never accepted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads until a chat event with `text` arrived; returns every ordered event read, in order.
async fn until_chat(ws: &mut WsClient, text: &str, seen: &mut Vec<Value>) {
    if seen.iter().any(|f| f["data"]["text"] == text) {
        return;
    }
    loop {
        let frame = ws.next_json().await;
        let found = frame["data"]["text"] == text;
        seen.push(frame);
        if found {
            return;
        }
    }
}

/// `(seq, text)` of the chat events among `frames`.
fn chat_of(frames: &[Value]) -> Vec<(u64, String)> {
    frames
        .iter()
        .filter(|f| f["type"] == "event" && f["data"]["text"].is_string())
        .map(|f| {
            (
                f["seq"].as_u64().expect("chat is ordered"),
                f["data"]["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn viewers_on_every_node_see_the_same_gapless_seq_and_chat_from_any_node() {
    let cluster = Cluster::start(3).await;
    let show = show(&cluster, "everywhere").await;
    let mut viewers = Vec::new();
    let mut epochs = BTreeSet::new();
    let mut start = 0;
    for node in 0..3 {
        let mut ws = cluster
            .viewer(node, &show.tenant, &format!("viewer-{node}"))
            .await;
        let joined = ws.join(&show.stream, None).await;
        epochs.insert(joined["epoch"].as_u64().expect("epoch"));
        start = start.max(joined["seq"].as_u64().expect("seq"));
        viewers.push((ws, Vec::new()));
    }
    assert_eq!(epochs.len(), 1, "one epoch on every node: {epochs:?}");

    let mut answered = BTreeMap::new();
    for round in 0..4 {
        for (node, (ws, seen)) in viewers.iter_mut().enumerate() {
            let text = format!("round {round} from node {node}");
            let seq = say(ws, &show.stream, &text, seen).await;
            answered.insert(seq, text);
        }
    }
    let last = answered.values().last().unwrap().clone();
    let mut feeds = Vec::new();
    for (ws, seen) in &mut viewers {
        until_chat(ws, &last, seen).await;
        feeds.push(chat_of(seen));
    }
    let expected: Vec<(u64, String)> = answered.into_iter().collect();
    for (node, feed) in feeds.iter().enumerate() {
        let tail: Vec<_> = feed
            .iter()
            .filter(|(seq, _)| *seq > start)
            .cloned()
            .collect();
        assert_eq!(
            tail, expected,
            "node {node}'s viewer got every message once, in the answered order"
        );
        let seqs: Vec<u64> = tail.iter().map(|(s, _)| *s).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "gapless: {seqs:?}"
        );
    }
}

#[tokio::test]
async fn a_viewer_resumes_on_another_node_and_counts_are_summed_over_nodes() {
    let cluster = Cluster::start(3).await;
    let show = show(&cluster, "resume-elsewhere").await;
    let mut talker = cluster.viewer(0, &show.tenant, "talker").await;
    talker.join(&show.stream, None).await;
    let mut leaver = cluster.viewer(1, &show.tenant, "leaver").await;
    let joined = leaver.join(&show.stream, None).await;
    let epoch = joined["epoch"].as_u64().unwrap();
    let mut seen = Vec::new();
    let mut talked = Vec::new();
    let seq = say(&mut talker, &show.stream, "seen by both", &mut talked).await;
    until_chat(&mut leaver, "seen by both", &mut seen).await;
    leaver.close().await;

    for text in ["missed one", "missed two"] {
        say(&mut talker, &show.stream, text, &mut talked).await;
    }
    // Back on another node, resuming where it stopped.
    let mut back = cluster.viewer(2, &show.tenant, "leaver").await;
    let resumed = back.join(&show.stream, Some((epoch, seq))).await;
    assert_eq!(resumed["resumed"], true, "{resumed}");
    let mut replay = Vec::new();
    until_chat(&mut back, "missed two", &mut replay).await;
    let replayed: Vec<String> = chat_of(&replay).into_iter().map(|(_, t)| t).collect();
    assert_eq!(replayed, ["missed one", "missed two"]);

    // Two more viewers on node 1: four in all, on three nodes.
    let mut others = Vec::new();
    for user in ["extra-1", "extra-2"] {
        let mut ws = cluster.viewer(1, &show.tenant, user).await;
        ws.join(&show.stream, None).await;
        others.push(ws);
    }
    let reader = token(Role::Viewer, Some(&show.tenant), "reader");
    for node in 0..3 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stream = cluster
                .get(node, &format!("/v1/streams/{}", show.stream), &reader)
                .await;
            let stream = expect_json(stream, 200).await;
            if stream["viewers"] == 4 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never counted the 4 viewers of every node: {stream}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A claim sent until it gets an answer other than `unavailable` (the client's retry with the
/// same idempotency key), to node `first` and, when that node does not answer at all (it died or
/// is frozen), to the next one. Returns the status and body of that answer.
async fn claim_until_answered(
    http: reqwest::Client,
    addrs: Vec<SocketAddr>,
    first: usize,
    drop: String,
    buyer: String,
    key: String,
) -> (u16, Value) {
    let deadline = Instant::now() + FAILOVER_PATIENCE + Duration::from_secs(10);
    let mut node = first;
    loop {
        let response = http
            .post(format!("http://{}/v1/drops/{drop}/claims", addrs[node]))
            .bearer_auth(&buyer)
            .json(&json!({ "quantity": 1, "idempotency_key": key }))
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                if status != 503 {
                    return (status, body);
                }
            }
            Err(_) => node = (node + 1) % addrs.len(),
        }
        assert!(Instant::now() < deadline, "claim {key} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reservations answered (200 or 201) among `answers`, which must all be reservations or
/// `sold_out`.
fn reservations(answers: &[(u16, Value)]) -> Vec<&Value> {
    for (status, body) in answers {
        assert!(
            matches!(status, 200 | 201) || (*status == 409 && body["error"]["code"] == "sold_out"),
            "every claim is answered a reservation or sold_out: {status} {body}"
        );
    }
    answers
        .iter()
        .filter(|(status, _)| matches!(status, 200 | 201))
        .map(|(_, body)| body)
        .collect()
}

/// Checks in storage that `reserved` are exactly the drop's claims and its counts match.
async fn assert_stored_exactly(cluster: &Cluster, drop: &str, reserved: &[&Value], quantity: i64) {
    let store = liveshop_storage::SqlStore::connect(cluster.db.url())
        .await
        .expect("the test reads the database");
    let drop_id = liveshop_engine::DropId::from_trusted(drop);
    let stored = store.claims_of_drop(&drop_id).await.expect("claims");
    let stored_ids: BTreeSet<String> = stored.iter().map(|c| c.id.to_string()).collect();
    let answered_ids: BTreeSet<String> = reserved
        .iter()
        .map(|c| c["id"].as_str().expect("claim id").to_owned())
        .collect();
    assert_eq!(
        stored_ids, answered_ids,
        "every answered reservation is stored, and nothing else"
    );
    let record = store
        .drop_by_id(&drop_id)
        .await
        .expect("drop")
        .expect("stored");
    assert_eq!(
        (record.reserved + record.sold, record.remaining),
        (quantity, 0),
        "all units reserved, never more: {record:?}"
    );
}

fn buyers(show: &Show, count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            (
                token(Role::Viewer, Some(&show.tenant), &format!("buyer-{i}")),
                format!("key-{i}"),
            )
        })
        .collect()
}

async fn open_drop(cluster: &Cluster, show: &Show, quantity: i64) -> String {
    let drop = cluster
        .post(
            0,
            &format!("/v1/streams/{}/drops", show.stream),
            &show.seller,
            json!({ "product": show.product, "quantity": quantity, "per_user_limit": 1, "hold_seconds": 600 }),
        )
        .await;
    expect_json(drop, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn killing_the_owner_mid_rush_oversells_nothing_and_loses_no_answered_reservation() {
    let mut cluster = Cluster::start(3).await;
    let show = show(&cluster, "rush-failover").await;
    let drop = open_drop(&cluster, &show, 20).await;
    let owner = cluster.wait_owner(&show.stream, None).await;
    let survivors: Vec<usize> = (0..3).filter(|n| *n != owner).collect();
    // A viewer on each surviving node, to see events again after the failover.
    let mut watchers = Vec::new();
    for &node in &survivors {
        let mut ws = cluster
            .viewer(node, &show.tenant, &format!("watcher-{node}"))
            .await;
        ws.join(&show.stream, None).await;
        watchers.push((node, ws));
    }

    // 40 buyers for 20 units, on every node at once; the owner is killed once 5 are answered,
    // with the others in flight.
    let addrs: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.addr).collect();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let rush: Vec<_> = buyers(&show, 40)
        .into_iter()
        .enumerate()
        .map(|(i, (buyer, key))| {
            let (http, addrs, drop, answered) = (
                cluster.http.clone(),
                addrs.clone(),
                drop.clone(),
                answered.clone(),
            );
            tokio::spawn(async move {
                let answer = claim_until_answered(http, addrs, i % 3, drop, buyer, key).await;
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                answer
            })
        })
        .collect();
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(owner);
    let killed = Instant::now();
    let answered_before = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        answered_before < 40,
        "claims were in flight when the owner died"
    );
    let mut answers = Vec::new();
    for claim in rush {
        answers.push(claim.await.expect("claim task"));
    }
    let new_owner = cluster.wait_owner(&show.stream, Some(owner)).await;
    assert_ne!(new_owner, owner);
    let reserved = reservations(&answers);
    assert_eq!(reserved.len(), 20, "all 20 units, never more: {answers:?}");
    assert_stored_exactly(&cluster, &drop, &reserved, 20).await;

    // The killed node drops out of the node list once it stopped renewing for 2 × lease.
    let alive: Vec<&str> = survivors
        .iter()
        .map(|&n| cluster.nodes[n].id.as_str())
        .collect();
    loop {
        let view = cluster
            .get(survivors[0], "/v1/admin/cluster", &operator())
            .await;
        let view = expect_json(view, 200).await;
        let ids: Vec<&str> = view["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        if ids == alive {
            assert_eq!(view["self"], cluster.nodes[survivors[0]].id, "{view}");
            break;
        }
        assert!(
            killed.elapsed() < FAILOVER_PATIENCE,
            "the killed node is still listed {:?} after: {view}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Viewers on the surviving nodes kept their connection and get events again.
    let mut feeds: Vec<Vec<Value>> = vec![Vec::new(); watchers.len()];
    say_until_answered(
        &mut watchers[0].1,
        &show.stream,
        "after the failover",
        &mut feeds[0],
    )
    .await;
    for ((node, ws), feed) in watchers.iter_mut().zip(&mut feeds) {
        until_chat(ws, "after the failover", feed).await;
        assert!(
            killed.elapsed() < FAILOVER_PATIENCE,
            "node {node}'s viewer got events again only after {:?}",
            killed.elapsed()
        );
    }
}

/// Sends `signal` to a node's process.
fn signal(cluster: &Cluster, node: usize, signal: libc::c_int) {
    let pid = cluster.nodes[node].process.as_ref().expect("running").pid();
    // SAFETY: `kill` has no memory-safety preconditions; the pid is the test's own live child.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "signal {signal} is delivered");
}

#[tokio::test]
async fn an_owner_paused_past_its_lease_cannot_write_when_it_wakes_up() {
    let cluster = Cluster::start(3).await;
    let show = show(&cluster, "fenced").await;
    let drop = open_drop(&cluster, &show, 5).await;
    let owner = cluster.wait_owner(&show.stream, None).await;
    let survivors: Vec<usize> = (0..3).filter(|n| *n != owner).collect();
    // The owner's drop actor is running: it knows the drop has 5 units left.
    let warm = claim_until_answered(
        cluster.http.clone(),
        vec![cluster.nodes[owner].addr],
        0,
        drop.clone(),
        token(Role::Viewer, Some(&show.tenant), "early-bird"),
        "early".into(),
    )
    .await;
    assert_eq!(warm.0, 201, "{warm:?}");

    // Frozen (a GC pause, SIGSTOP, a stalled network), with claims sent to it queued in its
    // sockets: when it wakes up its drop actor still believes 4 units are left.
    signal(&cluster, owner, libc::SIGSTOP);
    let stale: Vec<_> = buyers(&show, 4)
        .into_iter()
        .map(|(buyer, key)| {
            let (http, addr, drop) = (
                cluster.http.clone(),
                cluster.nodes[owner].addr,
                drop.clone(),
            );
            tokio::spawn(async move {
                let response = http
                    .post(format!("http://{addr}/v1/drops/{drop}/claims"))
                    .bearer_auth(&buyer)
                    .json(&json!({ "quantity": 1, "idempotency_key": format!("stale-{key}") }))
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .expect("the frozen node answers once it wakes up");
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            })
        })
        .collect();
    // Another node takes the stream over and sells the 4 units left.
    let new_owner = cluster.wait_owner(&show.stream, Some(owner)).await;
    assert!(survivors.contains(&new_owner));
    let mut answers = vec![warm];
    for (i, (buyer, key)) in buyers(&show, 8).into_iter().enumerate().skip(4) {
        let node = survivors[i % 2];
        let addrs = vec![cluster.nodes[node].addr];
        answers.push(
            claim_until_answered(cluster.http.clone(), addrs, 0, drop.clone(), buyer, key).await,
        );
    }
    assert_eq!(reservations(&answers).len(), 5, "{answers:?}");

    // It wakes up: whatever it answers, nothing it decided on its stale state is stored.
    signal(&cluster, owner, libc::SIGCONT);
    for claim in stale {
        let (status, body) = claim.await.expect("stale claim task");
        // Refused by storage's fence ("could not be stored"), cut off as its actors stop, or,
        // once it knows, relayed to the new owner, which has none left.
        assert!(
            (status == 503 && body["error"]["code"] == "unavailable")
                || (status == 409 && body["error"]["code"] == "sold_out"),
            "a stale owner's answer: {status} {body}"
        );
        answers.push((status, body));
    }
    let reserved: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| matches!(status, 200 | 201))
        .map(|(_, body)| body)
        .collect();
    assert_stored_exactly(&cluster, &drop, &reserved, 5).await;
}

#[tokio::test]
async fn a_redis_outage_keeps_local_service_and_cross_node_delivery_comes_back_by_itself() {
    let mut cluster = Cluster::start(2).await;
    let show = show(&cluster, "redis-outage").await;
    let owner = cluster.wait_owner(&show.stream, None).await;
    let other = 1 - owner;
    let mut local = cluster.viewer(owner, &show.tenant, "local").await;
    local.join(&show.stream, None).await;
    let mut remote = cluster.viewer(other, &show.tenant, "remote").await;
    remote.join(&show.stream, None).await;
    let (mut local_seen, mut remote_seen) = (Vec::new(), Vec::new());
    say(&mut local, &show.stream, "before", &mut local_seen).await;
    until_chat(&mut remote, "before", &mut remote_seen).await;

    cluster.redis.stop();
    let stopped = Instant::now();
    // The owner keeps serving its own viewers.
    say(&mut local, &show.stream, "during", &mut local_seen).await;
    until_chat(&mut local, "during", &mut local_seen).await;
    // A request that must reach the other node's stream is refused, not lost.
    remote
        .send_json(&json!({ "op": "chat", "stream": show.stream, "text": "lost?", "ref": "r" }))
        .await;
    let refused = remote.expect_type("error").await;
    assert_eq!(refused["code"], "unavailable", "{refused}");
    // Readiness names Redis within 5 s.
    for node in 0..2 {
        loop {
            let ready = cluster.get(node, "/ready", "").await;
            let status = ready.status().as_u16();
            let body: Value = ready.json().await.unwrap();
            if status == 503 && body["checks"]["redis"] == "down" {
                break;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(6),
                "node {node} still ready 6 s into the outage: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    cluster.redis.restart();
    let back = Instant::now();
    // Cross-node delivery resumes by itself: a message from the other node reaches both.
    say_until_answered(&mut remote, &show.stream, "after", &mut remote_seen).await;
    until_chat(&mut remote, "after", &mut remote_seen).await;
    until_chat(&mut local, "after", &mut local_seen).await;
    assert!(
        back.elapsed() < Duration::from_secs(15),
        "delivery came back only after {:?}",
        back.elapsed()
    );
    // Redis came back empty, but the owner set its lease again (nobody had taken a fencing
    // token meanwhile): the stream did not move.
    assert_eq!(cluster.owner_of(&show.stream).await, Some(owner));
    // The other node's viewer missed "during": it got it replayed, or a fresh snapshot.
    let during = remote_seen
        .iter()
        .position(|f| f["data"]["text"] == "during");
    let snapshot = remote_seen.iter().position(|f| f["type"] == "joined");
    assert!(
        during.is_some() || snapshot.is_some(),
        "never a silent gap: {remote_seen:#?}"
    );
}

#[tokio::test]
async fn sigterm_hands_the_owners_streams_to_another_node_without_waiting_for_the_lease() {
    // A lease far longer than the handover may take: a node that waited for it to lapse would
    // fail the bound below.
    let mut cluster = Cluster::start_with_lease(2, 20_000).await;
    let show = show(&cluster, "handover").await;
    let owner = cluster.wait_owner(&show.stream, None).await;
    let other = 1 - owner;
    let mut watcher = cluster.viewer(other, &show.tenant, "watcher").await;
    let joined = watcher.join(&show.stream, None).await;
    let epoch = joined["epoch"].clone();
    let mut seen = Vec::new();
    let before = say(&mut watcher, &show.stream, "before the handover", &mut seen).await;
    until_chat(&mut watcher, "before the handover", &mut seen).await;

    let asked = Instant::now();
    cluster.nodes[owner]
        .process
        .as_ref()
        .expect("running")
        .terminate();
    let new_owner = cluster.wait_owner(&show.stream, Some(owner)).await;
    assert_eq!(new_owner, other);
    let taken_after = asked.elapsed();
    assert!(
        taken_after < Duration::from_secs(10),
        "the stream was taken over {taken_after:?} after SIGTERM"
    );
    let mut seen = Vec::new();
    let after = say(&mut watcher, &show.stream, "after the handover", &mut seen).await;
    until_chat(&mut watcher, "after the handover", &mut seen).await;
    // Handed over in order: the same epoch goes on, with the next seq, and the viewer on the
    // other node was never asked to join again.
    assert_eq!(after, before + 1, "{seen:#?}");
    assert!(
        seen.iter().all(|f| f["type"] != "joined"),
        "no fresh snapshot was needed: {seen:#?}"
    );
    let mut late = cluster.viewer(other, &show.tenant, "late").await;
    let joined_late = late.join(&show.stream, None).await;
    assert_eq!(joined_late["epoch"], epoch, "{joined_late}");
    assert_eq!(joined_late["seq"], after, "{joined_late}");
    let exited = cluster.nodes[owner]
        .process
        .as_mut()
        .expect("running")
        .wait_exit()
        .await;
    assert!(
        exited.success(),
        "the drained node exits cleanly: {exited:?}"
    );
    // Taken over at once, not after the 20 s lease lapsed.
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "handover took {:?}",
        asked.elapsed()
    );
    let cluster_view = expect_json(
        cluster.get(other, "/v1/admin/cluster", &operator()).await,
        200,
    )
    .await;
    assert_eq!(
        cluster_view["self"], cluster.nodes[other].id,
        "{cluster_view}"
    );
    let ids: Vec<&str> = cluster_view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [cluster.nodes[other].id.as_str()],
        "the drained node left the list"
    );
    let _ = &cluster.db;
}

#[tokio::test]
async fn moderation_from_any_node_reaches_every_node_and_a_ban_closes_the_user_everywhere() {
    let cluster = Cluster::start(3).await;
    let show = show(&cluster, "moderated").await;
    let owner = cluster.wait_owner(&show.stream, None).await;
    let (elsewhere, third) = ((owner + 1) % 3, (owner + 2) % 3);
    let moderator = token(Role::Moderator, Some(&show.tenant), "mod-1");

    // A viewer on each node; the troll's connections are on two nodes that do not own the stream.
    let mut watchers = Vec::new();
    for node in 0..3 {
        let mut ws = cluster
            .viewer(node, &show.tenant, &format!("watcher-{node}"))
            .await;
        ws.join(&show.stream, None).await;
        watchers.push(ws);
    }
    let mut troll = cluster.viewer(elsewhere, &show.tenant, "troll").await;
    troll.join(&show.stream, None).await;
    let mut troll_too = cluster.viewer(third, &show.tenant, "troll").await;
    say(&mut troll, &show.stream, "spam spam", &mut Vec::new()).await;
    let mut heard = Vec::new();
    for ws in &mut watchers {
        until_chat(ws, "spam spam", &mut heard).await;
    }
    let spam_id = heard
        .iter()
        .find(|f| f["data"]["text"] == "spam spam")
        .and_then(|f| f["data"]["id"].as_str())
        .expect("the chat event has an id")
        .to_owned();

    // Blocked words set through a node that does not own the stream are the owner's rules.
    let settings = cluster
        .http
        .patch(cluster.url(third, &format!("/v1/streams/{}/chat-settings", show.stream)))
        .bearer_auth(&moderator)
        .json(&json!({"blocked_words": ["spam"]}))
        .send()
        .await
        .expect("request");
    expect_json(settings, 200).await;
    troll
        .send_json(&json!({"op": "chat", "stream": show.stream, "text": "more SPAM", "ref": "b"}))
        .await;
    loop {
        let frame = troll.next_json().await;
        if frame["ref"] == "b" {
            assert_eq!(frame["code"], "blocked", "{frame}");
            break;
        }
    }

    // A delete through a third node reaches the viewers of every node.
    let deleted = cluster
        .http
        .delete(cluster.url(
            third,
            &format!("/v1/streams/{}/chat/{spam_id}", show.stream),
        ))
        .bearer_auth(&moderator)
        .send()
        .await
        .expect("request");
    assert_eq!(deleted.status(), 204);
    for ws in &mut watchers {
        loop {
            let frame = ws.next_json().await;
            if frame["kind"] == "chat_deleted" {
                assert_eq!(frame["data"]["id"], spam_id.as_str(), "{frame}");
                break;
            }
        }
    }

    // A ban made on the owner closes the troll's connections on the other two nodes at once,
    // and every node refuses the troll from then on.
    let ban = cluster
        .post(
            owner,
            &format!("/v1/tenants/{}/bans", show.tenant),
            &moderator,
            json!({"user": "troll", "reason": "spam"}),
        )
        .await;
    expect_json(ban, 201).await;
    assert_eq!(troll.expect_close_code().await, 1008);
    assert_eq!(troll_too.expect_close_code().await, 1008);
    let troll_token = token(Role::Viewer, Some(&show.tenant), "troll");
    for node in 0..3 {
        // The banning node knows at once; the others within one refresh of the ban list.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let answer = cluster.get(node, "/v1/streams", &troll_token).await;
            if answer.status() == 403 {
                expect_error(answer, 403, "banned").await;
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} still serves the banned user"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let log = cluster
        .get(
            elsewhere,
            &format!("/v1/streams/{}/moderation-log", show.stream),
            &moderator,
        )
        .await;
    let log = expect_json(log, 200).await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["ban", "delete_message", "chat_settings"], "{log}");
}
