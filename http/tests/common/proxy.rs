//! A TCP proxy a test puts between the engine and its database, to cut the database off and
//! bring it back while the engine runs.
//!
//! Two cuts, the two ways a database goes away:
//! - [`Proxy::refuse`]: the server is down. Every open connection is reset (both ends get a TCP
//!   RST) and new connections are refused (the port is closed).
//! - [`Proxy::blackhole`]: the network is partitioned. Connections stay open but nothing crosses
//!   in either direction; new connections are accepted and get no answer. Bytes already sent wait
//!   and are delivered on [`Proxy::heal`], as TCP would deliver them once a partition heals.
//!
//! [`Proxy::heal`] forwards again: new connections reach the database, held ones go on.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwards both ways.
    Open,
    /// Resets every connection and refuses new ones.
    Refused,
    /// Holds every byte and every new connection until healed.
    Blackhole,
}

/// The mode, and how many times connections were reset (a connection dies when this changes).
#[derive(Debug, Clone, Copy)]
struct State {
    mode: Mode,
    resets: u64,
}

/// A running proxy; stopped (its connections reset) on drop.
pub struct Proxy {
    addr: SocketAddr,
    state: watch::Sender<State>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let (state, rx) = watch::channel(State {
            mode: Mode::Open,
            resets: 0,
        });
        let task = tokio::spawn(accept_loop(listener, addr, upstream, rx));
        Self { addr, state, task }
    }

    /// A proxy in front of the database server of `database_url` (`postgres://user@host:port/db`).
    pub async fn in_front_of(database_url: &str) -> Self {
        let (host_port, _) = split_authority(database_url);
        let upstream = tokio::net::lookup_host(host_port)
            .await
            .expect("database host resolves")
            .next()
            .expect("database host has an address");
        Self::start(upstream).await
    }

    /// `database_url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, database_url: &str) -> String {
        let (_, range) = split_authority(database_url);
        let mut url = database_url.to_owned();
        url.replace_range(range, &self.addr.to_string());
        url
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The database is down: resets every connection, refuses new ones.
    pub fn refuse(&self) {
        self.state.send_modify(|s| {
            s.mode = Mode::Refused;
            s.resets += 1;
        });
    }

    /// The network is partitioned: nothing crosses, new connections hang.
    pub fn blackhole(&self) {
        self.state.send_modify(|s| s.mode = Mode::Blackhole);
    }

    /// Cuts the database off in `mode` ([`Mode::Open`] heals).
    pub fn cut(&self, mode: Mode) {
        match mode {
            Mode::Open => self.heal(),
            Mode::Refused => self.refuse(),
            Mode::Blackhole => self.blackhole(),
        }
    }

    /// Forwards again.
    pub fn heal(&self) {
        self.state.send_modify(|s| s.mode = Mode::Open);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.refuse();
        self.task.abort();
    }
}

/// The `host:port` of a URL and its byte range.
fn split_authority(url: &str) -> (&str, std::ops::Range<usize>) {
    let start = url.find("://").expect("url has a scheme") + 3;
    let rest = &url[start..];
    let start = start + rest.find('@').map_or(0, |at| at + 1);
    let end = url[start..]
        .find(['/', '?'])
        .map_or(url.len(), |i| start + i);
    (&url[start..end], start..end)
}

async fn accept_loop(
    mut listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut rx: watch::Receiver<State>,
) {
    loop {
        if rx.borrow_and_update().mode == Mode::Refused {
            // Closing the listening socket makes new connections fail with "connection refused".
            drop(listener);
            if rx.wait_for(|s| s.mode != Mode::Refused).await.is_err() {
                return;
            }
            listener = rebind(addr).await;
            continue;
        }
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((client, _)) = accepted {
                    tokio::spawn(connection(client, upstream, rx.clone()));
                }
            }
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Binds the proxy's port again after a refusal (retrying briefly while the old socket goes).
async fn rebind(addr: SocketAddr) -> TcpListener {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) if tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("the proxy cannot listen on {addr} again: {err}"),
        }
    }
}

/// One client connection: held while the proxy is blackholed, forwarded while it is open, reset
/// when the proxy refuses.
async fn connection(client: TcpStream, upstream: SocketAddr, rx: watch::Receiver<State>) {
    let born = rx.borrow().resets;
    let reset = || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|s| s.resets != born).await;
        }
    };
    // Both ends close with a RST (not a FIN) when dropped, as when a server or a path dies.
    abortive(&client);
    let opened = async {
        let mut rx = rx.clone();
        rx.wait_for(|s| s.mode == Mode::Open).await.ok()?;
        TcpStream::connect(upstream).await.ok()
    };
    let server = tokio::select! {
        server = opened => server,
        () = reset() => None,
    };
    let Some(server) = server else {
        return;
    };
    abortive(&server);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let both_ways = async {
        tokio::join!(
            pump(client_read, server_write, rx.clone()),
            pump(server_read, client_write, rx.clone()),
        )
    };
    tokio::select! {
        _ = both_ways => {}
        () = reset() => {}
    }
}

/// Makes closing the socket send a RST (linger 0), and turns Nagle off.
fn abortive(socket: &TcpStream) {
    let _ = socket2::SockRef::from(socket).set_linger(Some(Duration::ZERO));
    let _ = socket.set_nodelay(true);
}

/// Copies one direction; each chunk read waits until the proxy is open before it is written.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut rx: watch::Receiver<State>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        if rx.wait_for(|s| s.mode == Mode::Open).await.is_err() {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
