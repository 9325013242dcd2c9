//! What a client without a token can do to the front door's descriptors and connection slots:
//! idle and slow connections are closed by the header-read timeout, the connection caps and the
//! upgrade rate refuse the excess with an answer, and running out of descriptors neither stops
//! the server nor floods its log. All over real sockets against a real server on port 0.
//!
//! The idle-socket test holds thousands of sockets at both ends in this one process: it raises
//! its own soft `RLIMIT_NOFILE` up to the hard limit, and opens fewer sockets when the hard limit
//! is too low for 2,500.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Backend, TempDir, TestApp, WAIT, expect_error, liveshop_command};
use futures_util::future::join_all;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Raises this process's soft descriptor limit towards `want`; returns the soft limit now.
fn raise_fd_limit(want: u64) -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        }
    }
    limit.rlim_cur
}

/// Waits until the server ends `socket` (end of stream or reset), reading whatever it sends.
async fn closed_by_server(mut socket: TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    tokio::time::timeout(WAIT, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A connection from the loopback address `source` (127.0.0.0/8 is all local on Linux).
async fn connect_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let source: IpAddr = source.parse().expect("source address");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    socket.connect(to).await.expect("connect")
}

/// Reads what the server sends until it closes: the whole answer of a refused connection.
async fn read_to_close(mut socket: TcpStream) -> String {
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut bytes)).await;
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A `/health` request on its own connection; its status.
async fn health(app: &TestApp) -> u16 {
    let client = reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .expect("client");
    client
        .get(app.url("/health"))
        .send()
        .await
        .expect("/health is answered")
        .status()
        .as_u16()
}

/// The value of an unlabelled counter in `/metrics`.
async fn counter(app: &TestApp, name: &str) -> u64 {
    let text = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[tokio::test]
async fn idle_and_slow_connections_are_closed_while_health_and_a_viewer_are_served() {
    let app = TestApp::spawn(Backend::Sqlite, |c| {
        c.header_read_secs = 1;
        c.max_http_connections_per_ip = 0;
    })
    .await;
    let shop = app.shop("idle").await;
    let stream = app.live_stream(&shop).await;
    let mut viewer = app.ws(&shop.viewer).await;
    viewer.join(&stream, None).await;

    // Both ends of every idle socket live in this process.
    let limit = raise_fd_limit(8_192);
    let idle = 2_500.min(limit.saturating_sub(1_000) / 2) as usize;
    assert!(
        idle >= 500,
        "descriptor limit {limit} too low for this test"
    );
    let timeouts_before = counter(&app, "liveshop_http_header_timeouts_total").await;
    let opening = Instant::now();
    let mut sockets = Vec::with_capacity(idle);
    for batch in 0..idle.div_ceil(500) {
        let size = 500.min(idle - batch * 500);
        let opened = join_all((0..size).map(|_| TcpStream::connect(app.addr))).await;
        sockets.extend(opened.into_iter().map(|s| s.expect("idle connect")));
    }
    // Half of them start a request and never finish its head.
    for socket in sockets.iter_mut().step_by(2) {
        socket
            .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .expect("partial head");
    }
    // A client trickling its head a byte at a time.
    let mut slow = TcpStream::connect(app.addr).await.expect("slow connect");
    slow.write_all(b"GET /health HTTP/1.1\r\nX-Slow: ")
        .await
        .expect("slow start");
    let (mut slow_read, mut slow_write) = slow.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..200 {
            if slow_write.write_all(b"a").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    // A kept-alive connection that goes quiet after its answer.
    let mut kept = TcpStream::connect(app.addr).await.expect("kept connect");
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.expect("answer");
    assert_eq!(&first, b"HTTP/1.1 200");

    // Meanwhile the server serves everyone else.
    let asked = Instant::now();
    assert_eq!(health(&app).await, 200);
    let health_took = asked.elapsed();
    viewer.ping("during").await;
    let mut second = app.ws(&shop.viewer).await;
    second.ping("second").await;

    // Every idle socket, the trickler and the quiet kept-alive one are closed by the server.
    let closed = join_all(sockets.into_iter().map(closed_by_server)).await;
    let open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        open, 0,
        "{open} of {idle} idle connections were never closed"
    );
    eprintln!(
        "{idle} idle sockets (descriptor limit {limit}) all closed {:?} after the first was opened; /health took {health_took:?} meanwhile",
        opening.elapsed()
    );
    let mut rest = Vec::new();
    let slow_closed = tokio::time::timeout(WAIT, slow_read.read_to_end(&mut rest)).await;
    assert!(slow_closed.is_ok(), "the trickling client was never closed");
    assert!(
        closed_by_server(kept).await,
        "the kept-alive connection was never closed"
    );
    let _ = trickle.await;
    let timeouts = counter(&app, "liveshop_http_header_timeouts_total").await;
    assert!(
        timeouts >= timeouts_before + idle as u64,
        "{timeouts} header timeouts counted after {timeouts_before}, for {idle} idle sockets"
    );

    // Upgraded connections are not subject to the header timeout.
    viewer.ping("after").await;
    second.ping("after").await;
    assert_eq!(health(&app).await, 200);
}

#[tokio::test]
async fn past_the_http_connection_caps_a_connection_is_answered_and_closed() {
    let app = TestApp::spawn(Backend::Sqlite, |c| {
        c.max_http_connections = 3;
        c.max_http_connections_per_ip = 2;
        c.header_read_secs = 3;
    })
    .await;
    let _a = connect_from("127.0.0.1", app.addr).await;
    let _b = connect_from("127.0.0.1", app.addr).await;
    let third = read_to_close(connect_from("127.0.0.1", app.addr).await).await;
    assert!(third.starts_with("HTTP/1.1 429 "), "{third}");
    assert!(third.contains("retry-after: 1"), "{third}");
    assert!(third.contains(r#""code":"rate_limited""#), "{third}");
    assert!(third.contains("x-content-type-options: nosniff"), "{third}");

    // Another address still gets a slot, until the whole server is full.
    let _c = connect_from("127.0.0.2", app.addr).await;
    let fourth = read_to_close(connect_from("127.0.0.3", app.addr).await).await;
    assert!(fourth.starts_with("HTTP/1.1 503 "), "{fourth}");
    assert!(fourth.contains(r#""code":"unavailable""#), "{fourth}");

    // The idle ones time out and give their slots back.
    common::eventually("the caps free up", || async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let client = reqwest::Client::new();
        matches!(client.get(app.url("/health")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

#[tokio::test]
async fn past_max_connections_an_upgrade_gets_503_before_its_token_is_read() {
    let app = TestApp::spawn(Backend::Sqlite, |c| c.max_connections = 2).await;
    let shop = app.shop("full").await;
    let first = app.ws(&shop.viewer).await;
    let mut second = app.ws(&shop.viewer).await;
    for token in [shop.viewer.as_str(), "not-a-token"] {
        let refused = app.ws_raw(token, None).await.err();
        assert_eq!(refused.map(|s| s.as_u16()), Some(503), "token {token:?}");
    }
    let url = format!("{}?token=not-a-token", app.url("/v1/ws"));
    let response = app
        .http
        .get(url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("answered");
    assert!(response.headers().contains_key("retry-after"));
    expect_error(response, 503, "unavailable").await;
    second.ping("still served").await;

    // A connection that ends gives its slot back.
    first.close().await;
    common::eventually("a slot frees up", || async {
        match app.ws_raw(&shop.viewer, None).await {
            Ok(client) => {
                client.close().await;
                true
            }
            Err(_) => false,
        }
    })
    .await;
}

#[tokio::test]
async fn over_the_upgrade_rate_an_address_gets_429_with_retry_after() {
    // One upgrade per 100 s: the second, whenever it comes in this test, is over the rate.
    let app = TestApp::spawn(Backend::Sqlite, |c| c.upgrades_per_ip_per_sec = 0.01).await;
    let shop = app.shop("rate").await;
    let mut viewer = app.ws(&shop.viewer).await;
    let url = format!("{}?token=not-a-token", app.url("/v1/ws"));
    let response = app
        .http
        .get(url)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("answered");
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1, "{retry_after}");
    expect_error(response, 429, "rate_limited").await;
    assert_eq!(
        app.ws_raw(&shop.viewer, None)
            .await
            .err()
            .map(|s| s.as_u16()),
        Some(429)
    );
    // The connection already open is not affected, nor is REST.
    viewer.ping("open").await;
    assert_eq!(health(&app).await, 200);
}

#[tokio::test]
async fn running_out_of_descriptors_neither_spins_nor_stops_the_server() {
    // The engine runs as a child with 256 descriptors, and gets more idle connections than that.
    let dir = TempDir::new("emfile");
    let database = format!("sqlite://{}/e.db?mode=rwc", dir.path().display());
    let mut command = liveshop_command(
        dir.path(),
        Some(&database),
        &[
            ("LIVESHOP_LISTEN", Some("127.0.0.1:0")),
            ("LIVESHOP_HEADER_READ_SECS", Some("1")),
            ("LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP", Some("0")),
        ],
    );
    command
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().expect("the engine starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let started = Instant::now();
    let addr: SocketAddr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the engine logs its address");
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
        {
            break addr.parse().expect("addr");
        }
    };

    raise_fd_limit(2_048);
    let idle: Vec<_> = join_all((0..600).map(|_| TcpStream::connect(addr)))
        .await
        .into_iter()
        .map(|s| s.expect("idle connect (the kernel queues what is not accepted)"))
        .collect();
    // A request queued behind them is answered once the idle ones are closed.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let answer = client
        .get(format!("http://{addr}/health"))
        .send()
        .await
        .map(|r| r.status().as_u16());
    let elapsed = started.elapsed();
    drop(idle);
    let _ = child.kill();
    let _ = child.wait();
    let log: Vec<String> = lines.try_iter().collect();
    assert_eq!(
        answer.ok(),
        Some(200),
        "/health is served again; log: {log:#?}"
    );
    let failures: Vec<_> = log.iter().filter(|l| l.contains("accept failed")).collect();
    assert!(
        !failures.is_empty(),
        "the engine never ran out of descriptors, so this test proved nothing"
    );
    assert!(
        failures.iter().all(|l| l.contains("suppressed=")),
        "{failures:#?}"
    );
    eprintln!(
        "{} accept failure lines in {elapsed:?}: {:?}",
        failures.len(),
        failures
    );
    // At most one line a second (plus the first).
    let allowed = elapsed.as_secs() as usize + 2;
    assert!(
        failures.len() <= allowed,
        "{} accept failure lines in {elapsed:?}: {failures:#?}",
        failures.len()
    );
}
