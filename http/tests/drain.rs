//! Graceful drain of the real `liveshop` binary: SIGTERM closes every WebSocket with 1012
//! (reconnect and resume) and the process exits with status 0.

#[macro_use]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Backend, SECRET, Shop, WsClient, expect_json, operator, token};
use liveshop_engine::auth::Role;
use liveshop_storage::testing::fresh;
use serde_json::json;

both! {
    sigterm_closes_websockets_with_1012_and_exits_cleanly,
    chat_sent_before_sigterm_is_in_the_snapshot_after_restart,
}

/// The engine binary as a child process; killed if a test fails before it exits.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(database_url: &str) -> (Self, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_liveshop"))
            .arg("serve")
            // Away from the repository, so no `.env` file is picked up.
            .current_dir(std::env::temp_dir())
            .env("LIVESHOP_LISTEN", "127.0.0.1:0")
            .env("DATABASE_URL", database_url)
            .env("LIVESHOP_JWT_SECRET", SECRET)
            .env("LIVESHOP_ENV", "dev")
            .env("RUST_LOG", "info")
            .env_remove("REDIS_URL")
            .env_remove("LIVESHOP_ALLOWED_ORIGINS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the liveshop binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        // Keep reading to the end so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    // Nobody listens any more; keep draining the pipe.
                }
            }
        });
        let mut server = Self { child, lines };
        let addr = server.wait_for_line("listening", Duration::from_secs(60));
        let addr = addr
            .split_whitespace()
            .find_map(|word| word.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {addr:?}"))
            .parse()
            .expect("addr is IP:PORT");
        (server, addr)
    }

    fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(err) => panic!(
                    "no log line with {needle:?} ({err}); exit: {:?}",
                    self.child.try_wait()
                ),
            }
        }
    }

    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our own child.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM is delivered");
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server exits after draining"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A tenant with a live stream on the server at `addr`, made over HTTP.
async fn live_stream(addr: SocketAddr, slug: &str) -> (Shop, String) {
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let tenant = http
        .post(url("/v1/tenants"))
        .bearer_auth(operator())
        .json(&json!({ "slug": slug, "name": "Drain" }))
        .send()
        .await
        .expect("tenant request");
    let tenant = expect_json(tenant, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let shop = Shop {
        seller: token(Role::Seller, Some(&tenant), "seller-1"),
        viewer: token(Role::Viewer, Some(&tenant), "viewer-1"),
        admin: token(Role::Admin, Some(&tenant), "admin-1"),
        tenant,
    };
    let stream = http
        .post(url("/v1/streams"))
        .bearer_auth(&shop.seller)
        .json(&json!({ "title": "Until SIGTERM" }))
        .send()
        .await
        .expect("stream request");
    let stream = expect_json(stream, 201).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let started = http
        .post(url(&format!("/v1/streams/{stream}/start")))
        .bearer_auth(&shop.seller)
        .send()
        .await
        .expect("start request");
    expect_json(started, 200).await;
    (shop, stream)
}

/// A WebSocket client of the server at `addr`, past its `welcome`.
async fn client(addr: SocketAddr, token: &str) -> WsClient {
    let mut client = common::connect(&format!("ws://{addr}/v1/ws?token={token}"), None)
        .await
        .expect("upgrade");
    assert_eq!(client.next_json().await["type"], "welcome");
    client
}

async fn sigterm_closes_websockets_with_1012_and_exits_cleanly(backend: Backend) {
    let db = fresh(backend).await;
    let (mut server, addr) = Server::start(db.url());
    let (shop, stream) = live_stream(addr, "drain").await;

    let mut clients: Vec<WsClient> = Vec::new();
    for _ in 0..2 {
        let mut joined = client(addr, &shop.viewer).await;
        joined.join(&stream, None).await;
        clients.push(joined);
    }
    // A connection that never joined a stream is drained too.
    clients.push(client(addr, &shop.viewer).await);

    server.terminate();
    for client in &mut clients {
        assert_eq!(client.expect_close_code().await, 1012);
    }
    let status = server.wait_exit().await;
    assert!(status.success(), "exit status {status:?}");
    drop(server);
    drop(db);
}

async fn chat_sent_before_sigterm_is_in_the_snapshot_after_restart(backend: Backend) {
    let db = fresh(backend).await;
    let (mut server, addr) = Server::start(db.url());
    let (shop, stream) = live_stream(addr, "restart").await;
    let mut writer = client(addr, &shop.viewer).await;
    let epoch = writer.join(&stream, None).await["epoch"].as_u64().unwrap();
    let texts = ["before one", "before two", "before three"];
    for (i, text) in texts.iter().enumerate() {
        writer
            .send_json(
                &json!({ "op": "chat", "stream": stream, "text": text, "ref": i.to_string() }),
            )
            .await;
    }
    let mut oks = 0;
    while oks < texts.len() {
        if writer.next_json().await["type"] == "ok" {
            oks += 1;
        }
    }
    server.terminate();
    assert_eq!(writer.expect_close_code().await, 1012);
    assert!(server.wait_exit().await.success());
    drop(server);

    let (server, addr) = Server::start(db.url());
    let mut reader = client(addr, &shop.viewer).await;
    // The old position cannot be resumed on a new process: a fresh snapshot, a new epoch.
    let joined = reader.join(&stream, Some((epoch, 4))).await;
    assert_eq!(joined["resumed"], false, "{joined}");
    assert!(joined["epoch"].as_u64().unwrap() > epoch, "{joined}");
    let snapshot = &joined["snapshot"];
    assert_eq!(snapshot["stream"]["status"], "live", "{joined}");
    let chat: Vec<&str> = snapshot["chat"]
        .as_array()
        .expect("chat")
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(chat, texts, "{joined}");
    drop(server);
    drop(db);
}
