//! The `liveshop` command line and its configuration (contract v1, section 1), on SQLite and
//! Postgres: `migrate`, `token`, strict secrets in production, the generated development secret.

#[macro_use]
mod common;

use common::{Backend, EngineProcess, TempDir, TestApp, expect_error, expect_json, run_liveshop};
use liveshop_engine::TenantId;
use liveshop_engine::storage::TenantStore;
use liveshop_storage::SqlStore;
use liveshop_storage::testing::fresh;
use serde_json::json;

both! {
    migrate_applies_the_schema_and_exits,
    token_prints_a_token_the_server_accepts,
    production_refuses_a_missing_or_short_secret,
    production_responses_carry_hsts,
    dev_without_a_secret_generates_one_that_token_commands_share,
    allowed_origins_are_read_from_the_environment,
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn migrate_applies_the_schema_and_exits(backend: Backend) {
    let db = fresh(backend).await;
    let dir = TempDir::new("migrate");
    for _ in 0..2 {
        let output = run_liveshop(dir.path(), Some(db.url()), &[], &["migrate"]);
        assert!(output.status.success(), "{}", stderr(&output));
    }
    let store = SqlStore::connect(db.url()).await.expect("connect");
    let missing = store
        .tenant(&TenantId::from_trusted("nobody"))
        .await
        .expect("the tenants table exists");
    assert!(missing.is_none());
    store.close().await;
}

async fn token_prints_a_token_the_server_accepts(backend: Backend) {
    let app = TestApp::default(backend).await;
    let dir = TempDir::new("token");
    let output = run_liveshop(dir.path(), None, &[], &["token", "--role", "operator"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let operator = stdout(&output);
    let body = json!({ "slug": "from-cli", "name": "CLI" });
    let tenant = expect_json(app.post("/v1/tenants", &operator, &body).await, 201).await;
    let tenant = tenant["id"].as_str().unwrap();

    let args = [
        "token", "--role", "viewer", "--tenant", tenant, "--sub", "cli-user", "--name", "Cli",
        "--ttl", "600",
    ];
    let output = run_liveshop(dir.path(), None, &[], &args);
    assert!(output.status.success(), "{}", stderr(&output));
    let viewer = stdout(&output);
    assert_eq!(
        viewer.lines().count(),
        1,
        "stdout is the token alone: {viewer}"
    );
    expect_json(app.get("/v1/products", Some(&viewer)).await, 200).await;
    let mut client = app.ws_raw(&viewer, None).await.expect("upgrade");
    let welcome = client.next_json().await;
    assert_eq!(welcome["user"], "cli-user", "{welcome}");
    assert_eq!(welcome["tenant"], tenant, "{welcome}");

    // A tenant role without a tenant, or an unknown role: a clear error, no token.
    let output = run_liveshop(dir.path(), None, &[], &["token", "--role", "seller"]);
    assert!(!output.status.success());
    assert!(!stdout(&output).contains("eyJ"), "no token is printed");
    assert!(stderr(&output).contains("--tenant"), "{}", stderr(&output));
    let output = run_liveshop(dir.path(), None, &[], &["token", "--role", "root"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--role"), "{}", stderr(&output));

    // A token signed with another secret is refused by this server.
    let other = [(
        "LIVESHOP_JWT_SECRET",
        Some("another-secret-another-secret-another"),
    )];
    let output = run_liveshop(dir.path(), None, &other, &["token", "--role", "operator"]);
    let foreign = stdout(&output);
    expect_error(
        app.post("/v1/tenants", &foreign, &body).await,
        401,
        "unauthorized",
    )
    .await;
}

async fn production_refuses_a_missing_or_short_secret(backend: Backend) {
    let db = fresh(backend).await;
    let dir = TempDir::new("prod");
    for secret in [Some("too-short"), None] {
        let env = [
            ("LIVESHOP_ENV", Some("production")),
            ("LIVESHOP_JWT_SECRET", secret),
            ("LIVESHOP_LISTEN", Some("127.0.0.1:0")),
        ];
        let output = run_liveshop(dir.path(), Some(db.url()), &env, &["serve"]);
        assert!(!output.status.success(), "{secret:?} was accepted");
        let text = stderr(&output);
        assert!(text.contains("LIVESHOP_JWT_SECRET"), "{text}");
        assert!(!dir.path().join(".liveshop-dev-secret").exists());
    }
}

async fn production_responses_carry_hsts(backend: Backend) {
    let app = TestApp::spawn(backend, |c| {
        c.mode = liveshop_http::config::Mode::Production
    })
    .await;
    let response = app.get("/health", None).await;
    let hsts = response.headers()["strict-transport-security"]
        .to_str()
        .unwrap();
    assert!(hsts.contains("max-age="), "{hsts}");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
}

async fn dev_without_a_secret_generates_one_that_token_commands_share(backend: Backend) {
    let db = fresh(backend).await;
    let dir = TempDir::new("devsecret");
    let no_secret = [("LIVESHOP_JWT_SECRET", None)];
    let (mut server, addr) = EngineProcess::start_in(dir.path(), db.url(), &no_secret);
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains("WARN") && l.contains("LIVESHOP_JWT_SECRET")),
        "a warning is logged: {:#?}",
        server.seen
    );
    let output = run_liveshop(
        dir.path(),
        None,
        &no_secret,
        &["token", "--role", "operator"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let token = stdout(&output);
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/v1/tenants"))
        .bearer_auth(&token)
        .json(&json!({ "slug": "dev-shop", "name": "Dev" }))
        .send()
        .await
        .unwrap();
    expect_json(response, 201).await;
    // The test secret is not the one in use.
    let response = reqwest::Client::new()
        .get(format!("http://{addr}/v1/tenants/x"))
        .bearer_auth(common::operator())
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthorized").await;
    server.terminate();
    assert!(server.wait_exit().await.success());
}

async fn allowed_origins_are_read_from_the_environment(backend: Backend) {
    let db = fresh(backend).await;
    let env = [(
        "LIVESHOP_ALLOWED_ORIGINS",
        Some("https://a.example,https://b.example"),
    )];
    let (_server, addr) = EngineProcess::start(db.url(), &env);
    let token = common::operator();
    let url = format!("ws://{addr}/v1/ws?token={token}");
    for allowed in ["https://a.example", "https://b.example"] {
        let mut client = common::connect(&url, Some(allowed)).await.expect("allowed");
        assert_eq!(client.next_json().await["type"], "welcome");
    }
    let refused = common::connect(&url, Some("https://c.example")).await;
    assert_eq!(refused.err(), Some(reqwest::StatusCode::FORBIDDEN));
}
