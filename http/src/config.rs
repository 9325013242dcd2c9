//! Configuration: environment variables (and a `.env` file), overridable by flags.
//!
//! Every variable of the contract is here with its default; the extra knobs are documented in
//! `.env.template` and docs/API.md.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use liveshop_engine::limits::Limits;

use crate::auth::{Keys, KeysError};

/// Shortest secret accepted in production, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// Fewest distinct byte values a production secret must have: a secret of 32 spaces or of one
/// repeated character is long but guessable. Random secrets (hex, base64) have far more.
pub const MIN_SECRET_DISTINCT_BYTES: usize = 8;

/// Whether `secret` is strong enough for production: at least [`MIN_SECRET_BYTES`] bytes, not
/// only whitespace, and at least [`MIN_SECRET_DISTINCT_BYTES`] distinct byte values.
pub fn strong_secret(secret: &[u8]) -> bool {
    let mut seen = [false; 256];
    for &b in secret {
        seen[usize::from(b)] = true;
    }
    secret.len() >= MIN_SECRET_BYTES
        && !secret.iter().all(u8::is_ascii_whitespace)
        && seen.iter().filter(|s| **s).count() >= MIN_SECRET_DISTINCT_BYTES
}

/// Longest `kid` of `LIVESHOP_JWT_SECRETS`, in characters.
pub const MAX_KID_CHARS: usize = 64;

/// Secret text from the environment or a flag. Its `Debug` is redacted, so printing a [`Config`]
/// never shows a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(String);

impl SecretText {
    /// The secret itself, for building keys (never for a log line).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SecretText {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl std::str::FromStr for SecretText {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(text.into())
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a development secret is kept when `LIVESHOP_JWT_SECRET` is unset, so `liveshop serve` and
/// `liveshop token` agree without any setup.
pub const DEV_SECRET_FILE: &str = ".liveshop-dev-secret";

/// Deployment mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Human-readable logs, a generated secret when none is set, no HSTS.
    Dev,
    /// JSON logs, a strong secret required, HSTS.
    Production,
}

/// All settings of the engine.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to bind; port 0 picks a free port.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,
    /// `sqlite://...` (embedded default) or `postgres://...`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://liveshop.db?mode=rwc"
    )]
    pub database_url: String,
    /// Redis for cluster mode; unset runs a single node.
    #[arg(global = true, long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// This node's name in logs, metrics and `/v1/admin/cluster`; generated at start when unset.
    #[arg(global = true, long, env = "LIVESHOP_NODE_ID")]
    pub node_id: Option<String>,
    /// How long a stream owner's lease lasts without renewal (cluster mode), in milliseconds.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_OWNER_LEASE_MS",
        default_value_t = 3000
    )]
    pub owner_lease_ms: u64,
    /// HS256 secret for tokens.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_JWT_SECRET",
        hide_env_values = true
    )]
    pub jwt_secret: Option<SecretText>,
    /// Several HS256 secrets valid at once, for key rotation: `kid=secret,kid=secret,...`; the
    /// first signs. Not together with `LIVESHOP_JWT_SECRET`.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_JWT_SECRETS",
        hide_env_values = true
    )]
    pub jwt_secrets: Option<SecretText>,
    /// `dev` or `production`.
    #[arg(
        global = true,
        long = "env",
        env = "LIVESHOP_ENV",
        value_enum,
        default_value = "dev"
    )]
    pub mode: Mode,
    /// Comma-separated origins allowed to open WebSockets and to call the REST API from a browser
    /// (CORS); unset allows any origin for WebSockets, and for CORS any origin in development and
    /// none in production.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Option<Vec<String>>,
    /// `1` enables the operator fault-injection endpoints (development only: production refuses
    /// to start with it).
    #[arg(global = true, long, env = "LIVESHOP_ENABLE_FAULT_INJECTION", default_value = "0", value_parser = parse_flag)]
    pub fault_injection: bool,
    /// Separate address serving `/metrics` (e.g. `127.0.0.1:9090`); when set, the serving port
    /// answers 404 for `/metrics`. Unset serves it on the serving port.
    #[arg(global = true, long, env = "LIVESHOP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// Chat messages a user may burst per stream.
    #[arg(global = true, long, env = "LIVESHOP_CHAT_BURST", default_value_t = 20)]
    pub chat_burst: u32,
    /// Chat messages per second a user may sustain per stream.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_CHAT_PER_SEC",
        default_value_t = 5.0
    )]
    pub chat_per_sec: f64,
    /// Frames a connection may burst.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_FRAME_BURST",
        default_value_t = 100
    )]
    pub frame_burst: u32,
    /// Frames per second a connection may sustain.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_FRAMES_PER_SEC",
        default_value_t = 50.0
    )]
    pub frames_per_sec: f64,
    /// Streams one connection may join at once.
    #[arg(global = true, long, env = "LIVESHOP_MAX_JOINS", default_value_t = 20)]
    pub max_joins: usize,
    /// REST requests a caller may burst.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_HTTP_BURST",
        default_value_t = 200
    )]
    pub http_burst: u32,
    /// REST requests per second a caller may sustain.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_HTTP_PER_SEC",
        default_value_t = 100.0
    )]
    pub http_per_sec: f64,
    /// Writes a connection may have waiting for its socket (a write holds one or more frames)
    /// before it is closed as a slow consumer (4008).
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_BROADCAST_CAPACITY",
        default_value_t = 4096
    )]
    pub broadcast_capacity: usize,
    /// Milliseconds a closing WebSocket gets to hand its close frame to a client that is still
    /// reading (a slow consumer reads through what its socket holds first) and to answer it.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_CLOSE_GRACE_MS",
        default_value_t = 2000,
        value_parser = clap::value_parser!(u64).range(100..=60_000)
    )]
    pub close_grace_ms: u64,
    /// `0` writes each claim in its own transaction instead of group-committing (for comparison).
    #[arg(global = true, long, env = "LIVESHOP_GROUP_COMMIT", default_value = "1", value_parser = parse_flag)]
    pub group_commit: bool,
    /// Seconds between server pings.
    #[arg(global = true, long, env = "LIVESHOP_PING_SECS", default_value_t = 25)]
    pub ping_secs: u64,
    /// Seconds without any sign of life before a connection is closed.
    #[arg(global = true, long, env = "LIVESHOP_IDLE_SECS", default_value_t = 60)]
    pub idle_secs: u64,
    /// Seconds graceful drain waits for connections to close before exiting anyway.
    #[arg(global = true, long, env = "LIVESHOP_DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,
    /// Open WebSocket connections; past it an upgrade gets 503 before any WebSocket work.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_MAX_CONNECTIONS",
        default_value_t = 100_000
    )]
    pub max_connections: usize,
    /// WebSocket upgrades per second one client address may start (its burst too); 0 is no
    /// limit. Over it: 429 with `Retry-After`.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_UPGRADES_PER_IP_PER_SEC",
        default_value_t = 50.0
    )]
    pub upgrades_per_ip_per_sec: f64,
    /// TCP connections still speaking HTTP (not upgraded) at once; past it a new one is answered
    /// 503 and closed, so idle or slow clients cannot use up the process's descriptors.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_MAX_HTTP_CONNECTIONS",
        default_value_t = 10_000
    )]
    pub max_http_connections: usize,
    /// TCP connections still speaking HTTP from one client address at once; 0 is no limit.
    /// Past it a new one is answered 429 and closed.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_MAX_HTTP_CONNECTIONS_PER_IP",
        default_value_t = 1_000
    )]
    pub max_http_connections_per_ip: usize,
    /// Seconds a client has to send a whole request head, counted from the moment the server
    /// waits for one: on a new connection and after each answer on a kept-alive one. So it also
    /// bounds how long a kept-alive connection may sit idle before an upgrade.
    #[arg(
        global = true,
        long,
        env = "LIVESHOP_HEADER_READ_SECS",
        default_value_t = 10
    )]
    pub header_read_secs: u64,
}

fn parse_flag(text: &str) -> Result<bool, String> {
    match text.trim() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!("expected 0 or 1, got {other:?}")),
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Production needs a real secret.
    #[error(
        "LIVESHOP_JWT_SECRET must be set to at least {MIN_SECRET_BYTES} bytes, not only whitespace, with at least {MIN_SECRET_DISTINCT_BYTES} distinct bytes (e.g. `openssl rand -hex 32`), or LIVESHOP_JWT_SECRETS to kid=secret pairs of such secrets, when LIVESHOP_ENV=production"
    )]
    WeakSecret,
    /// Two sources of token secrets: which one counts would be a guess.
    #[error(
        "LIVESHOP_JWT_SECRET and LIVESHOP_JWT_SECRETS are both set: set only one (during a key rotation LIVESHOP_JWT_SECRETS=kid=secret,... holds every key, the old one included)"
    )]
    BothSecrets,
    /// An entry of `LIVESHOP_JWT_SECRETS` that is not `kid=secret`. It is named by its position,
    /// never by its text, which may be (part of) a secret.
    #[error(
        "LIVESHOP_JWT_SECRETS: entry {position} {problem}; each comma-separated entry is kid=secret, the kid 1 to {MAX_KID_CHARS} letters, digits, '-', '_' or '.'"
    )]
    SecretsEntry {
        /// 1-based position of the entry in the list.
        position: usize,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A `kid` given twice in `LIVESHOP_JWT_SECRETS`: a token naming it would be ambiguous.
    #[error("LIVESHOP_JWT_SECRETS: kid {0:?} is given more than once")]
    DuplicateKid(String),
    /// A `kid=` entry without a secret.
    #[error("LIVESHOP_JWT_SECRETS: the secret of kid {0:?} is empty")]
    EmptyNamedSecret(String),
    /// A named secret production refuses, as it refuses a weak `LIVESHOP_JWT_SECRET`.
    #[error(
        "LIVESHOP_JWT_SECRETS: the secret of kid {0:?} must be at least {MIN_SECRET_BYTES} bytes, not only whitespace, with at least {MIN_SECRET_DISTINCT_BYTES} distinct bytes (e.g. `openssl rand -hex 32`), when LIVESHOP_ENV=production"
    )]
    WeakNamedSecret(String),
    /// The fault-injection endpoints let an operator token crash actors: never in production.
    #[error(
        "LIVESHOP_ENABLE_FAULT_INJECTION is on, which production refuses: unset it (or set it to 0) when LIVESHOP_ENV=production"
    )]
    FaultInjectionInProduction,
    /// Cluster mode needs one database shared by every node.
    #[error(
        "REDIS_URL is set (cluster mode) but DATABASE_URL is not a postgres:// URL: the nodes of a cluster share one PostgreSQL database; unset REDIS_URL to run a single node on SQLite"
    )]
    ClusterOnSqlite,
    /// A lease outside what can be renewed in time or is useful.
    #[error("LIVESHOP_OWNER_LEASE_MS={0} is outside 300..=600000")]
    OwnerLease(u64),
    /// A node id that keys and logs cannot carry.
    #[error(
        "LIVESHOP_NODE_ID={0:?} must be 1 to 64 characters of letters, digits, '-', '_' or '.'"
    )]
    NodeId(String),
    /// The development secret file could not be read or written.
    #[error("cannot read or create the development secret file {DEV_SECRET_FILE}")]
    DevSecret(#[source] std::io::Error),
}

/// The token keys actually in use, and whether their secret was generated for development.
pub struct ResolvedKeys {
    /// Signing and verification keys.
    pub keys: Keys,
    /// True when no secret was configured and a development one is used.
    pub generated: bool,
}

impl std::fmt::Debug for ResolvedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedKeys")
            .field("kids", &self.keys.kids().collect::<Vec<_>>())
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Protocol limits derived from the settings.
    pub fn limits(&self) -> Limits {
        Limits {
            chat_burst: self.chat_burst,
            chat_per_sec: self.chat_per_sec,
            frame_burst: self.frame_burst,
            frames_per_sec: self.frames_per_sec,
            max_joins_per_connection: self.max_joins,
            ..Limits::default()
        }
    }

    /// Interval of server pings.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_secs.max(1))
    }

    /// Silence after which a connection is closed.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_secs.max(1))
    }

    /// Time a client has to send a request head (and a kept-alive connection may sit idle).
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_secs.max(1))
    }

    /// Refuses settings that must never reach production: fault injection. Called before
    /// anything is started.
    pub fn check_production(&self) -> Result<(), ConfigError> {
        if self.mode == Mode::Production && self.fault_injection {
            return Err(ConfigError::FaultInjectionInProduction);
        }
        self.check_cluster()
    }

    /// Refuses a cluster that cannot work: nodes share their database, which an embedded SQLite
    /// file cannot be; a lease too short to renew, or a node id Redis keys cannot carry.
    pub fn check_cluster(&self) -> Result<(), ConfigError> {
        if self.redis_url.is_none() {
            return Ok(());
        }
        if !self.database_url.starts_with("postgres") {
            return Err(ConfigError::ClusterOnSqlite);
        }
        if !(300..=600_000).contains(&self.owner_lease_ms) {
            return Err(ConfigError::OwnerLease(self.owner_lease_ms));
        }
        if let Some(id) = &self.node_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(ConfigError::NodeId(id.clone()));
        }
        Ok(())
    }

    /// This node's id: `LIVESHOP_NODE_ID`, or one generated at start.
    pub fn node_id(&self) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            let id = uuid::Uuid::new_v4().simple().to_string();
            format!("node-{}", &id[..12])
        })
    }

    /// The owner lease (cluster mode).
    pub fn owner_lease(&self) -> Duration {
        Duration::from_millis(self.owner_lease_ms)
    }

    /// The keys to sign and verify tokens with: the named secrets of `LIVESHOP_JWT_SECRETS`
    /// ([`parse_named_secrets`]), or the one `LIVESHOP_JWT_SECRET`; setting both is refused. An
    /// empty variable counts as unset. Production refuses a missing or weak secret
    /// ([`strong_secret`]); development without a secret uses (and creates once) a random one kept
    /// in [`DEV_SECRET_FILE`] in the working directory. No error message contains a secret.
    pub fn resolve_keys(&self) -> Result<ResolvedKeys, ConfigError> {
        let single = self.jwt_secret.as_ref().map(SecretText::expose);
        let named = self
            .jwt_secrets
            .as_ref()
            .map(SecretText::expose)
            .filter(|text| !text.trim().is_empty());
        if let Some(text) = named {
            if single.is_some_and(|s| !s.is_empty()) {
                return Err(ConfigError::BothSecrets);
            }
            let secrets = parse_named_secrets(text, self.mode)?;
            let keys =
                Keys::named(secrets.iter().map(|(kid, s)| (*kid, s.as_bytes()))).map_err(|e| {
                    match e {
                        KeysError::DuplicateKid(kid) => ConfigError::DuplicateKid(kid),
                        KeysError::Empty => ConfigError::SecretsEntry {
                            position: 1,
                            problem: "is empty",
                        },
                    }
                })?;
            return Ok(ResolvedKeys {
                keys,
                generated: false,
            });
        }
        let (bytes, generated) = match (single, self.mode) {
            (Some(s), Mode::Production) if strong_secret(s.as_bytes()) => {
                (s.as_bytes().to_vec(), false)
            }
            (_, Mode::Production) => return Err(ConfigError::WeakSecret),
            (Some(s), Mode::Dev) if !s.is_empty() => (s.as_bytes().to_vec(), false),
            (_, Mode::Dev) => (dev_secret(Path::new(DEV_SECRET_FILE))?, true),
        };
        Ok(ResolvedKeys {
            keys: Keys::new(&bytes),
            generated,
        })
    }
}

/// Splits `LIVESHOP_JWT_SECRETS` into `(kid, secret)` pairs, in order: comma-separated
/// `kid=secret` entries, split at the first `=` (a secret may contain `=`, not `,`), whitespace
/// around each kid and secret ignored. A kid is 1 to [`MAX_KID_CHARS`] letters, digits, `-`, `_`
/// or `.`; a secret is not empty, and in production [`strong_secret`]. Errors name the entry by its
/// position or its kid, never by its text.
pub fn parse_named_secrets(text: &str, mode: Mode) -> Result<Vec<(&str, &str)>, ConfigError> {
    let mut secrets = Vec::new();
    for (index, entry) in text.split(',').enumerate() {
        let wrong = |problem| ConfigError::SecretsEntry {
            position: index + 1,
            problem,
        };
        let entry = entry.trim();
        if entry.is_empty() {
            return Err(wrong("is empty"));
        }
        let (kid, secret) = entry.split_once('=').ok_or_else(|| wrong("has no '='"))?;
        let (kid, secret) = (kid.trim(), secret.trim());
        if kid.is_empty() {
            return Err(wrong("has an empty kid"));
        }
        if kid.chars().count() > MAX_KID_CHARS
            || !kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(wrong("has a kid that is too long or has other characters"));
        }
        if secret.is_empty() {
            return Err(ConfigError::EmptyNamedSecret(kid.to_owned()));
        }
        if mode == Mode::Production && !strong_secret(secret.as_bytes()) {
            return Err(ConfigError::WeakNamedSecret(kid.to_owned()));
        }
        secrets.push((kid, secret));
    }
    Ok(secrets)
}

fn dev_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= MIN_SECRET_BYTES => Ok(text.trim().as_bytes().to_vec()),
        _ => {
            let secret: String = (0..48)
                .map(|_| char::from(b"0123456789abcdef"[rand::random_range(0..16)]))
                .collect();
            write_private(path, &secret).map_err(ConfigError::DevSecret)?;
            Ok(secret.into_bytes())
        }
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Config {
        let mut all = vec!["liveshop"];
        all.extend_from_slice(args);
        Cli::parse_from(all).config
    }

    #[test]
    fn production_refuses_a_short_secret() {
        let c = parse(&["--env", "production", "--jwt-secret", "short"]);
        let err = c.resolve_keys().unwrap_err();
        assert!(err.to_string().contains("LIVESHOP_JWT_SECRET"));
    }

    #[test]
    fn production_refuses_a_missing_secret() {
        let c = parse(&["--env", "production"]);
        assert!(matches!(c.resolve_keys(), Err(ConfigError::WeakSecret)));
    }

    #[test]
    fn production_accepts_a_long_secret() {
        let c = parse(&[
            "--env",
            "production",
            "--jwt-secret",
            "3f9a1c07e2b84d5a9c6e0f1b2a3d4c5e",
        ]);
        assert!(!c.resolve_keys().unwrap().generated);
    }

    #[test]
    fn production_refuses_long_secrets_that_are_whitespace_or_repetitive() {
        for weak in [
            " ".repeat(32),
            "x".repeat(64),
            "ab".repeat(32),
            "\t \n".repeat(16),
        ] {
            let c = parse(&["--env", "production", "--jwt-secret", &weak]);
            assert!(
                matches!(c.resolve_keys(), Err(ConfigError::WeakSecret)),
                "{weak:?} was accepted"
            );
        }
        // Development takes what it is given.
        let c = parse(&["--env", "dev", "--jwt-secret", &"x".repeat(32)]);
        assert!(c.resolve_keys().is_ok());
    }

    #[test]
    fn production_refuses_fault_injection_and_development_allows_it() {
        let secret = "3f9a1c07e2b84d5a9c6e0f1b2a3d4c5e";
        let args = ["--jwt-secret", secret, "--fault-injection"];
        let prod = parse(&[&["--env", "production"][..], &args].concat());
        assert!(matches!(
            prod.check_production(),
            Err(ConfigError::FaultInjectionInProduction)
        ));
        let dev = parse(&[&["--env", "dev"][..], &args].concat());
        assert!(dev.check_production().is_ok());
    }

    #[test]
    fn the_generated_dev_secret_is_kept_and_reused() {
        let dir = std::env::temp_dir().join(format!("liveshop-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let first = dev_secret(&path).unwrap();
        assert!(first.len() >= MIN_SECRET_BYTES);
        assert_eq!(dev_secret(&path).unwrap(), first);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fault_injection_flag_accepts_0_and_1_only() {
        assert!(parse_flag("1").unwrap());
        assert!(!parse_flag("0").unwrap());
        assert!(parse_flag("maybe").is_err());
    }

    const NEW: &str = "3f9a1c07e2b84d5a9c6e0f1b2a3d4c5e";
    const OLD: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b";

    #[test]
    fn named_secrets_give_keys_in_order_the_first_signing() {
        let list = format!(" new = {NEW} ,old={OLD}");
        for mode in ["dev", "production"] {
            let c = parse(&["--env", mode, "--jwt-secrets", &list]);
            let resolved = c.resolve_keys().unwrap();
            assert!(!resolved.generated);
            assert_eq!(resolved.keys.signing_kid(), Some("new"));
            assert_eq!(resolved.keys.kids().collect::<Vec<_>>(), ["new", "old"]);
        }
        // A secret may contain '=' (base64 padding): the entry splits at the first one.
        let pairs = parse_named_secrets("k1=abc==,k2=x", Mode::Dev).unwrap();
        assert_eq!(pairs, [("k1", "abc=="), ("k2", "x")]);
        // An empty list is no list: the single secret (or the generated one) is used.
        let c = parse(&["--jwt-secret", NEW, "--jwt-secrets", " "]);
        assert_eq!(c.resolve_keys().unwrap().keys.signing_kid(), None);
    }

    #[test]
    fn both_secret_variables_are_refused() {
        let c = parse(&["--jwt-secret", NEW, "--jwt-secrets", &format!("a={OLD}")]);
        let err = c.resolve_keys().unwrap_err();
        assert!(matches!(err, ConfigError::BothSecrets));
        let text = err.to_string();
        assert!(
            text.contains("LIVESHOP_JWT_SECRET and LIVESHOP_JWT_SECRETS"),
            "{text}"
        );
    }

    /// The error for `list`, checked to name the variable and to show no secret.
    fn refusal(mode: &str, list: &str) -> String {
        let c = parse(&["--env", mode, "--jwt-secrets", list]);
        let text = c.resolve_keys().unwrap_err().to_string();
        assert!(text.contains("LIVESHOP_JWT_SECRETS"), "{text}");
        for secret in [NEW, OLD, "short-one", "spilled"] {
            assert!(!text.contains(secret), "{text}");
        }
        text
    }

    #[test]
    fn bad_named_secrets_are_refused_naming_the_entry_or_kid_but_no_secret() {
        let cases = [
            (format!("a={NEW},"), "entry 2 is empty"),
            (format!("a={NEW},spilled"), "entry 2 has no '='"),
            (format!("={NEW}"), "entry 1 has an empty kid"),
            (format!("a b={NEW}"), "entry 1 has a kid that is too long"),
            (format!("{}={NEW}", "k".repeat(65)), "entry 1 has a kid"),
            (format!("a={NEW},b= "), "the secret of kid \"b\" is empty"),
            (
                format!("a={NEW},b={OLD},a={OLD}"),
                "kid \"a\" is given more than once",
            ),
        ];
        for (list, expected) in cases {
            let text = refusal("dev", &list);
            assert!(text.contains(expected), "{list}: {text}");
        }
    }

    #[test]
    fn production_refuses_a_weak_named_secret_naming_its_kid() {
        for weak in ["short-one", &"x".repeat(40)] {
            let text = refusal("production", &format!("new={NEW},old={weak}"));
            assert!(text.contains("the secret of kid \"old\""), "{text}");
            assert!(text.contains("at least 32 bytes"), "{text}");
        }
        // Development takes what it is given.
        let c = parse(&["--env", "dev", "--jwt-secrets", "a=short-one"]);
        assert_eq!(c.resolve_keys().unwrap().keys.signing_kid(), Some("a"));
    }

    #[test]
    fn a_printed_config_shows_no_secret() {
        let c = parse(&["--jwt-secret", NEW, "--jwt-secrets", &format!("a={OLD}")]);
        let printed = format!("{c:?}");
        assert!(
            !printed.contains(NEW) && !printed.contains(OLD),
            "{printed}"
        );
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
