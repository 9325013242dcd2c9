//! Rotating the token signing key with `LIVESHOP_JWT_SECRETS` (contract v1, section 10), with the
//! real binary: the procedure of docs/OPERATIONS.md ("Rotate signing keys") step by step, each step
//! a restarted `liveshop serve` whose tokens come from `liveshop token`; and `liveshop token --kid`.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{EngineProcess, TempDir, run_liveshop};
use liveshop_storage::testing::fresh;
use serde_json::Value;
use std::net::SocketAddr;

const OLD: &str = "old-rotation-secret-0123456789-abcdefgh";
const NEW: &str = "new-rotation-secret-9876543210-zyxwvuts";

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The environment of one step: `LIVESHOP_JWT_SECRETS=list`, or `LIVESHOP_JWT_SECRET` alone.
#[derive(Clone, Copy)]
enum Secrets<'a> {
    Single(&'a str),
    Named(&'a str),
}

impl Secrets<'_> {
    fn env(self) -> [(&'static str, Option<String>); 2] {
        match self {
            Self::Single(secret) => [
                ("LIVESHOP_JWT_SECRET", Some(secret.to_owned())),
                ("LIVESHOP_JWT_SECRETS", None),
            ],
            Self::Named(list) => [
                ("LIVESHOP_JWT_SECRET", None),
                ("LIVESHOP_JWT_SECRETS", Some(list.to_owned())),
            ],
        }
    }
}

fn with_env<T>(secrets: Secrets<'_>, run: impl FnOnce(&[(&str, Option<&str>)]) -> T) -> T {
    let owned = secrets.env();
    let env: Vec<(&str, Option<&str>)> = owned
        .iter()
        .map(|(name, value)| (*name, value.as_deref()))
        .collect();
    run(&env)
}

/// `liveshop token --role operator [args]` under `secrets`: the token, or what the failure printed
/// (its log line on stdout and its error on stderr).
fn mint(dir: &TempDir, secrets: Secrets<'_>, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["token", "--role", "operator"];
    all.extend_from_slice(args);
    let output = with_env(secrets, |env| run_liveshop(dir.path(), None, env, &all));
    if output.status.success() {
        Ok(stdout(&output))
    } else {
        let printed = format!("{}\n{}", stdout(&output), stderr(&output));
        assert!(!printed.contains("eyJ"), "no token on failure: {printed}");
        Err(printed)
    }
}

/// The `kid` in a token's header, if any.
fn kid_of(token: &str) -> Option<String> {
    let header = token.split('.').next().expect("a JWT has a header");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("base64url"))
        .expect("the header is JSON");
    assert_eq!(header["alg"], "HS256", "{header}");
    header["kid"].as_str().map(str::to_owned)
}

/// The status of an authenticated request, and the error message on 401.
async fn answer(addr: SocketAddr, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/v1/tenants/none"))
        .bearer_auth(token)
        .send()
        .await
        .expect("answered");
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON body");
    let message = body["error"]["message"].as_str().unwrap_or("").to_owned();
    (status, message)
}

/// Asserts the server at `addr` takes `token` (404 for the missing tenant: past authentication).
async fn accepted(addr: SocketAddr, token: &str, what: &str) {
    let (status, message) = answer(addr, token).await;
    assert_eq!(status, 404, "{what} was refused: {message}");
}

/// Asserts the server at `addr` refuses `token` with 401 and `expected`.
async fn refused(addr: SocketAddr, token: &str, what: &str, expected: &str) {
    assert_eq!(
        answer(addr, token).await,
        (401, expected.to_owned()),
        "{what}"
    );
}

/// Starts `liveshop serve` under `secrets` on `db` and checks its log names the keys, never a
/// secret.
fn serve(db: &str, secrets: Secrets<'_>) -> (EngineProcess, SocketAddr) {
    let (mut server, addr) = with_env(secrets, |env| EngineProcess::start(db, env));
    let lines = server.lines_so_far();
    for secret in [OLD, NEW] {
        assert!(
            lines.iter().all(|l| !l.contains(secret)),
            "a secret reached the log: {lines:#?}"
        );
    }
    if let Secrets::Named(_) = secrets {
        assert!(
            lines.iter().any(|l| l.contains("signing_kid")),
            "the keys in use are logged: {lines:#?}"
        );
    }
    (server, addr)
}

#[tokio::test]
async fn rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() {
    let db = fresh(common::Backend::Sqlite).await;
    let dir = TempDir::new("rotation");

    // Before: one LIVESHOP_JWT_SECRET; its tokens have no kid.
    let before = Secrets::Single(OLD);
    let legacy = mint(&dir, before, &[]).expect("a token");
    assert_eq!(kid_of(&legacy), None);

    // Step 0: the same secret, named (LIVESHOP_JWT_SECRETS=old=...): tokens without kid still pass.
    let named = format!("old={OLD}");
    let step0 = Secrets::Named(&named);
    let (server, addr) = serve(db.url(), step0);
    accepted(addr, &legacy, "a token of LIVESHOP_JWT_SECRET").await;
    let old = mint(&dir, step0, &[]).expect("a token");
    assert_eq!(kid_of(&old).as_deref(), Some("old"));
    accepted(addr, &old, "a token of kid old").await;
    drop(server);

    // Step 1: the new key added second, deployed everywhere; the old key still signs.
    let list = format!("old={OLD},new={NEW}");
    let step1 = Secrets::Named(&list);
    let (server, addr) = serve(db.url(), step1);
    assert_eq!(
        kid_of(&mint(&dir, step1, &[]).expect("a token")).as_deref(),
        Some("old")
    );
    let early_new = mint(&dir, step1, &["--kid", "new"]).expect("a token");
    for (token, what) in [
        (&legacy, "legacy"),
        (&old, "old"),
        (&early_new, "new, before it signs"),
    ] {
        accepted(addr, token, what).await;
    }
    drop(server);

    // Step 2: the new key first: it signs; tokens of the old key are still valid.
    let list = format!("new={NEW},old={OLD}");
    let step2 = Secrets::Named(&list);
    let (server, addr) = serve(db.url(), step2);
    let new = mint(&dir, step2, &[]).expect("a token");
    assert_eq!(kid_of(&new).as_deref(), Some("new"));
    for (token, what) in [(&legacy, "legacy"), (&old, "old"), (&new, "new")] {
        accepted(addr, token, what).await;
    }
    drop(server);

    // Step 3: after the longest token lifetime, the old key is removed: its tokens are refused.
    let list = format!("new={NEW}");
    let step3 = Secrets::Named(&list);
    let (server, addr) = serve(db.url(), step3);
    accepted(addr, &new, "new").await;
    refused(addr, &old, "old", "token kid is unknown").await;
    refused(addr, &legacy, "legacy", "token signature is invalid").await;
    assert_eq!(
        mint(&dir, step3, &["--kid", "old"])
            .err()
            .map(|e| e.contains("\"old\"")),
        Some(true),
        "the removed key signs nothing"
    );
    drop(server);
}

#[test]
fn token_kid_signs_with_the_named_key_and_refuses_an_unknown_one() {
    let dir = TempDir::new("token-kid");
    let list = format!("new={NEW},old={OLD}");
    let two = Secrets::Named(&list);
    let default = mint(&dir, two, &[]).expect("a token");
    assert_eq!(kid_of(&default).as_deref(), Some("new"));
    let token = mint(&dir, two, &["--kid", "old"]).expect("a token");
    assert_eq!(kid_of(&token).as_deref(), Some("old"));
    // Signed with the old secret: that key alone verifies it.
    let old = liveshop_http::auth::Keys::new(OLD.as_bytes());
    let new = liveshop_http::auth::Keys::new(NEW.as_bytes());
    assert!(old.verify(&token).is_ok());
    assert!(new.verify(&token).is_err());

    let error = mint(&dir, two, &["--kid", "older"]).expect_err("an unknown kid fails");
    assert!(error.contains("\"older\""), "{error}");
    assert!(
        error.contains("new, old"),
        "the known kids are listed: {error}"
    );
    assert!(
        !error.contains(OLD) && !error.contains(NEW),
        "no secret: {error}"
    );
    let error = mint(&dir, Secrets::Single(OLD), &["--kid", "old"]).expect_err("no kids");
    assert!(error.contains("LIVESHOP_JWT_SECRETS"), "{error}");
}
