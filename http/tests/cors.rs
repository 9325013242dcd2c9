//! CORS on the REST API: a console on another origin can call it, an unlisted origin cannot read
//! the answers, and the defaults differ between development and production.

mod common;

use common::{Backend, TestApp};
use liveshop_http::config::Mode;
use reqwest::Method;

const CONSOLE: &str = "https://console.example";

async fn with_origins(origins: Option<&[&str]>, mode: Mode) -> TestApp {
    let origins = origins.map(|o| o.iter().map(|s| (*s).to_owned()).collect());
    TestApp::spawn(Backend::Sqlite, move |c| {
        c.allowed_origins = origins;
        c.mode = mode;
    })
    .await
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.http
        .request(Method::OPTIONS, app.url("/v1/products"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type, x-request-id",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_preflight_from_a_listed_origin_is_answered_with_what_the_api_accepts() {
    let app = with_origins(Some(&[CONSOLE, "https://other.example"]), Mode::Dev).await;
    let response = preflight(&app, CONSOLE).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some(CONSOLE)
    );
    let methods = header(&response, "access-control-allow-methods")
        .unwrap()
        .to_lowercase();
    assert!(
        methods.contains("get") && methods.contains("post"),
        "{methods}"
    );
    let headers = header(&response, "access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    for h in ["authorization", "content-type", "x-request-id"] {
        assert!(headers.contains(h), "{h} not allowed: {headers}");
    }
    assert_eq!(header(&response, "access-control-max-age"), Some("600"));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);

    let unlisted = preflight(&app, "https://evil.example").await;
    assert_eq!(header(&unlisted, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn real_calls_carry_the_origin_only_for_a_listed_one() {
    let app = with_origins(Some(&[CONSOLE]), Mode::Dev).await;
    let shop = app.shop("cors-shop").await;
    let listed = app
        .http
        .get(app.url("/v1/streams"))
        .bearer_auth(&shop.seller)
        .header("origin", CONSOLE)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        header(&listed, "access-control-allow-origin"),
        Some(CONSOLE)
    );
    let exposed = header(&listed, "access-control-expose-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("retry-after") && exposed.contains("x-request-id"),
        "{exposed}"
    );

    let unlisted = app
        .http
        .get(app.url("/v1/streams"))
        .bearer_auth(&shop.seller)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&unlisted, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn unset_origins_allow_any_in_development_and_none_in_production() {
    let dev = with_origins(None, Mode::Dev).await;
    let response = preflight(&dev, "https://anywhere.example").await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));

    let prod = with_origins(None, Mode::Production).await;
    let response = prod
        .http
        .get(prod.url("/health"))
        .header("origin", "https://anywhere.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}
