//! WebSocket client of contract v1: connect (optionally from a chosen 127.0.0.x source
//! address), read the welcome, join or resume a stream, send ops and read typed frames.

use anyhow::{Context as _, anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

/// The socket type of every connection.
pub type Ws = WebSocketStream<TcpStream>;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addr: SocketAddr,
    ws_base: String,
    sources: Vec<Ipv4Addr>,
    /// Timeout of connect + upgrade + welcome (+ join).
    pub timeout: Duration,
}

impl Endpoint {
    /// Resolves `http://host:port` once; with `source_ips > 1` and a loopback target,
    /// connections are spread over 127.0.0.1..=source_ips.
    pub fn new(base_url: &str, source_ips: u8, timeout: Duration) -> anyhow::Result<Self> {
        let (scheme, rest) = base_url
            .split_once("://")
            .ok_or_else(|| anyhow!("--url must look like http://host:port"))?;
        let ws_scheme = match scheme {
            "http" | "ws" => "ws",
            "https" | "wss" => bail!("TLS is not supported by the load tool; use http://"),
            other => bail!("unsupported URL scheme {other:?}"),
        };
        let authority = rest.split('/').next().unwrap_or(rest);
        let host_port = if authority.contains(':') && !authority.ends_with(']') {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = host_port
            .to_socket_addrs()
            .with_context(|| format!("resolving {host_port}"))?
            .next()
            .ok_or_else(|| anyhow!("{host_port} resolves to nothing"))?;
        let sources = match addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() && source_ips > 1 => (1..=source_ips)
                .map(|i| Ipv4Addr::new(127, 0, 0, i))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            addr,
            ws_base: format!("{ws_scheme}://{authority}/v1/ws"),
            sources,
            timeout,
        })
    }

    /// Source address for connection number `slot` (`None`: let the kernel choose).
    pub fn source(&self, slot: usize) -> Option<Ipv4Addr> {
        (!self.sources.is_empty()).then(|| self.sources[slot % self.sources.len()])
    }

    /// Number of distinct source addresses in use (1 when not spreading).
    pub fn source_count(&self) -> usize {
        self.sources.len().max(1)
    }

    /// The WebSocket URL for `token`.
    pub fn ws_url(&self, token: &str) -> String {
        format!("{}?token={token}", self.ws_base)
    }

    async fn tcp(&self, slot: usize) -> std::io::Result<TcpStream> {
        let socket = match self.addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = self.source(slot) {
            port_at_connect(&socket)?;
            socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn connect_inner(&self, token: &str, slot: usize) -> Result<Conn, ConnectError> {
        let tcp = self.tcp(slot).await.map_err(ConnectError::Tcp)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(self.ws_url(token), tcp, Some(config))
                .await
                .map_err(|e| match e {
                    tungstenite::Error::Http(response) => {
                        ConnectError::Status(response.status().as_u16())
                    }
                    other => ConnectError::Ws(other.to_string()),
                })?;
        let mut conn = Conn {
            ws,
            pending: VecDeque::new(),
        };
        match conn.next().await {
            Incoming::Frame(f) if f.kind == "welcome" => Ok(conn),
            Incoming::Frame(f) => Err(ConnectError::Protocol(format!(
                "expected welcome, got {:?}",
                f.kind
            ))),
            Incoming::Closed(code) => Err(ConnectError::Closed(code)),
        }
    }

    /// Connects and reads the welcome (no join), within the timeout.
    pub async fn connect(&self, token: &str, slot: usize) -> Result<Conn, ConnectError> {
        tokio::time::timeout(self.timeout, self.connect_inner(token, slot))
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }

    /// Connects and joins `stream` (resuming from `resume` when given), within the timeout.
    pub async fn connect_and_join(
        &self,
        token: &str,
        slot: usize,
        stream: &str,
        resume: Option<&Resume>,
    ) -> Result<(Conn, Frame), ConnectError> {
        let work = async {
            let mut conn = self.connect_inner(token, slot).await?;
            let joined = conn.join(stream, resume).await?;
            Ok((conn, joined))
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(ConnectError::Timeout))
    }
}

/// Asks the kernel to choose the source port of a socket bound to a source address at
/// `connect` (knowing the destination, so a port only has to be free for that one 4-tuple)
/// rather than at `bind` (a port no socket on the address holds at all). After a few
/// back-to-back runs tens of thousands of earlier connections sit in TIME_WAIT, and the search
/// at `bind` cost about a millisecond of kernel time per connect: 10,000 connects took 4-10 s
/// and some timed out.
fn port_at_connect(socket: &TcpSocket) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd as _;
        let on: libc::c_int = 1;
        // SAFETY: a valid socket descriptor, and a pointer to an int that outlives the call,
        // with its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = socket;
    Ok(())
}

/// Where to resume a stream from.
#[derive(Debug, Clone)]
pub struct Resume {
    /// Epoch of the last joined reply.
    pub epoch: Value,
    /// Last seq seen.
    pub since: u64,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// TCP connect failed.
    Tcp(std::io::Error),
    /// The upgrade was refused with this HTTP status.
    Status(u16),
    /// WebSocket handshake error.
    Ws(String),
    /// Took longer than the timeout.
    Timeout,
    /// Closed before welcome/joined.
    Closed(Option<u16>),
    /// The server answered with an error frame.
    Refused(String),
    /// Unexpected frame.
    Protocol(String),
}

impl ConnectError {
    /// Short label for counting failures by kind.
    pub fn label(&self) -> String {
        match self {
            ConnectError::Tcp(e) => format!("tcp_{:?}", e.kind()).to_lowercase(),
            ConnectError::Status(s) => format!("http_{s}"),
            ConnectError::Ws(_) => "websocket".into(),
            ConnectError::Timeout => "timeout".into(),
            ConnectError::Closed(code) => format!("closed_{}", code.unwrap_or(0)),
            ConnectError::Refused(code) => format!("error_{code}"),
            ConnectError::Protocol(_) => "protocol".into(),
        }
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Tcp(e) => write!(f, "tcp connect: {e}"),
            ConnectError::Status(s) => write!(f, "upgrade refused with HTTP {s}"),
            ConnectError::Ws(e) => write!(f, "websocket: {e}"),
            ConnectError::Timeout => write!(f, "timed out"),
            ConnectError::Closed(code) => write!(f, "closed early (code {code:?})"),
            ConnectError::Refused(code) => write!(f, "server error {code}"),
            ConnectError::Protocol(m) => write!(f, "protocol: {m}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A server frame; fields absent from a given type are `None`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Frame {
    /// `welcome`, `joined`, `ok`, `event`, `error`, `pong`, ...
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Echo of the client's ref.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Stream seq (events, joined, ok of chat).
    pub seq: Option<u64>,
    /// Stream epoch (joined).
    pub epoch: Option<Value>,
    /// Whether a join resumed (joined).
    #[serde(default)]
    pub resumed: bool,
    /// Event kind (`chat`, `viewers`, ...).
    #[serde(rename = "kind")]
    pub event: Option<String>,
    /// Event payload (the tool reads a chat's text and a drop event's drop and remaining).
    pub data: Option<Box<EventData>>,
    /// Error code.
    pub code: Option<String>,
    /// The claim of an `ok` answer to a `claim` op.
    pub claim: Option<Box<Value>>,
}

/// The part of an event payload the tool reads.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EventData {
    /// Chat text.
    pub text: Option<String>,
    /// The drop an `inventory`, `sold_out` or `drop_closed` event is about.
    pub drop: Option<String>,
    /// Remaining units of an `inventory` event.
    pub remaining: Option<u64>,
}

impl Frame {
    /// Parses a text frame; unparseable text becomes a frame of kind `invalid`.
    pub fn parse(text: &str) -> Frame {
        serde_json::from_str(text).unwrap_or_else(|_| Frame {
            kind: "invalid".into(),
            ..Frame::default()
        })
    }

    /// Chat text of a chat event.
    pub fn chat_text(&self) -> Option<&str> {
        if self.event.as_deref() != Some("chat") {
            return None;
        }
        self.data.as_ref()?.text.as_deref()
    }
}

/// What reading a connection produced.
#[derive(Debug)]
pub enum Incoming {
    /// One JSON frame.
    Frame(Frame),
    /// The connection ended, with the close code if the server sent one.
    Closed(Option<u16>),
}

/// An open connection.
pub struct Conn {
    ws: Ws,
    pending: VecDeque<Frame>,
}

impl Conn {
    /// Sends several ops, already encoded as JSON text, back to back, flushing once.
    pub async fn send_all(&mut self, ops: Vec<String>) -> Result<(), tungstenite::Error> {
        for op in ops {
            self.ws.feed(Message::text(op)).await?;
        }
        self.ws.flush().await
    }

    /// Sends one JSON op.
    pub async fn send(&mut self, op: &Value) -> Result<(), tungstenite::Error> {
        self.ws.send(Message::text(op.to_string())).await
    }

    /// Next frame (pings are answered by the library as frames are read).
    pub async fn next(&mut self) -> Incoming {
        if let Some(frame) = self.pending.pop_front() {
            return Incoming::Frame(frame);
        }
        read_frame(&mut self.ws).await
    }

    /// Sends `join` (with `epoch`/`since` when resuming) and waits for `joined`; frames that
    /// arrive meanwhile are kept for [`Conn::next`].
    pub async fn join(
        &mut self,
        stream: &str,
        resume: Option<&Resume>,
    ) -> Result<Frame, ConnectError> {
        let mut op = serde_json::json!({"op": "join", "stream": stream, "ref": "j"});
        if let Some(r) = resume {
            op["epoch"] = r.epoch.clone();
            op["since"] = r.since.into();
        }
        self.send(&op)
            .await
            .map_err(|e| ConnectError::Ws(e.to_string()))?;
        loop {
            match read_frame(&mut self.ws).await {
                Incoming::Frame(f) if f.kind == "joined" => return Ok(f),
                Incoming::Frame(f) if f.kind == "error" && f.reference.as_deref() == Some("j") => {
                    return Err(ConnectError::Refused(f.code.unwrap_or_default()));
                }
                Incoming::Frame(f) => self.pending.push_back(f),
                Incoming::Closed(code) => return Err(ConnectError::Closed(code)),
            }
        }
    }

    /// Starts a clean close without waiting for the reply.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_millis(500), self.ws.close(None)).await;
    }

    /// Drops the socket without a close handshake (an abrupt disconnect).
    pub fn abort(self) {
        drop(self);
    }

    /// Splits into the raw socket, for tasks that read and write concurrently.
    pub fn into_ws(self) -> Ws {
        self.ws
    }
}

/// Reads the next JSON frame of a socket, skipping control frames.
pub async fn read_frame<S>(ws: &mut S) -> Incoming
where
    S: futures_util::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Incoming::Frame(Frame::parse(text.as_str())),
            Some(Ok(Message::Close(frame))) => {
                return Incoming::Closed(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Incoming::Closed(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_bound_socket_gets_its_port_at_connect() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let socket = TcpSocket::new_v4().unwrap();
        port_at_connect(&socket).unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        // Bound to the address, no port reserved yet.
        assert_eq!(socket.local_addr().unwrap().port(), 0);
        let stream = socket
            .connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let local = stream.local_addr().unwrap();
        assert_eq!(local.ip().to_string(), "127.0.0.2");
        assert_ne!(local.port(), 0);
    }

    #[test]
    fn derives_ws_url() {
        let e = Endpoint::new("http://127.0.0.1:8080", 1, Duration::from_secs(1)).unwrap();
        assert_eq!(e.ws_url("abc"), "ws://127.0.0.1:8080/v1/ws?token=abc");
        assert_eq!(e.source(3), None);
        assert!(Endpoint::new("https://127.0.0.1:1", 1, Duration::from_secs(1)).is_err());
        assert!(Endpoint::new("127.0.0.1:1", 1, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn spreads_source_addresses() {
        let e = Endpoint::new("http://127.0.0.1:9/", 8, Duration::from_secs(1)).unwrap();
        assert_eq!(e.source(0), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(e.source(7), Some(Ipv4Addr::new(127, 0, 0, 8)));
        assert_eq!(e.source(8), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(e.source_count(), 8);
    }

    #[test]
    fn parses_frames() {
        let f = Frame::parse(
            r#"{"type":"event","stream":"s1","seq":7,"kind":"chat","data":{"id":"m","user":{"id":"u","name":"n"},"text":"hi","at":"2024-01-01T00:00:00Z"}}"#,
        );
        assert_eq!(f.kind, "event");
        assert_eq!(f.seq, Some(7));
        assert_eq!(f.chat_text(), Some("hi"));
        let v =
            Frame::parse(r#"{"type":"event","stream":"s1","kind":"viewers","data":{"count":3}}"#);
        assert_eq!(v.seq, None);
        assert_eq!(v.chat_text(), None);
        let j = Frame::parse(
            r#"{"type":"joined","ref":"j","stream":"s","epoch":2,"seq":10,"resumed":false,"snapshot":{"chat":[]}}"#,
        );
        assert_eq!(j.kind, "joined");
        assert!(!j.resumed);
        assert_eq!(j.epoch, Some(Value::from(2)));
        let e = Frame::parse(
            r#"{"type":"error","ref":"c1","code":"rate_limited","message":"slow","retry_after_ms":100}"#,
        );
        assert_eq!(e.code.as_deref(), Some("rate_limited"));
        assert_eq!(Frame::parse("not json").kind, "invalid");
    }
}
