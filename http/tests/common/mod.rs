//! The integration harness: a real server on port 0 over a fresh database, token minting,
//! fixtures made over HTTP, and a WebSocket client that fails a test instead of hanging it.

#![allow(dead_code)]

pub mod proxy;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use liveshop_engine::auth::Role;
use liveshop_http::auth::{Claims, Keys, claims_for};
use liveshop_http::{Application, Config};
pub use liveshop_storage::Backend;
use liveshop_storage::testing::{TestDb, fresh};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Token secret of every test server (40 characters).
pub const SECRET: &str = "integration-secret-0123456789-abcdefghij";

/// How long a test waits for any single answer before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs each named case, an `async fn case(backend: Backend)`, on both databases: `both!{x}`
/// generates the tests `x::on_sqlite` and `x::on_postgres`. Attributes written before a case
/// (such as `#[ignore = "why"]`) apply to both of its tests.
#[allow(unused_macros)]
macro_rules! both {
    ($($(#[$attr:meta])* $case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                $(#[$attr])*
                async fn on_sqlite() {
                    super::$case($crate::common::Backend::Sqlite).await;
                }

                #[tokio::test]
                $(#[$attr])*
                async fn on_postgres() {
                    super::$case($crate::common::Backend::Postgres).await;
                }
            }
        )*
    };
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

/// A configuration for a test server on `database_url`: port 0, the test secret, development
/// mode, every other setting at its default.
pub fn config_for(database_url: &str) -> Config {
    Cli::try_parse_from([
        "liveshop",
        "--listen",
        "127.0.0.1:0",
        "--database-url",
        database_url,
        "--jwt-secret",
        SECRET,
        "--env",
        "dev",
    ])
    .expect("test configuration parses")
    .config
}

/// Signing keys matching [`SECRET`].
pub fn keys() -> Keys {
    Keys::new(SECRET.as_bytes())
}

/// A token for `role` in `tenant` (none for operators) with user id `sub`, valid for an hour.
pub fn token(role: Role, tenant: Option<&str>, sub: &str) -> String {
    mint(&claims_for(role, tenant, sub, None, 3600))
}

/// Signs arbitrary claims with the test secret.
pub fn mint(claims: &Claims) -> String {
    keys().mint(claims).expect("claims sign")
}

/// An operator token.
pub fn operator() -> String {
    token(Role::Operator, None, "ops")
}

/// A running server over its own database; stopped (and the database removed) on drop.
pub struct TestApp {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Which database it runs on.
    pub backend: Backend,
    /// A plain HTTP client.
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _db: TestDb,
}

/// A tenant with a token per tenant role.
pub struct Shop {
    /// Tenant id.
    pub tenant: String,
    /// Seller `seller-1`.
    pub seller: String,
    /// Viewer `viewer-1`.
    pub viewer: String,
    /// Admin `admin-1`.
    pub admin: String,
}

impl Shop {
    /// A token of this tenant for any role and user.
    pub fn token(&self, role: Role, sub: &str) -> String {
        token(role, Some(&self.tenant), sub)
    }
}

impl TestApp {
    /// Starts a server on a fresh database of `backend`, after `tweak` adjusted its settings.
    pub async fn spawn(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Self {
        let db = fresh(backend).await;
        let mut config = config_for(db.url());
        tweak(&mut config);
        let app = Application::build(config)
            .await
            .unwrap_or_else(|err| panic!("server builds on {backend:?}: {err:#}"));
        let addr = app.addr();
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(err) = app.run_until_stopped(stop).await {
                panic!("server failed: {err:#}");
            }
        });
        Self {
            addr,
            backend,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            server: Some(server),
            _db: db,
        }
    }

    /// A server with default settings.
    pub async fn default(backend: Backend) -> Self {
        Self::spawn(backend, |_| {}).await
    }

    /// Stops the server and waits for its drain to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("server drains in time")
                .expect("server task ends cleanly");
        }
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://addr/v1/ws`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// GET with an optional bearer token.
    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("GET is answered")
    }

    /// POST a JSON body with a bearer token.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST is answered")
    }

    /// Creates a tenant as operator; panics unless 201.
    pub async fn create_tenant(&self, slug: &str) -> Value {
        let body = json!({ "slug": slug, "name": format!("Shop {slug}") });
        expect_json(self.post("/v1/tenants", &operator(), &body).await, 201).await
    }

    /// A fresh tenant and tokens for its seller, viewer and admin.
    pub async fn shop(&self, slug: &str) -> Shop {
        let tenant = self.create_tenant(slug).await["id"]
            .as_str()
            .expect("tenant id")
            .to_owned();
        Shop {
            seller: token(Role::Seller, Some(&tenant), "seller-1"),
            viewer: token(Role::Viewer, Some(&tenant), "viewer-1"),
            admin: token(Role::Admin, Some(&tenant), "admin-1"),
            tenant,
        }
    }

    /// Creates a product; panics unless 201.
    pub async fn create_product(&self, token: &str, sku: &str) -> Value {
        let body = json!({ "sku": sku, "title": format!("Item {sku}"), "price_cents": 1999, "currency": "EUR" });
        expect_json(self.post("/v1/products", token, &body).await, 201).await
    }

    /// Creates a scheduled stream; panics unless 201. Returns its id.
    pub async fn create_stream(&self, token: &str, title: &str) -> String {
        let body = json!({ "title": title });
        let stream = expect_json(self.post("/v1/streams", token, &body).await, 201).await;
        stream["id"].as_str().expect("stream id").to_owned()
    }

    /// Starts a stream; panics unless 200.
    pub async fn start_stream(&self, token: &str, id: &str) -> Value {
        let path = format!("/v1/streams/{id}/start");
        expect_json(self.post(&path, token, &json!({})).await, 200).await
    }

    /// A live stream of the shop's seller.
    pub async fn live_stream(&self, shop: &Shop) -> String {
        let id = self.create_stream(&shop.seller, "Live show").await;
        self.start_stream(&shop.seller, &id).await;
        id
    }

    /// Opens a drop of `quantity` units (plus any `extra` body fields) in a new live stream of the
    /// shop's seller; panics unless 201 with status open. Returns (stream id, drop id).
    pub async fn open_drop(&self, shop: &Shop, quantity: i64, extra: Value) -> (String, String) {
        let stream = self.live_stream(shop).await;
        let product = self.create_product(&shop.seller, "drop-item").await;
        let mut body = json!({ "product": product["id"], "quantity": quantity });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let path = format!("/v1/streams/{stream}/drops");
        let drop = expect_json(self.post(&path, &shop.seller, &body).await, 201).await;
        assert_eq!(drop["status"], "open", "{drop}");
        assert_eq!(drop["remaining"], quantity, "{drop}");
        (stream, drop["id"].as_str().expect("drop id").to_owned())
    }

    /// Opens a WebSocket with `?token=` and reads its `welcome`.
    pub async fn ws(&self, token: &str) -> WsClient {
        let mut client = self.ws_raw(token, None).await.expect("upgrade succeeds");
        let welcome = client.next_json().await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        client
    }

    /// Opens a WebSocket (token in the query when given, optional Origin) without reading
    /// anything; a refused upgrade gives its HTTP status.
    pub async fn ws_raw(&self, token: &str, origin: Option<&str>) -> Result<WsClient, StatusCode> {
        let url = if token.is_empty() {
            self.ws_url()
        } else {
            format!("{}?token={token}", self.ws_url())
        };
        connect(&url, origin).await
    }
}

impl TestApp {
    /// Upgrades a plain TCP socket by hand, so a test can write bytes no WebSocket library
    /// would (unmasked frames, invalid UTF-8, split frames); the welcome frame is left unread.
    pub async fn ws_bytes(&self, token: &str) -> RawWs {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = TcpStream::connect(self.addr).await.expect("tcp connect");
        let request = format!(
            "GET /v1/ws?token={token} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            self.addr
        );
        socket.write_all(request.as_bytes()).await.expect("request");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(WAIT, socket.read_u8())
                .await
                .expect("upgrade answered in time")
                .expect("upgrade answer");
            head.push(byte);
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs { socket }
    }
}

/// A WebSocket spoken byte by byte.
pub struct RawWs {
    socket: TcpStream,
}

impl RawWs {
    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.socket
            .write_all(bytes)
            .await
            .expect("bytes are written");
    }

    /// Reads one server frame: its opcode and payload (server frames are not masked).
    pub async fn read_frame(&mut self) -> (u8, Vec<u8>) {
        use tokio::io::AsyncReadExt;
        tokio::time::timeout(WAIT, async {
            let mut head = [0u8; 2];
            self.socket
                .read_exact(&mut head)
                .await
                .expect("frame header");
            let len = match head[1] & 0x7f {
                126 => u64::from(self.socket.read_u16().await.expect("length")),
                127 => self.socket.read_u64().await.expect("length"),
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).expect("length fits")];
            self.socket.read_exact(&mut payload).await.expect("payload");
            (head[0] & 0x0f, payload)
        })
        .await
        .expect("a frame arrives in time")
    }

    /// Reads frames until one with `opcode`; returns its payload.
    pub async fn expect_opcode(&mut self, opcode: u8) -> Vec<u8> {
        loop {
            let (op, payload) = self.read_frame().await;
            if op == opcode {
                return payload;
            }
        }
    }

    /// Reads until the close frame and returns its code.
    pub async fn expect_close_code(&mut self) -> u16 {
        let payload = self.expect_opcode(0x8).await;
        u16::from_be_bytes([payload[0], payload[1]])
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts the status and returns the JSON body.
pub async fn expect_json(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.expect("body is read");
    assert_eq!(got, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is JSON ({e}): {text}"))
}

/// Asserts an error answer: the status, the contract shape and the code; returns the message.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> String {
    let body = expect_json(response, status).await;
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("error shape: {body}"));
    assert_eq!(error.len(), 2, "error has exactly code and message: {body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("message is a string: {body}"))
        .to_owned()
}

/// Opens a WebSocket to `url`, optionally with an Origin header.
pub async fn connect(url: &str, origin: Option<&str>) -> Result<WsClient, StatusCode> {
    let mut request = url.into_client_request().expect("valid ws url");
    if let Some(o) = origin {
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_str(o).expect("origin header"));
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("upgrade is answered in time")
    {
        Ok((socket, _)) => Ok(WsClient { socket }),
        Err(WsError::Http(response)) => {
            Err(StatusCode::from_u16(response.status().as_u16()).expect("status"))
        }
        Err(other) => panic!("websocket connect failed: {other}"),
    }
}

/// A WebSocket client speaking the JSON protocol.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Opens a WebSocket over a TCP socket whose receive buffer is `recv_buffer` bytes: a client
    /// that reads slowly fills the path to it quickly (slow-consumer tests).
    pub async fn with_small_buffer(url: &str, recv_buffer: u32) -> Self {
        let request = url.into_client_request().expect("valid ws url");
        let host = request.uri().host().expect("host").to_owned();
        let port = request.uri().port_u16().expect("port");
        let addr: SocketAddr = format!("{host}:{port}").parse().expect("ip:port");
        let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
        tcp.set_recv_buffer_size(recv_buffer).expect("buffer size");
        let stream = tcp.connect(addr).await.expect("tcp connect");
        let (socket, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
            .await
            .expect("upgrade");
        Self { socket }
    }
}

/// Whether a frame is an ephemeral event (`viewers`, `reactions`, `inventory`).
pub fn is_ephemeral(frame: &Value) -> bool {
    frame["type"] == "event"
        && matches!(
            frame["kind"].as_str(),
            Some("viewers" | "reactions" | "inventory")
        )
}

impl WsClient {
    /// Sends one JSON frame.
    pub async fn send_json(&mut self, frame: &Value) {
        self.send_text(&frame.to_string()).await;
    }

    /// Sends one raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::text(text))
            .await
            .expect("frame is sent");
    }

    /// Sends one binary frame.
    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.socket
            .send(Message::binary(bytes.to_vec()))
            .await
            .expect("frame is sent");
    }

    /// The next frame, ephemeral events included.
    pub async fn next_any(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a frame arrives in time")
                .expect("connection is open")
                .expect("frame is read");
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("server frame is JSON ({e}): {text}"));
                }
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame that is not an ephemeral event.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let frame = self.next_any().await;
            if !is_ephemeral(&frame) {
                return frame;
            }
        }
    }

    /// The next non-ephemeral frame, asserted to be of `kind` (a `type`).
    pub async fn expect_type(&mut self, kind: &str) -> Value {
        let frame = self.next_json().await;
        assert_eq!(frame["type"], kind, "{frame}");
        frame
    }

    /// The next non-ephemeral frame, asserted to be an error with `code` and `ref`.
    pub async fn expect_error(&mut self, code: &str, r#ref: Option<&str>) -> Value {
        let frame = self.expect_type("error").await;
        assert_eq!(frame["code"], code, "{frame}");
        assert!(frame["message"].is_string(), "{frame}");
        match r#ref {
            Some(r) => assert_eq!(frame["ref"], r, "{frame}"),
            None => assert!(frame.get("ref").is_none(), "{frame}"),
        }
        frame
    }

    /// Joins a stream (optionally resuming) and returns the `joined` reply.
    pub async fn join(&mut self, stream: &str, resume: Option<(u64, u64)>) -> Value {
        let mut frame = json!({ "op": "join", "stream": stream, "ref": "join" });
        if let Some((epoch, since)) = resume {
            frame["epoch"] = json!(epoch);
            frame["since"] = json!(since);
        }
        self.send_json(&frame).await;
        let joined = self.expect_type("joined").await;
        assert_eq!(joined["ref"], "join", "{joined}");
        assert_eq!(joined["stream"], stream, "{joined}");
        joined
    }

    /// Sends a ping and waits for its pong (proves the connection is alive and in order).
    pub async fn ping(&mut self, r#ref: &str) {
        self.send_json(&json!({ "op": "ping", "ref": r#ref })).await;
        let pong = self.expect_type("pong").await;
        assert_eq!(pong["ref"], r#ref, "{pong}");
    }

    /// Reads until the server closes; returns the close code. Text frames before it are skipped.
    pub async fn expect_close_code(&mut self) -> u16 {
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("the server closes in time");
            match next {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(Message::Close(None))) => return u16::from(CloseCode::Status),
                Some(Ok(_)) => {}
                Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Closes the connection and returns the server's answer: its close frame, or the error the
    /// client saw instead (an incomplete closing handshake).
    pub async fn close_and_read_answer(mut self) -> Result<Option<u16>, String> {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        self.socket
            .close(Some(frame))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let next = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .map_err(|_| "no answer in time".to_owned())?;
            match next {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(WsError::ConnectionClosed)) | None => return Ok(None),
                Some(Err(err)) => return Err(err.to_string()),
            }
        }
    }

    /// Closes the connection normally.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
        // Read until the server acknowledges, so it has seen the close.
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.socket.next().await {}
        })
        .await;
    }
}

/// A WebSocket client of the server at `addr` (a child process, say), past its `welcome`.
pub async fn client_of(addr: SocketAddr, token: &str) -> WsClient {
    let mut client = connect(&format!("ws://{addr}/v1/ws?token={token}"), None)
        .await
        .expect("upgrade");
    assert_eq!(client.next_json().await["type"], "welcome");
    client
}

/// Polls `check` until it holds (a test fails after [`WAIT`] instead of hanging).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `liveshop` command with a clean, explicit environment: the test secret, development mode,
/// `DATABASE_URL` when given, run in `cwd` (away from the repository, so no `.env` is read).
/// `env` entries override, `None` removes a variable.
pub fn liveshop_command(
    cwd: &Path,
    database_url: Option<&str>,
    env: &[(&str, Option<&str>)],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_liveshop"));
    command
        .current_dir(cwd)
        .env("LIVESHOP_JWT_SECRET", SECRET)
        .env("LIVESHOP_ENV", "dev")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null());
    for name in [
        "LIVESHOP_LISTEN",
        "REDIS_URL",
        "LIVESHOP_NODE_ID",
        "LIVESHOP_OWNER_LEASE_MS",
        "LIVESHOP_ALLOWED_ORIGINS",
        "LIVESHOP_CHAT_BURST",
        "LIVESHOP_CHAT_PER_SEC",
        "LIVESHOP_ENABLE_FAULT_INJECTION",
        "LIVESHOP_JWT_SECRETS",
    ] {
        command.env_remove(name);
    }
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    for (name, value) in env {
        match value {
            Some(v) => command.env(name, v),
            None => command.env_remove(name),
        };
    }
    command
}

/// Runs `liveshop args...` to completion (see [`liveshop_command`]).
pub fn run_liveshop(
    cwd: &Path,
    database_url: Option<&str>,
    env: &[(&str, Option<&str>)],
    args: &[&str],
) -> Output {
    liveshop_command(cwd, database_url, env)
        .args(args)
        .output()
        .expect("the liveshop binary runs")
}

/// An empty directory of its own under the system temp folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates the directory.
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("liveshop-{label}-{:016x}", rand_suffix()));
        std::fs::create_dir_all(&path).expect("temp dir is created");
        Self(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A REST client of an engine process ([`EngineProcess`]) at `addr`; a call not answered within
/// twice [`WAIT`] fails the test instead of hanging it.
#[derive(Clone)]
pub struct ProcessRest {
    http: reqwest::Client,
    addr: SocketAddr,
}

impl ProcessRest {
    /// A client of the engine listening on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            http: reqwest::Client::new(),
            addr,
        }
    }

    /// `POST path` with a JSON body, as `token`.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("http://{}{path}", self.addr))
            .bearer_auth(token)
            .json(&body)
            .timeout(WAIT * 2)
            .send()
            .await
            .unwrap_or_else(|err| panic!("POST {path} is answered: {err}"))
    }

    /// `GET path` as `token`.
    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(format!("http://{}{path}", self.addr))
            .bearer_auth(token)
            .timeout(WAIT * 2)
            .send()
            .await
            .unwrap_or_else(|err| panic!("GET {path} is answered: {err}"))
    }

    /// `GET path` as `token`, expecting 200; its JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        expect_json(self.get(path, token).await, 200).await
    }
}

/// `liveshop serve` as a child process on port 0; killed on drop if still running.
pub struct EngineProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Log lines seen while waiting for others.
    pub seen: Vec<String>,
}

impl EngineProcess {
    /// Starts the engine in the system temp folder over `database_url` and waits for its
    /// `listening addr=...` line; returns it with the bound address.
    pub fn start(database_url: &str, env: &[(&str, Option<&str>)]) -> (Self, SocketAddr) {
        Self::start_in(&std::env::temp_dir(), database_url, env)
    }

    /// As [`EngineProcess::start`], in the working directory `cwd`.
    pub fn start_in(
        cwd: &Path,
        database_url: &str,
        env: &[(&str, Option<&str>)],
    ) -> (Self, SocketAddr) {
        let mut child = liveshop_command(cwd, Some(database_url), env)
            .arg("serve")
            .env("LIVESHOP_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the liveshop binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        // Read to the end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut server = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        let line = server.wait_for_line("listening");
        let addr = line
            .split_whitespace()
            .find_map(|word| word.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr= in {line:?}"))
            .parse()
            .expect("addr is IP:PORT");
        (server, addr)
    }

    /// Waits (up to a minute) for a stdout line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(err) => panic!(
                    "no log line with {needle:?} ({err}); exit: {:?}; seen: {:#?}",
                    self.child.try_wait(),
                    self.seen
                ),
            }
        }
    }

    /// Every log line received so far (for a failing test's report).
    pub fn lines_so_far(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    /// The process id.
    pub fn pid(&self) -> libc::pid_t {
        libc::pid_t::try_from(self.child.id()).expect("pid fits")
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits");
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our own live child.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM is delivered");
    }

    /// Kills the process with SIGKILL (`kill -9`): nothing is flushed, nothing is drained.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
        self.child.wait().expect("the killed child is reaped");
    }

    /// Waits (up to 30 s) for the process to exit.
    pub async fn wait_exit(&mut self) -> ExitStatus {
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

impl Drop for EngineProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
