//! What the real binary refuses before serving: fault injection and weak secrets in production,
//! both token secret variables at once or a malformed `LIVESHOP_JWT_SECRETS`,
//! a cluster on SQLite or with a bad lease or node id, and token lifetimes that would wrap.

mod common;

use common::{EngineProcess, TempDir, run_liveshop};
use liveshop_storage::testing::fresh;

const STRONG: &str = "3f9a1c07e2b84d5a9c6e0f1b2a3d4c5e6f708192";

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn production_refuses_fault_injection_and_development_warns() {
    let db = fresh(common::Backend::Sqlite).await;
    let dir = TempDir::new("faults");
    for on in ["1", "yes", "true"] {
        let env = [
            ("LIVESHOP_ENV", Some("production")),
            ("LIVESHOP_JWT_SECRET", Some(STRONG)),
            ("LIVESHOP_LISTEN", Some("127.0.0.1:0")),
            ("LIVESHOP_ENABLE_FAULT_INJECTION", Some(on)),
        ];
        let output = run_liveshop(dir.path(), Some(db.url()), &env, &["serve"]);
        assert!(
            !output.status.success(),
            "production started with fault injection {on}"
        );
        let text = stderr(&output);
        assert!(text.contains("LIVESHOP_ENABLE_FAULT_INJECTION"), "{text}");
    }
    let (server, _addr) =
        EngineProcess::start(db.url(), &[("LIVESHOP_ENABLE_FAULT_INJECTION", Some("1"))]);
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains("WARN") && l.contains("LIVESHOP_ENABLE_FAULT_INJECTION")),
        "development warns: {:#?}",
        server.seen
    );
}

#[tokio::test]
async fn cluster_mode_refuses_sqlite_naming_both_variables_and_bad_cluster_settings() {
    let db = fresh(common::Backend::Sqlite).await;
    let dir = TempDir::new("cluster-sqlite");
    let redis = [
        ("REDIS_URL", Some("redis://127.0.0.1:6379")),
        ("LIVESHOP_LISTEN", Some("127.0.0.1:0")),
    ];
    let output = run_liveshop(dir.path(), Some(db.url()), &redis, &["serve"]);
    assert!(!output.status.success(), "a cluster node started on SQLite");
    let text = stderr(&output);
    assert!(
        text.contains("REDIS_URL") && text.contains("DATABASE_URL"),
        "{text}"
    );
    let pg = fresh(common::Backend::Postgres).await;
    for (name, value) in [
        ("LIVESHOP_OWNER_LEASE_MS", "10"),
        ("LIVESHOP_NODE_ID", "node one"),
    ] {
        let env = [redis[0], redis[1], (name, Some(value))];
        let output = run_liveshop(dir.path(), Some(pg.url()), &env, &["serve"]);
        assert!(!output.status.success(), "{name}={value} was accepted");
        assert!(stderr(&output).contains(name), "{}", stderr(&output));
    }
}

#[tokio::test]
async fn production_refuses_a_secret_of_spaces_or_one_repeated_character() {
    let db = fresh(common::Backend::Sqlite).await;
    let dir = TempDir::new("weak");
    for weak in [" ".repeat(32), "a".repeat(48)] {
        let env = [
            ("LIVESHOP_ENV", Some("production")),
            ("LIVESHOP_JWT_SECRET", Some(weak.as_str())),
            ("LIVESHOP_LISTEN", Some("127.0.0.1:0")),
        ];
        let output = run_liveshop(dir.path(), Some(db.url()), &env, &["serve"]);
        assert!(!output.status.success(), "{weak:?} was accepted");
        assert!(
            stderr(&output).contains("LIVESHOP_JWT_SECRET"),
            "{}",
            stderr(&output)
        );
    }
}

#[test]
fn token_refuses_a_ttl_that_would_wrap_or_is_zero() {
    let dir = TempDir::new("ttl");
    for ttl in ["18446744073709551615", "0"] {
        let output = run_liveshop(
            dir.path(),
            None,
            &[],
            &["token", "--role", "operator", "--ttl", ttl],
        );
        assert!(!output.status.success(), "--ttl {ttl} was accepted");
        assert!(
            output.stdout.is_empty(),
            "no token is printed for --ttl {ttl}"
        );
        assert!(stderr(&output).contains("--ttl"), "{}", stderr(&output));
    }
    let output = run_liveshop(
        dir.path(),
        None,
        &[],
        &["token", "--role", "operator", "--ttl", "31622400"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test]
async fn both_secret_variables_are_refused_at_start() {
    let db = fresh(common::Backend::Sqlite).await;
    let dir = TempDir::new("both-secrets");
    let named = format!("new={STRONG}");
    for mode in ["dev", "production"] {
        let env = [
            ("LIVESHOP_ENV", Some(mode)),
            ("LIVESHOP_JWT_SECRET", Some(STRONG)),
            ("LIVESHOP_JWT_SECRETS", Some(named.as_str())),
            ("LIVESHOP_LISTEN", Some("127.0.0.1:0")),
        ];
        let output = run_liveshop(dir.path(), Some(db.url()), &env, &["serve"]);
        assert!(!output.status.success(), "{mode} started with both");
        let text = stderr(&output);
        assert!(
            text.contains("LIVESHOP_JWT_SECRET and LIVESHOP_JWT_SECRETS are both set"),
            "{text}"
        );
        assert!(!text.contains(STRONG), "no secret: {text}");
    }
}

#[tokio::test]
async fn bad_jwt_secrets_are_refused_at_start_naming_the_kid_or_entry_never_the_secret() {
    let db = fresh(common::Backend::Sqlite).await;
    let dir = TempDir::new("bad-secrets");
    let weak = "weak-secret";
    let cases = [
        (
            format!("new={STRONG},old={weak}"),
            "the secret of kid \"old\"",
        ),
        (
            format!("new={STRONG},new={STRONG}"),
            "kid \"new\" is given more than once",
        ),
        (format!("new={STRONG},{weak}"), "entry 2 has no '='"),
        (format!("={STRONG}"), "entry 1 has an empty kid"),
    ];
    for (list, expected) in cases {
        let env = [
            ("LIVESHOP_ENV", Some("production")),
            ("LIVESHOP_JWT_SECRET", None),
            ("LIVESHOP_JWT_SECRETS", Some(list.as_str())),
            ("LIVESHOP_LISTEN", Some("127.0.0.1:0")),
        ];
        let output = run_liveshop(dir.path(), Some(db.url()), &env, &["serve"]);
        assert!(!output.status.success(), "{expected}: the engine started");
        let text = stderr(&output);
        assert!(text.contains("LIVESHOP_JWT_SECRETS"), "{text}");
        assert!(text.contains(expected), "{text}");
        assert!(
            !text.contains(STRONG) && !text.contains(weak),
            "no secret: {text}"
        );
    }
}
