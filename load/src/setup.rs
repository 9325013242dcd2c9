//! Creates what a run needs on the server (tenant, live stream) and hands out the tokens
//! to act in it, from `--secret` (minted) or from explicit tokens and ids.

use crate::auth::Minter;
use crate::cli::Common;
use anyhow::{Context as _, anyhow, bail};
use rand::Rng as _;
use serde_json::{Value, json};

/// A live stream to load, with the credentials to publish into it and to watch it.
pub struct Target {
    /// Tenant id, when known.
    pub tenant: Option<String>,
    /// Stream id.
    pub stream: String,
    /// Token of the seller that publishes chat.
    pub seller_token: String,
    viewers: ViewerTokens,
}

enum ViewerTokens {
    Minted { minter: Minter, tenant: String },
    Shared(String),
}

impl Target {
    /// Token for viewer number `i` (distinct users when minted).
    pub fn viewer_token(&self, i: usize) -> anyhow::Result<String> {
        match &self.viewers {
            ViewerTokens::Minted { minter, tenant } => {
                minter.token(&format!("load-viewer-{i}"), "viewer", Some(tenant))
            }
            ViewerTokens::Shared(token) => Ok(token.clone()),
        }
    }
}

/// Thin JSON client for the setup calls.
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for the engine at `base_url`.
    pub fn new(base_url: &str, timeout: std::time::Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("building HTTP client")?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_string(),
        })
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("POST {path}: bad JSON {text:?}"))
    }

    /// `GET path` with `token`; the JSON body of a 2xx answer.
    pub async fn get(&self, path: &str, token: &str) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("GET {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("GET {path}: bad JSON {text:?}"))
    }

    /// `POST /v1/products` as seller; returns the product id.
    pub async fn create_product(&self, seller_token: &str) -> anyhow::Result<String> {
        let suffix: u32 = rand::rng().random();
        let product = self
            .post(
                "/v1/products",
                seller_token,
                json!({
                    "sku": format!("load-{suffix:08x}"),
                    "title": "liveshop-load drop item",
                    "price_cents": 1999,
                    "currency": "EUR",
                }),
            )
            .await?;
        id_of(&product, "product")
    }

    /// `POST /v1/streams/{stream}/drops` as seller with `body`; returns the drop.
    pub async fn create_drop(
        &self,
        seller_token: &str,
        stream: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        self.post(&format!("/v1/streams/{stream}/drops"), seller_token, body)
            .await
    }

    /// `POST /v1/tenants` as operator; returns the tenant id.
    pub async fn create_tenant(&self, operator_token: &str) -> anyhow::Result<String> {
        let suffix: u32 = rand::rng().random();
        let slug = format!("load-{suffix:08x}");
        let tenant = self
            .post(
                "/v1/tenants",
                operator_token,
                json!({"slug": slug, "name": format!("liveshop-load {slug}")}),
            )
            .await?;
        id_of(&tenant, "tenant")
    }

    /// `POST /v1/streams` then `POST /v1/streams/{id}/start` as seller; returns the id.
    pub async fn create_live_stream(&self, seller_token: &str) -> anyhow::Result<String> {
        let stream = self
            .post(
                "/v1/streams",
                seller_token,
                json!({"title": "liveshop-load run"}),
            )
            .await?;
        let id = id_of(&stream, "stream")?;
        self.post(&format!("/v1/streams/{id}/start"), seller_token, json!({}))
            .await?;
        Ok(id)
    }
}

/// The `id` of a created object, as a string.
pub fn id_of(value: &Value, what: &str) -> anyhow::Result<String> {
    match value.get("id") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(anyhow!("{what} reply has no id: {value}")),
    }
}

/// The token minter of `--secret`, if given.
pub fn minter(common: &Common) -> Option<Minter> {
    common
        .secret
        .as_deref()
        .map(|s| Minter::new(s, common.token_ttl.as_secs()))
}

/// The operator token: `--token`, or minted from `--secret`.
pub fn operator_token(common: &Common) -> anyhow::Result<String> {
    if let Some(token) = &common.token {
        return Ok(token.clone());
    }
    minter(common)
        .ok_or_else(|| anyhow!("need --secret or --token (operator) to create a tenant"))?
        .token("liveshop-load", "operator", None)
}

/// The tenant to work in: `--tenant`, or a new one created as operator.
pub async fn tenant(common: &Common, api: &Api) -> anyhow::Result<String> {
    match &common.tenant {
        Some(t) => Ok(t.clone()),
        None => api.create_tenant(&operator_token(common)?).await,
    }
}

/// Resolves the stream and tokens of a WebSocket scenario, creating tenant and stream when
/// they are not given.
pub async fn prepare(common: &Common) -> anyhow::Result<Target> {
    let minter = minter(common);
    if let Some(stream) = &common.stream {
        let tenant = common.tenant.clone();
        let seller_token = match (&common.seller_token, &minter, &tenant) {
            (Some(t), _, _) => t.clone(),
            (None, Some(m), Some(tid)) => m.token("load-seller", "seller", Some(tid))?,
            _ => bail!("--stream needs --seller-token (or --secret with --tenant)"),
        };
        let viewers = match (&common.viewer_token, minter, tenant.clone()) {
            (Some(t), _, _) => ViewerTokens::Shared(t.clone()),
            (None, Some(minter), Some(tenant)) => ViewerTokens::Minted { minter, tenant },
            _ => bail!("--stream needs --viewer-token (or --secret with --tenant)"),
        };
        return Ok(Target {
            tenant,
            stream: stream.clone(),
            seller_token,
            viewers,
        });
    }
    let api = Api::new(&common.url, common.connect_timeout)?;
    let tenant = tenant(common, &api).await?;
    let seller_token = match (&common.seller_token, &minter) {
        (Some(t), _) => t.clone(),
        (None, Some(m)) => m.token("load-seller", "seller", Some(&tenant))?,
        (None, None) => bail!("need --secret or --seller-token to create a stream"),
    };
    let stream = api.create_live_stream(&seller_token).await?;
    let viewers = match (&common.viewer_token, minter) {
        (Some(t), _) => ViewerTokens::Shared(t.clone()),
        (None, Some(minter)) => ViewerTokens::Minted {
            minter,
            tenant: tenant.clone(),
        },
        (None, None) => bail!("need --secret or --viewer-token"),
    };
    Ok(Target {
        tenant: Some(tenant),
        stream,
        seller_token,
        viewers,
    })
}
