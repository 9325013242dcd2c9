//! The REST API of contract v1, sections 3.1 to 3.4, over real HTTP, on SQLite and Postgres.

#[macro_use]
mod common;

use common::{Backend, TestApp, expect_error, expect_json, operator};
use liveshop_engine::auth::Role;
use serde_json::json;

both! {
    health_answers_ok,
    ready_lists_its_checks,
    metrics_count_http_requests,
    operator_creates_a_tenant,
    a_taken_slug_is_a_conflict,
    a_bad_slug_is_a_bad_request_naming_the_field,
    malformed_json_is_a_bad_request,
    a_body_over_64_kib_is_too_large,
    a_tenant_is_visible_to_its_members_and_operators_only,
    sellers_create_and_everyone_lists_products,
    viewers_cannot_create_products,
    a_duplicate_sku_is_a_conflict,
    a_seller_creates_a_scheduled_stream,
    streams_are_listed_by_status,
    an_unknown_status_filter_is_a_bad_request,
    stream_viewers_count_joined_connections,
    a_stream_goes_live_once_and_ends_once,
    pinning_broadcasts_to_joined_clients,
    pinning_an_unknown_product_is_not_found,
    another_seller_cannot_run_someone_elses_stream,
    an_admin_may_run_any_stream_of_the_tenant,
    streams_of_other_tenants_are_not_found,
    unknown_routes_are_not_found_in_the_error_shape,
    a_malformed_query_or_path_is_a_bad_request_in_the_error_shape,
    a_wrong_method_is_answered_in_the_error_shape,
}

async fn health_answers_ok(backend: Backend) {
    let app = TestApp::default(backend).await;
    let body = expect_json(app.get("/health", None).await, 200).await;
    assert_eq!(body, json!({ "status": "ok" }));
}

async fn ready_lists_its_checks(backend: Backend) {
    let app = TestApp::default(backend).await;
    let body = expect_json(app.get("/ready", None).await, 200).await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");
}

/// Cluster mode needs Postgres (a node on SQLite refuses to start, see `startup.rs`).
#[tokio::test]
async fn ready_checks_redis_when_configured() {
    let backend = Backend::Postgres;
    let redis = std::env::var("LIVESHOP_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let app = TestApp::spawn(backend, |c| c.redis_url = Some(redis)).await;
    let body = expect_json(app.get("/ready", None).await, 200).await;
    assert_eq!(body["checks"]["redis"], "ok", "{body}");
    app.stop().await;
    // A Redis that does not answer makes the node unready, and says which check failed.
    let dead = TestApp::spawn(backend, |c| {
        c.redis_url = Some("redis://127.0.0.1:1".into())
    })
    .await;
    let body = expect_json(dead.get("/ready", None).await, 503).await;
    assert_eq!(body["checks"]["redis"], "down", "{body}");
    assert_eq!(body["checks"]["storage"], "ok", "{body}");
    dead.stop().await;
}

async fn metrics_count_http_requests(backend: Backend) {
    let app = TestApp::default(backend).await;
    expect_json(app.get("/health", None).await, 200).await;
    let response = app.get("/metrics", None).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    // The series exists from the start at 0; the request above must have counted.
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total{")
            && l.contains("route=\"/health\"")
            && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)),
        "{text}"
    );
    assert!(text.contains("http_request_duration_seconds"), "{text}");
    assert!(text.contains("websocket_connections_active"), "{text}");
}

async fn operator_creates_a_tenant(backend: Backend) {
    let app = TestApp::default(backend).await;
    let body = json!({ "slug": "acme-1", "name": "Acme" });
    let tenant = expect_json(app.post("/v1/tenants", &operator(), &body).await, 201).await;
    assert!(
        tenant["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{tenant}"
    );
    assert_eq!(tenant["slug"], "acme-1");
    assert_eq!(tenant["name"], "Acme");
    let created = tenant["created_at"].as_str().expect("created_at");
    assert!(created.ends_with('Z') && created.contains('T'), "{created}");

    let path = format!("/v1/tenants/{}", tenant["id"].as_str().unwrap());
    let again = expect_json(app.get(&path, Some(&operator())).await, 200).await;
    assert_eq!(again, tenant);
}

async fn a_taken_slug_is_a_conflict(backend: Backend) {
    let app = TestApp::default(backend).await;
    app.create_tenant("taken").await;
    let body = json!({ "slug": "taken", "name": "Other" });
    expect_error(
        app.post("/v1/tenants", &operator(), &body).await,
        409,
        "conflict",
    )
    .await;
}

async fn a_bad_slug_is_a_bad_request_naming_the_field(backend: Backend) {
    let app = TestApp::default(backend).await;
    for slug in ["Upper", "a", "with space", &"x".repeat(41)] {
        let body = json!({ "slug": slug, "name": "Shop" });
        let message = expect_error(
            app.post("/v1/tenants", &operator(), &body).await,
            400,
            "bad_request",
        )
        .await;
        assert!(message.contains("slug"), "{slug:?}: {message}");
    }
    let body = json!({ "slug": "fine", "name": "   " });
    let message = expect_error(
        app.post("/v1/tenants", &operator(), &body).await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.contains("name"), "{message}");
}

async fn malformed_json_is_a_bad_request(backend: Backend) {
    let app = TestApp::default(backend).await;
    for body in ["{not json", r#"{"slug":"ok"}"#, "[]"] {
        let response = app
            .http
            .post(app.url("/v1/tenants"))
            .bearer_auth(operator())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "bad_request").await;
    }
}

async fn a_body_over_64_kib_is_too_large(backend: Backend) {
    let app = TestApp::default(backend).await;
    let body = json!({ "slug": "big", "name": "x".repeat(70 * 1024) });
    expect_error(
        app.post("/v1/tenants", &operator(), &body).await,
        413,
        "too_large",
    )
    .await;
}

async fn a_tenant_is_visible_to_its_members_and_operators_only(backend: Backend) {
    let app = TestApp::default(backend).await;
    let a = app.shop("shop-a").await;
    let b = app.shop("shop-b").await;
    let path = format!("/v1/tenants/{}", a.tenant);
    for token in [&a.viewer, &a.seller, &a.admin, &operator()] {
        let tenant = expect_json(app.get(&path, Some(token)).await, 200).await;
        assert_eq!(tenant["id"], a.tenant.as_str());
        assert_eq!(tenant["slug"], "shop-a");
    }
    expect_error(app.get(&path, Some(&b.admin)).await, 404, "not_found").await;
    let missing = app
        .get("/v1/tenants/no-such-tenant", Some(&operator()))
        .await;
    expect_error(missing, 404, "not_found").await;
}

async fn sellers_create_and_everyone_lists_products(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("products").await;
    let body = json!({
        "sku": "TEE-1", "title": "Tee", "price_cents": 2500, "currency": "EUR",
        "image_url": "https://cdn.example/tee.png"
    });
    let product = expect_json(app.post("/v1/products", &shop.seller, &body).await, 201).await;
    assert!(product["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(product["sku"], "TEE-1");
    assert_eq!(product["title"], "Tee");
    assert_eq!(product["price_cents"], 2500);
    assert_eq!(product["currency"], "EUR");
    assert_eq!(product["image_url"], "https://cdn.example/tee.png");
    let by_admin = app.create_product(&shop.admin, "MUG-1").await;
    assert_eq!(by_admin["image_url"], serde_json::Value::Null);

    let list = expect_json(app.get("/v1/products", Some(&shop.viewer)).await, 200).await;
    let mut skus: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["sku"].as_str().unwrap())
        .collect();
    skus.sort_unstable();
    assert_eq!(skus, ["MUG-1", "TEE-1"]);

    let other = app.shop("other-products").await;
    let list = expect_json(app.get("/v1/products", Some(&other.viewer)).await, 200).await;
    assert_eq!(list["items"], json!([]));

    let bad = json!({ "sku": "X", "title": "X", "price_cents": 1, "currency": "eur" });
    let message = expect_error(
        app.post("/v1/products", &shop.seller, &bad).await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.contains("currency"), "{message}");
}

async fn viewers_cannot_create_products(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("viewers").await;
    let body = json!({ "sku": "A", "title": "A", "price_cents": 1, "currency": "EUR" });
    expect_error(
        app.post("/v1/products", &shop.viewer, &body).await,
        403,
        "forbidden",
    )
    .await;
    let moderator = shop.token(Role::Moderator, "mod-1");
    expect_error(
        app.post("/v1/products", &moderator, &body).await,
        403,
        "forbidden",
    )
    .await;
}

async fn a_duplicate_sku_is_a_conflict(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("dupes").await;
    app.create_product(&shop.seller, "SAME").await;
    let body = json!({ "sku": "SAME", "title": "Again", "price_cents": 1, "currency": "EUR" });
    expect_error(
        app.post("/v1/products", &shop.admin, &body).await,
        409,
        "conflict",
    )
    .await;
    // Another tenant may use the same sku.
    let other = app.shop("dupes-2").await;
    app.create_product(&other.seller, "SAME").await;
}

async fn a_seller_creates_a_scheduled_stream(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("streams").await;
    let body = json!({ "title": "Spring drop", "scheduled_at": "2030-01-02T03:04:05Z" });
    let stream = expect_json(app.post("/v1/streams", &shop.seller, &body).await, 201).await;
    assert!(stream["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(stream["tenant"], shop.tenant.as_str());
    assert_eq!(stream["seller"], "seller-1");
    assert_eq!(stream["title"], "Spring drop");
    assert_eq!(stream["status"], "scheduled");
    assert!(
        stream["scheduled_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("2030-01-02T03:04:05")),
        "{stream}"
    );
    assert_eq!(stream["started_at"], serde_json::Value::Null);
    assert_eq!(stream["ended_at"], serde_json::Value::Null);
    assert_eq!(stream["viewers"], 0);

    let path = format!("/v1/streams/{}", stream["id"].as_str().unwrap());
    let read = expect_json(app.get(&path, Some(&shop.viewer)).await, 200).await;
    assert_eq!(read, stream);

    expect_error(
        app.post("/v1/streams", &shop.viewer, &json!({ "title": "x" }))
            .await,
        403,
        "forbidden",
    )
    .await;
    let bad_time = json!({ "title": "x", "scheduled_at": "tomorrow" });
    let message = expect_error(
        app.post("/v1/streams", &shop.seller, &bad_time).await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.contains("scheduled_at"), "{message}");
}

async fn streams_are_listed_by_status(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("listing").await;
    let scheduled = app.create_stream(&shop.seller, "Later").await;
    let live = app.live_stream(&shop).await;
    let other = app.shop("listing-other").await;
    app.live_stream(&other).await;

    let ids = |body: &serde_json::Value| -> Vec<String> {
        body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = expect_json(app.get("/v1/streams", Some(&shop.viewer)).await, 200).await;
    let mut all_ids = ids(&all);
    all_ids.sort();
    let mut expected = vec![scheduled.clone(), live.clone()];
    expected.sort();
    assert_eq!(all_ids, expected);

    let lives = expect_json(
        app.get("/v1/streams?status=live", Some(&shop.viewer)).await,
        200,
    )
    .await;
    assert_eq!(ids(&lives), [live]);
    assert_eq!(lives["items"][0]["status"], "live");

    let sched = expect_json(
        app.get("/v1/streams?status=scheduled", Some(&shop.viewer))
            .await,
        200,
    )
    .await;
    assert_eq!(ids(&sched), [scheduled]);
}

async fn an_unknown_status_filter_is_a_bad_request(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("bad-status").await;
    let message = expect_error(
        app.get("/v1/streams?status=paused", Some(&shop.viewer))
            .await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.contains("status"), "{message}");
}

async fn stream_viewers_count_joined_connections(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("viewers-count").await;
    let stream = app.live_stream(&shop).await;
    let path = format!("/v1/streams/{stream}");
    let viewers = || async {
        expect_json(app.get(&path, Some(&shop.viewer)).await, 200).await["viewers"]
            .as_u64()
            .expect("viewers")
    };
    assert_eq!(viewers().await, 0);

    let mut a = app.ws(&shop.viewer).await;
    let mut b = app.ws(&shop.token(Role::Viewer, "viewer-2")).await;
    // A connection that has not joined does not count.
    let _idle = app.ws(&shop.token(Role::Viewer, "viewer-3")).await;
    a.join(&stream, None).await;
    b.join(&stream, None).await;
    assert_eq!(viewers().await, 2);
    let list = expect_json(
        app.get("/v1/streams?status=live", Some(&shop.viewer)).await,
        200,
    )
    .await;
    assert_eq!(list["items"][0]["viewers"], 2);

    a.send_json(&json!({ "op": "leave", "stream": stream, "ref": "bye" }))
        .await;
    let ok = a.expect_type("ok").await;
    assert_eq!(ok["ref"], "bye");
    common::eventually("a left", || async { viewers().await == 1 }).await;
    b.close().await;
    common::eventually("b disconnected", || async { viewers().await == 0 }).await;
}

async fn a_stream_goes_live_once_and_ends_once(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("lifecycle").await;
    let id = app.create_stream(&shop.seller, "Show").await;
    let start = format!("/v1/streams/{id}/start");
    let end = format!("/v1/streams/{id}/end");

    // Not live yet: it cannot end.
    expect_error(
        app.post(&end, &shop.seller, &json!({})).await,
        409,
        "invalid_state",
    )
    .await;

    let live = expect_json(app.post(&start, &shop.seller, &json!({})).await, 200).await;
    assert_eq!(live["status"], "live");
    assert!(live["started_at"].is_string(), "{live}");
    assert_eq!(live["ended_at"], serde_json::Value::Null);
    expect_error(
        app.post(&start, &shop.seller, &json!({})).await,
        409,
        "invalid_state",
    )
    .await;

    let ended = expect_json(app.post(&end, &shop.seller, &json!({})).await, 200).await;
    assert_eq!(ended["status"], "ended");
    assert!(ended["ended_at"].is_string(), "{ended}");
    expect_error(
        app.post(&end, &shop.seller, &json!({})).await,
        409,
        "invalid_state",
    )
    .await;
    expect_error(
        app.post(&start, &shop.seller, &json!({})).await,
        409,
        "invalid_state",
    )
    .await;

    let read = expect_json(
        app.get(&format!("/v1/streams/{id}"), Some(&shop.viewer))
            .await,
        200,
    )
    .await;
    assert_eq!(read["status"], "ended");
}

async fn pinning_broadcasts_to_joined_clients(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("pinning").await;
    let product = app.create_product(&shop.seller, "PIN-1").await;
    let product_id = product["id"].as_str().unwrap();
    let stream = app.live_stream(&shop).await;
    let mut viewer = app.ws(&shop.viewer).await;
    let joined = viewer.join(&stream, None).await;
    let seq = joined["seq"].as_u64().unwrap();

    let path = format!("/v1/streams/{stream}/pin");
    let pinned = expect_json(
        app.post(&path, &shop.seller, &json!({ "product": product_id }))
            .await,
        200,
    )
    .await;
    assert_eq!(pinned["id"], stream.as_str());

    let event = viewer.expect_type("event").await;
    assert_eq!(event["kind"], "pinned", "{event}");
    assert_eq!(event["stream"], stream.as_str());
    assert_eq!(event["seq"], seq + 1);
    assert_eq!(event["data"]["product"], product_id);

    // A later joiner sees the pin in its snapshot.
    let mut late = app.ws(&shop.token(Role::Viewer, "late")).await;
    let joined = late.join(&stream, None).await;
    assert_eq!(joined["snapshot"]["pinned"], product_id, "{joined}");
}

async fn pinning_an_unknown_product_is_not_found(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("pin-missing").await;
    let other = app.shop("pin-missing-other").await;
    let foreign = app.create_product(&other.seller, "THEIRS").await;
    let stream = app.live_stream(&shop).await;
    let path = format!("/v1/streams/{stream}/pin");
    let body = json!({ "product": "no-such-product" });
    expect_error(app.post(&path, &shop.seller, &body).await, 404, "not_found").await;
    let body = json!({ "product": foreign["id"] });
    expect_error(app.post(&path, &shop.seller, &body).await, 404, "not_found").await;
    let message = expect_error(
        app.post(&path, &shop.seller, &json!({})).await,
        400,
        "bad_request",
    )
    .await;
    assert!(message.contains("product"), "{message}");
}

async fn another_seller_cannot_run_someone_elses_stream(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("two-sellers").await;
    let product = app.create_product(&shop.seller, "P").await;
    let stream = app.create_stream(&shop.seller, "Mine").await;
    let rival = shop.token(Role::Seller, "seller-2");
    for action in ["start", "end"] {
        let path = format!("/v1/streams/{stream}/{action}");
        expect_error(app.post(&path, &rival, &json!({})).await, 403, "forbidden").await;
        expect_error(
            app.post(&path, &shop.viewer, &json!({})).await,
            403,
            "forbidden",
        )
        .await;
    }
    let pin = format!("/v1/streams/{stream}/pin");
    let body = json!({ "product": product["id"] });
    expect_error(app.post(&pin, &rival, &body).await, 403, "forbidden").await;
    // The rival can still read it.
    expect_json(
        app.get(&format!("/v1/streams/{stream}"), Some(&rival))
            .await,
        200,
    )
    .await;
}

async fn an_admin_may_run_any_stream_of_the_tenant(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("admin-runs").await;
    let product = app.create_product(&shop.seller, "P").await;
    let stream = app.create_stream(&shop.seller, "Seller's show").await;
    let live = app.start_stream(&shop.admin, &stream).await;
    assert_eq!(live["status"], "live");
    assert_eq!(live["seller"], "seller-1");
    let pin = format!("/v1/streams/{stream}/pin");
    expect_json(
        app.post(&pin, &shop.admin, &json!({ "product": product["id"] }))
            .await,
        200,
    )
    .await;
    let end = format!("/v1/streams/{stream}/end");
    let ended = expect_json(app.post(&end, &shop.admin, &json!({})).await, 200).await;
    assert_eq!(ended["status"], "ended");
}

async fn streams_of_other_tenants_are_not_found(backend: Backend) {
    let app = TestApp::default(backend).await;
    let mine = app.shop("mine").await;
    let theirs = app.shop("theirs").await;
    let product = app.create_product(&theirs.seller, "P").await;
    let stream = app.create_stream(&theirs.seller, "Theirs").await;
    let path = format!("/v1/streams/{stream}");
    for token in [&mine.viewer, &mine.seller, &mine.admin] {
        expect_error(app.get(&path, Some(token)).await, 404, "not_found").await;
        for action in ["start", "end"] {
            let p = format!("{path}/{action}");
            expect_error(app.post(&p, token, &json!({})).await, 404, "not_found").await;
        }
        let p = format!("{path}/pin");
        let body = json!({ "product": product["id"] });
        expect_error(app.post(&p, token, &body).await, 404, "not_found").await;
    }
    expect_error(
        app.get("/v1/streams/nope", Some(&mine.viewer)).await,
        404,
        "not_found",
    )
    .await;
    // Operators read every tenant.
    expect_json(app.get(&path, Some(&operator())).await, 200).await;
}

async fn unknown_routes_are_not_found_in_the_error_shape(backend: Backend) {
    let app = TestApp::default(backend).await;
    expect_error(app.get("/v1/nothing-here", None).await, 404, "not_found").await;
}

async fn a_malformed_query_or_path_is_a_bad_request_in_the_error_shape(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("malformed-query").await;
    let response = app
        .get("/v1/streams?status=live&status=ended", Some(&shop.viewer))
        .await;
    let message = expect_error(response, 400, "bad_request").await;
    assert!(message.contains("status"), "{message}");
    // A path segment that is not UTF-8 once decoded.
    let response = app.get("/v1/streams/%FF%FE", Some(&shop.viewer)).await;
    expect_error(response, 400, "bad_request").await;
    let response = app.get("/v1/tenants/%FF", Some(&operator())).await;
    expect_error(response, 400, "bad_request").await;
}

async fn a_wrong_method_is_answered_in_the_error_shape(backend: Backend) {
    let app = TestApp::default(backend).await;
    let shop = app.shop("wrong-method").await;
    let response = app
        .http
        .put(app.url("/v1/products"))
        .bearer_auth(&shop.seller)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let text = response.text().await.unwrap();
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("405 body is not the contract's error JSON ({e}): {text:?}"));
    assert!(body["error"]["code"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}
