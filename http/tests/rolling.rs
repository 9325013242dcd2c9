//! Rolling deploys with real `liveshop serve` processes: this build plays the old node, and a newer
//! release's migration is applied through the code a node runs at start
//! (`SqlStore::migrate_with_extra`): a column added to every table (one nullable, one `NOT NULL
//! DEFAULT`), a new table, and on Postgres an index built concurrently on a written table.
//! - On SQLite and Postgres, the old node starts on the migrated database, serves REST and the
//!   WebSocket (a stream, chat, a claim), and restarts on it with everything it wrote.
//! - On Postgres in cluster mode, the newer release migrates while an old node serves live chat
//!   and claims, none of which fails; a node started afterwards and the old node both serve, also
//!   across nodes, and the old node restarts.
//!
//! With an older build as the old node and the real newer binary migrating: scripts/rolling-deploy-drill.

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    Backend, EngineProcess, ProcessRest, WsClient, client_of, expect_json, operator, token,
};
use liveshop_cluster::testing::RedisServer;
use liveshop_engine::auth::Role;
use liveshop_storage::SqlStore;
use liveshop_storage::testing::fresh;
use serde_json::{Value, json};
use sqlx::migrate::{Migration, MigrationType};
use sqlx::{AnyConnection, AssertSqlSafe, Connection, SqlSafeStr};

/// The versions of the newer release's migrations: later than any this tree will have soon.
const FUTURE: i64 = 29_991_231_000_000;

both! {
    an_old_node_serves_and_restarts_on_a_database_a_newer_release_migrated,
}

/// A plain connection of the test's own.
async fn raw(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.expect("connect")
}

/// The tables of the schema, read from the database (so a table added later is covered too).
async fn tables(url: &str, backend: Backend) -> Vec<String> {
    let mut conn = raw(url).await;
    let sql = match backend {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT table_name::TEXT FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             AND table_name <> '_sqlx_migrations' ORDER BY table_name"
        }
    };
    let tables: Vec<String> = sqlx::query_scalar(sql)
        .fetch_all(&mut conn)
        .await
        .expect("tables");
    assert!(tables.len() >= 10, "the schema's tables: {tables:?}");
    tables
}

/// A newer release's migrations: expand-only, and one existing table per migration, as the
/// policy demands (two tables locked in one transaction can deadlock with live traffic).
fn newer_release(backend: Backend, tables: &[String]) -> Vec<Migration> {
    let mut migrations: Vec<Migration> = tables
        .iter()
        .zip(FUTURE..)
        .map(|(table, version)| {
            let sql = format!(
                "ALTER TABLE {table} ADD COLUMN future_note TEXT;\n\
                 ALTER TABLE {table} ADD COLUMN future_flag BIGINT NOT NULL DEFAULT 7;\n"
            );
            Migration::new(
                version,
                format!("future_columns_{table}").into(),
                MigrationType::Simple,
                AssertSqlSafe(sql).into_sql_str(),
                false,
            )
        })
        .collect();
    let next = FUTURE + tables.len() as i64;
    migrations.push(Migration::new(
        next,
        "future_things".into(),
        MigrationType::Simple,
        AssertSqlSafe(
            "CREATE TABLE future_things (id TEXT NOT NULL PRIMARY KEY, note TEXT);\n".to_owned(),
        )
        .into_sql_str(),
        false,
    ));
    if backend == Backend::Postgres {
        migrations.push(Migration::new(
            next + 1,
            "future_chat_index".into(),
            MigrationType::Simple,
            "CREATE INDEX CONCURRENTLY future_chat_user_name ON chat_messages (user_name)"
                .into_sql_str(),
            true,
        ));
    }
    migrations
}

/// Applies the newer release's migrations the way its node would at start; returns when it began
/// and ended.
async fn migrate_as_newer_release(url: &str, backend: Backend) -> (Instant, Instant) {
    let tables = tables(url, backend).await;
    let store = SqlStore::connect(url).await.expect("connect");
    let started = Instant::now();
    store
        .migrate_with_extra(newer_release(backend, &tables))
        .await
        .unwrap_or_else(|e| panic!("the newer release migrates: {e:?}"));
    let ended = Instant::now();
    store.close().await;
    (started, ended)
}

/// The old node's log says which newer migrations the database has.
fn assert_logged_newer(node: &mut EngineProcess) {
    let lines = node.lines_so_far();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("newer than this binary") && l.contains(&FUTURE.to_string())),
        "the newer versions are logged: {lines:#?}"
    );
}

/// Claims one unit of `drop` as `buyer` with the idempotency key `key`; expects `reserved`.
async fn claim(rest: &ProcessRest, drop: &str, buyer: &str, key: &str) -> Value {
    let body = json!({ "quantity": 1, "idempotency_key": key });
    let claim = expect_json(
        rest.post(&format!("/v1/drops/{drop}/claims"), buyer, body)
            .await,
        201,
    )
    .await;
    assert_eq!(claim["status"], "reserved", "{claim}");
    claim
}

/// A tenant with a live stream and an open drop, made over REST.
struct Show {
    tenant: String,
    stream: String,
    drop: String,
}

impl Show {
    fn viewer(&self, user: &str) -> String {
        token(Role::Viewer, Some(&self.tenant), user)
    }
}

async fn show(rest: &ProcessRest, slug: &str) -> Show {
    let body = json!({ "slug": slug, "name": "Rolling" });
    let tenant = expect_json(rest.post("/v1/tenants", &operator(), body).await, 201).await;
    let tenant = tenant["id"].as_str().expect("tenant id").to_owned();
    let seller = token(Role::Seller, Some(&tenant), "seller-1");
    let body =
        json!({ "sku": "SKU-1", "title": "Sneaker", "price_cents": 9900, "currency": "EUR" });
    let product = expect_json(rest.post("/v1/products", &seller, body).await, 201).await;
    let body = json!({ "title": "Rolling show" });
    let stream = expect_json(rest.post("/v1/streams", &seller, body).await, 201).await;
    let stream = stream["id"].as_str().expect("stream id").to_owned();
    let path = format!("/v1/streams/{stream}/start");
    expect_json(rest.post(&path, &seller, json!({})).await, 200).await;
    let body = json!({ "product": product["id"], "quantity": 1000, "per_user_limit": 1, "hold_seconds": 600 });
    let path = format!("/v1/streams/{stream}/drops");
    let drop = expect_json(rest.post(&path, &seller, body).await, 201).await;
    Show {
        tenant,
        stream,
        drop: drop["id"].as_str().expect("drop id").to_owned(),
    }
}

/// Sends a chat message and waits for its `ok` and its event; panics on an error.
async fn say(ws: &mut WsClient, stream: &str, text: &str) {
    ws.send_json(&json!({ "op": "chat", "stream": stream, "text": text, "ref": text }))
        .await;
    let (mut ok, mut event) = (false, false);
    while !(ok && event) {
        let frame = ws.next_json().await;
        match frame["type"].as_str() {
            Some("ok") if frame["ref"] == text => ok = true,
            Some("event") if frame["data"]["text"] == text => {
                event = true;
            }
            Some("error") => panic!("chat {text:?} refused: {frame}"),
            _ => {}
        }
    }
}

/// Reads until the chat event with `text` arrives.
async fn until_chat(ws: &mut WsClient, text: &str) {
    loop {
        let frame = ws.next_json().await;
        if frame["type"] == "event" && frame["data"]["text"] == text {
            return;
        }
    }
}

/// The texts of the chat in a `joined` snapshot.
fn snapshot_chat(joined: &Value) -> Vec<String> {
    joined["snapshot"]["chat"]
        .as_array()
        .unwrap_or_else(|| panic!("a snapshot with chat: {joined}"))
        .iter()
        .filter_map(|e| e["text"].as_str().map(str::to_owned))
        .collect()
}

async fn an_old_node_serves_and_restarts_on_a_database_a_newer_release_migrated(backend: Backend) {
    let db = fresh(backend).await;
    let store = SqlStore::connect(db.url()).await.expect("connect");
    store.migrate().await.expect("this release's schema");
    store.close().await;
    migrate_as_newer_release(db.url(), backend).await;

    let (mut old, addr) = EngineProcess::start(db.url(), &[]);
    assert_logged_newer(&mut old);
    let rest = ProcessRest::new(addr);
    let show = show(&rest, "rolling-old").await;
    let mut viewer = client_of(addr, &show.viewer("viewer-1")).await;
    viewer.join(&show.stream, None).await;
    say(&mut viewer, &show.stream, "hello from the old node").await;
    let first = claim(&rest, &show.drop, &show.viewer("buyer-1"), "k1").await;
    viewer.close().await;

    // Restarted on the same database (a crash, a scale-out, a rollback), it still starts, and what
    // it wrote came back.
    old.terminate();
    assert!(old.wait_exit().await.success(), "the old node drains");
    let (mut old, addr) = EngineProcess::start(db.url(), &[]);
    assert_logged_newer(&mut old);
    let rest = ProcessRest::new(addr);
    let mut viewer = client_of(addr, &show.viewer("viewer-2")).await;
    let joined = viewer.join(&show.stream, None).await;
    assert!(
        snapshot_chat(&joined).contains(&"hello from the old node".to_owned()),
        "{joined}"
    );
    say(&mut viewer, &show.stream, "hello again").await;
    let claims = rest.get_json("/v1/claims", &show.viewer("buyer-1")).await;
    assert!(
        claims
            .to_string()
            .contains(first["id"].as_str().expect("id")),
        "the claim came back: {claims}"
    );
    claim(&rest, &show.drop, &show.viewer("buyer-2"), "k2").await;

    // The rows the old node wrote took the newer release's defaults.
    let mut conn = raw(db.url()).await;
    for table in ["chat_messages", "claims", "streams"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE future_flag = 7");
        let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .expect("count");
        assert!(count > 0, "{table} rows written by the old node");
    }
    viewer.close().await;
}

/// One node of the cluster test: `liveshop serve` with Redis, on the shared database.
fn cluster_node(db_url: &str, redis: &RedisServer, id: &str) -> (EngineProcess, SocketAddr) {
    let redis_url = redis.url();
    EngineProcess::start(
        db_url,
        &[
            ("REDIS_URL", Some(&redis_url)),
            ("LIVESHOP_NODE_ID", Some(id)),
            ("LIVESHOP_OWNER_LEASE_MS", Some("1000")),
            ("LIVESHOP_CHAT_BURST", Some("1000")),
            ("LIVESHOP_CHAT_PER_SEC", Some("1000")),
            ("LIVESHOP_UPGRADES_PER_IP_PER_SEC", Some("0")),
            ("LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP", Some("0")),
        ],
    )
}

/// What the traffic on the old node saw while the newer release migrated.
struct Traffic {
    /// When each round (a chat answered and seen, then a claim answered) ended.
    rounds: Vec<Instant>,
    slowest: Duration,
}

/// Chat and claims on `addr` until `stop`, each answered before the next is sent; panics on any
/// refusal or error.
async fn traffic(addr: SocketAddr, show: Arc<Show>, stop: Arc<AtomicBool>) -> Traffic {
    let rest = ProcessRest::new(addr);
    let mut ws = client_of(addr, &show.viewer("chatter")).await;
    ws.join(&show.stream, None).await;
    let mut seen = Traffic {
        rounds: Vec::new(),
        slowest: Duration::ZERO,
    };
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let round = seen.rounds.len();
        say(
            &mut ws,
            &show.stream,
            &format!("during the migration {round}"),
        )
        .await;
        let buyer = show.viewer(&format!("rush-{round}"));
        claim(&rest, &show.drop, &buyer, "k").await;
        seen.rounds.push(Instant::now());
        seen.slowest = seen.slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ws.close().await;
    seen
}

#[tokio::test]
async fn a_newer_release_migrates_while_an_old_node_serves_and_both_serve_after() {
    let db = fresh(Backend::Postgres).await;
    let redis = RedisServer::start();
    let (mut old, old_addr) = cluster_node(db.url(), &redis, "old-1");
    let rest_old = ProcessRest::new(old_addr);
    let show = Arc::new(show(&rest_old, "rolling-cluster").await);

    // A chat history large enough that building an index on it takes a while.
    let mut conn = raw(db.url()).await;
    sqlx::query(
        "INSERT INTO chat_messages (id, stream_id, tenant_id, user_id, user_name, text, at) \
         SELECT 'seed-' || g, $1, $2, 'user-' || g, 'name ' || (g % 5000), 'earlier chat', 0 \
         FROM generate_series(1, 300000) AS g",
    )
    .bind(&show.stream)
    .bind(&show.tenant)
    .execute(&mut conn)
    .await
    .expect("seed chat");
    conn.close().await.expect("close");

    // Live traffic on the old node while the newer release migrates.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(traffic(old_addr, show.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (began, ended) = migrate_as_newer_release(db.url(), Backend::Postgres).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = tokio::time::timeout(Duration::from_secs(60), traffic)
        .await
        .expect("the traffic ends")
        .expect("no chat or claim failed during the migration");
    let during = seen
        .rounds
        .iter()
        .filter(|at| **at > began && **at < ended)
        .count();
    eprintln!(
        "the newer release migrated in {:?}; the old node answered {} rounds of chat and claim, \
         {during} of them during the migration, the slowest in {:?}",
        ended - began,
        seen.rounds.len(),
        seen.slowest
    );
    assert!(
        during >= 1,
        "the old node answered while the newer release migrated ({:?})",
        ended - began
    );
    assert!(
        seen.slowest < Duration::from_secs(5),
        "no answer waited on the migration: slowest round {:?}",
        seen.slowest
    );

    // A node of the newer schema's database joins, and both serve, also across nodes.
    let (mut new, new_addr) = cluster_node(db.url(), &redis, "new-1");
    assert_logged_newer(&mut new);
    let rest_new = ProcessRest::new(new_addr);
    let mut on_old = client_of(old_addr, &show.viewer("viewer-old")).await;
    on_old.join(&show.stream, None).await;
    let mut on_new = client_of(new_addr, &show.viewer("viewer-new")).await;
    on_new.join(&show.stream, None).await;
    say(&mut on_new, &show.stream, "from the new node").await;
    until_chat(&mut on_old, "from the new node").await;
    say(&mut on_old, &show.stream, "from the old node").await;
    until_chat(&mut on_new, "from the old node").await;
    claim(&rest_new, &show.drop, &show.viewer("after-new"), "k").await;
    claim(&rest_old, &show.drop, &show.viewer("after-old"), "k").await;
    on_old.close().await;

    // The old node restarts on the migrated database (a crash, or a rollback) and serves.
    old.terminate();
    assert!(old.wait_exit().await.success(), "the old node drains");
    let (mut old, old_addr) = cluster_node(db.url(), &redis, "old-1");
    assert_logged_newer(&mut old);
    let rest_old = ProcessRest::new(old_addr);
    let mut on_old = client_of(old_addr, &show.viewer("viewer-old-2")).await;
    on_old.join(&show.stream, None).await;
    say(&mut on_new, &show.stream, "after the restart").await;
    until_chat(&mut on_old, "after the restart").await;
    claim(&rest_old, &show.drop, &show.viewer("after-restart"), "k").await;
    on_new.close().await;
    on_old.close().await;
    drop(new);
}
