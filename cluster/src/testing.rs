//! A throwaway `redis-server` for tests: its own free port, no persistence, killed on drop.
//!
//! Tests of cluster behaviour need to stop and restart Redis (an outage, a restart that comes
//! back empty) without disturbing other tests, so each starts its own server.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long [`RedisServer::start`] waits for the server to answer `PING`.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` process on a free port of 127.0.0.1.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port (`--save '' --appendonly no`: it keeps nothing across a
    /// restart) and waits until it answers `PING`.
    ///
    /// Panics when `redis-server` cannot be started: a test cannot run without it.
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut server = Self { port, child: None };
        server.spawn();
        server
    }

    /// The URL clients connect with.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (an outage) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty; stops it first if it runs.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn spawn(&mut self) {
        let started = Instant::now();
        loop {
            let child = Command::new("redis-server")
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (is it installed?)");
            self.child = Some(child);
            if self.wait_for_ping(started) {
                return;
            }
            // The port may still be held by the previous process: try again.
            self.stop();
            assert!(
                started.elapsed() < STARTUP,
                "redis-server on port {} did not answer PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for_ping(&mut self, started: Instant) -> bool {
        let client = redis::Client::open(self.url()).expect("a valid url");
        while started.elapsed() < STARTUP {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            if let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_millis(200))
                && redis::cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
