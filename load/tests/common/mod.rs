//! Test harness: starts the engine binary on a free port with a fresh SQLite database and
//! runs the `liveshop-load` binary against it.

use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::Value;
use std::io::{BufRead as _, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Tests share two cores: run one engine + load pair at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A running engine, killed on drop.
pub struct Engine {
    child: Child,
    dir: PathBuf,
    /// Base URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// Its JWT secret.
    pub secret: String,
    _serial: MutexGuard<'static, ()>,
}

fn engine_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("LIVESHOP_BIN") {
        return PathBuf::from(path);
    }
    // Same target directory as this tool's binary, else the workspace default.
    let sibling = PathBuf::from(env!("CARGO_BIN_EXE_liveshop-load")).with_file_name("liveshop");
    if sibling.exists() {
        return sibling;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/liveshop")
}

fn random(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The address in a `listening addr=HOST:PORT` log line.
pub fn parse_listening(line: &str) -> Option<String> {
    let line = strip_ansi(line);
    let rest = &line[line.find("listening")?..];
    let rest = match rest.find("addr=") {
        Some(at) => &rest[at + 5..],
        None => &rest[rest.find("\"addr\":")? + 7..],
    };
    let addr: String = rest
        .trim_start_matches('"')
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',' && *c != '}')
        .collect();
    (!addr.is_empty()).then_some(addr)
}

fn forward<R: Read + Send + 'static>(pipe: R, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
}

impl Engine {
    /// Starts the engine; `None` (test skipped) when its binary is not built, except under
    /// CI where a missing engine is a failure.
    pub fn start() -> Option<Engine> {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let binary = engine_binary();
        if !binary.exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "engine binary {} not found (build it or set LIVESHOP_BIN)",
                binary.display()
            );
            eprintln!(
                "SKIPPED: engine binary {} not found (build it or set LIVESHOP_BIN)",
                binary.display()
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!("liveshop-load-test-{}", random(10)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret = random(40);
        let mut child = Command::new(&binary)
            .env("LIVESHOP_LISTEN", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/t.db?mode=rwc", dir.display()),
            )
            .env("LIVESHOP_JWT_SECRET", &secret)
            .env("LIVESHOP_CHAT_BURST", "1000000")
            .env("LIVESHOP_CHAT_PER_SEC", "1000000")
            // Hundreds of clients upgrade from one or two loopback addresses within a second.
            .env("LIVESHOP_UPGRADES_PER_IP_PER_SEC", "0")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("REDIS_URL")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the engine");
        let (tx, rx) = mpsc::channel();
        forward(child.stdout.take().expect("stdout"), tx.clone());
        forward(child.stderr.take().expect("stderr"), tx);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(addr) = parse_listening(&line) {
                        break addr;
                    }
                    seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("engine exited with {status}: {}", seen.join("\n"));
                    }
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!("engine never logged its address:\n{}", seen.join("\n"));
                }
            }
        };
        // Keep draining the engine's output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in rx {});
        Some(Engine {
            child,
            dir,
            url: format!("http://{addr}"),
            secret,
            _serial: serial,
        })
    }

    /// The engine's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs `liveshop-load` with `args` plus `--url`, `--secret` and `--json`; returns the
    /// exit code and the parsed report.
    pub fn load(&self, args: &[&str]) -> (i32, Value) {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend([
            "--url".into(),
            self.url.clone(),
            "--secret".into(),
            self.secret.clone(),
            "--json".into(),
            "--no-progress".into(),
        ]);
        let (code, stdout, stderr) = run_bounded(&all, Duration::from_secs(180));
        let report = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("no JSON report ({e}); exit {code}\nstdout:\n{stdout}\nstderr:\n{stderr}")
        });
        eprintln!("{stderr}");
        (code, report)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs the load tool, killing it after `limit`.
pub fn run_bounded(args: &[String], limit: Duration) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_liveshop-load"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting liveshop-load");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("liveshop-load did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// A report field as u64 (panics with the report when missing).
pub fn num(report: &Value, path: &str) -> u64 {
    let mut v = report;
    for part in path.split('.') {
        v = &v[part];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path} missing or not a count in {report:#}"))
}

#[test]
fn parses_listening_lines() {
    assert_eq!(
        parse_listening("2026-01-01T00:00:00Z  INFO liveshop: listening addr=127.0.0.1:4321")
            .as_deref(),
        Some("127.0.0.1:4321")
    );
    assert_eq!(
        parse_listening("\u{1b}[2mts\u{1b}[0m INFO listening \u{1b}[3maddr\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:80 x").as_deref(),
        Some("127.0.0.1:80")
    );
    assert_eq!(
        parse_listening(r#"{"fields":{"message":"listening","addr":"127.0.0.1:5"}}"#).as_deref(),
        Some("127.0.0.1:5")
    );
    assert_eq!(
        parse_listening(r#"{"message":"listening addr=127.0.0.1:5"}"#).as_deref(),
        Some("127.0.0.1:5")
    );
    assert_eq!(parse_listening("nothing here"), None);
}
