//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of every REST endpoint (contract section 10).
//!
//! The document is generated from the code, so it cannot drift from it: each handler carries a
//! `#[utoipa::path]` next to its code (method, path, parameters, body, answers), the bodies
//! derive their schemas beside their `Deserialize`, and the records derive theirs in
//! `liveshop-engine` (feature `openapi`), from the same serde attributes the wire uses.
//! [`ApiDoc`] lists the handlers; [`conventions`] then applies, from one place, what holds for
//! every endpoint alike:
//!
//! - every error answer has the error body, its `code` limited to the codes the answer's
//!   description names in backticks (checked against [`ErrorCode::http_status`]);
//! - what any authenticated request, any JSON body and any path parameter can be refused with
//!   (401, 403 `banned`, 429 with `Retry-After`, 503, 400, 413), and 500 everywhere;
//! - the security schemes, and operation ids unique across the document.
//!
//! The document is built once, on the first request, and served from memory. A test compares
//! its operations with every `.route(…)` of this crate's sources, so a route added without
//! documentation fails the build's tests; `scripts/api-check` runs schemathesis against a live
//! engine to check that the answers match it.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use liveshop_engine::moderation::{Ban, ModerationEntry};
use liveshop_engine::records::{Claim, Product, Stream};
use liveshop_engine::{DropId, ErrorCode, SessionId, StreamId, Timestamp};
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use crate::pages::{dev, stats};
use crate::routes::{admin, drops, moderation, ops, products, streams, tenants};
use crate::ws::gateway;

/// The handlers the document describes, and its description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Liveshop",
        description = "The REST API of the Liveshop engine. Bodies are JSON; ids are opaque strings; \
            times are RFC 3339 in UTC; money is integer minor units with an ISO 4217 currency. \
            Every error answer has the body `{\"error\":{\"code\",\"message\"}}`. The WebSocket \
            protocol behind `GET /v1/ws` is in docs/PROTOCOL.md; the pages, the SDK and their \
            assets (`/`, `/watch/{stream}`, `/studio`, `/ops`, `/sdk/liveshop.js`, `/assets/…`, \
            `/favicon.ico`) are in docs/PAGES.md. Before any route, a connection over the \
            server's limits gets 503 or 429, and a request the HTTP parser cannot read 400, 414 \
            or 431 (docs/API.md, rate limits).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        document,
        ops::health,
        ops::ready,
        ops::metrics,
        tenants::create,
        tenants::get,
        products::create,
        products::list,
        streams::create,
        streams::list,
        streams::get,
        streams::start,
        streams::end,
        streams::pin,
        drops::open,
        drops::get,
        drops::close,
        drops::claim,
        drops::my_claims,
        moderation::delete_message,
        moderation::mute,
        moderation::get_settings,
        moderation::patch_settings,
        moderation::log,
        moderation::ban,
        moderation::list_bans,
        moderation::unban,
        admin::pay_claim,
        admin::actors,
        admin::cluster,
        stats::stats,
        admin::crash_stream,
        admin::crash_drop,
        admin::crash_session,
        admin::crash_persister,
        dev::info,
        dev::token,
        gateway::upgrade,
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCodeName)),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics and this document; no token"),
        (name = "tenants", description = "Shops on the platform (contract 3.2)"),
        (name = "products", description = "A tenant's catalogue (contract 3.3)"),
        (name = "streams", description = "Shows (contract 3.4)"),
        (name = "drops", description = "Drops and claims (contract 3.5)"),
        (name = "moderation", description = "Chat moderation and bans (contract section 8)"),
        (name = "operator", description = "Platform operators' endpoints"),
        (name = "faults", description = "Fault injection (contract 3.6): routed only with LIVESHOP_ENABLE_FAULT_INJECTION=1, else 404"),
        (name = "development", description = "Dev mode only (LIVESHOP_ENV=dev), else 404"),
        (name = "websocket", description = "The WebSocket upgrade (docs/PROTOCOL.md)"),
    ),
)]
pub struct ApiDoc;

/// The document as served, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| build().to_string());

/// The document with the conventions applied, as JSON.
pub fn build() -> Value {
    // `OpenApi` serializes to JSON without fail: its maps have string keys.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    conventions(&mut doc);
    doc
}

/// The served text of the document (what `GET /v1/openapi.json` answers).
pub fn document_text() -> &'static str {
    &DOCUMENT
}

/// Serves the OpenAPI document; no token needed.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = Object)),
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_text(),
    )
}

// ---- the error body --------------------------------------------------------------------------

/// The body of every error answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of an error body.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// For machines: one of the stable codes.
    pub code: ErrorCodeName,
    /// For people; names the field of a `bad_request`, never internals.
    pub message: String,
}

/// A stable error code; each answer's schema narrows it to the codes that answer can carry.
pub struct ErrorCodeName;

impl utoipa::PartialSchema for ErrorCodeName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ALL_CODES.iter().map(|c| c.as_str())))
            .description(Some("A stable error code; clients branch on it"))
            .into()
    }
}

impl ToSchema for ErrorCodeName {
    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }
}

/// Every error code. [`code_index`] is an exhaustive match, so a new code fails to compile
/// until it is listed there, and the check below it fails to compile until it is listed here.
const ALL_CODES: [ErrorCode; 19] = [
    ErrorCode::BadRequest,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::NotFound,
    ErrorCode::Conflict,
    ErrorCode::InvalidState,
    ErrorCode::SoldOut,
    ErrorCode::LimitExceeded,
    ErrorCode::DropClosed,
    ErrorCode::TooLarge,
    ErrorCode::RateLimited,
    ErrorCode::Unavailable,
    ErrorCode::Internal,
    ErrorCode::BadFrame,
    ErrorCode::NotJoined,
    ErrorCode::MethodNotAllowed,
    ErrorCode::Muted,
    ErrorCode::Blocked,
    ErrorCode::Banned,
];

/// The place of `code` in [`ALL_CODES`].
const fn code_index(code: ErrorCode) -> usize {
    match code {
        ErrorCode::BadRequest => 0,
        ErrorCode::Unauthorized => 1,
        ErrorCode::Forbidden => 2,
        ErrorCode::NotFound => 3,
        ErrorCode::Conflict => 4,
        ErrorCode::InvalidState => 5,
        ErrorCode::SoldOut => 6,
        ErrorCode::LimitExceeded => 7,
        ErrorCode::DropClosed => 8,
        ErrorCode::TooLarge => 9,
        ErrorCode::RateLimited => 10,
        ErrorCode::Unavailable => 11,
        ErrorCode::Internal => 12,
        ErrorCode::BadFrame => 13,
        ErrorCode::NotJoined => 14,
        ErrorCode::MethodNotAllowed => 15,
        ErrorCode::Muted => 16,
        ErrorCode::Blocked => 17,
        ErrorCode::Banned => 18,
    }
}

/// [`ALL_CODES`] lists each code once, at its place.
const _: () = {
    let mut i = 0;
    while i < ALL_CODES.len() {
        assert!(code_index(ALL_CODES[i]) == i, "ALL_CODES is out of order");
        i += 1;
    }
};

// ---- answers that handlers build as JSON -----------------------------------------------------

/// `{"items":[…]}` of `GET /v1/products`.
#[derive(ToSchema)]
pub struct ProductList {
    /// The tenant's products.
    pub items: Vec<Product>,
}

/// `{"items":[…]}` of `GET /v1/streams`.
#[derive(ToSchema)]
pub struct StreamList {
    /// The tenant's streams, newest first.
    pub items: Vec<Stream>,
}

/// `{"items":[…]}` of `GET /v1/claims`.
#[derive(ToSchema)]
pub struct ClaimList {
    /// The caller's claims, newest first.
    pub items: Vec<Claim>,
}

/// `{"items":[…]}` of `GET /v1/tenants/{id}/bans`.
#[derive(ToSchema)]
pub struct BanList {
    /// The bans in force, newest first.
    pub items: Vec<Ban>,
}

/// `{"items":[…]}` of `GET /v1/streams/{id}/moderation-log`.
#[derive(ToSchema)]
pub struct ModerationLog {
    /// Log entries, newest first.
    pub items: Vec<ModerationEntry>,
}

/// The answer of `GET /health`.
#[derive(ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: HealthStatus,
}

/// The only state `/health` answers.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The process runs.
    Ok,
}

/// The answer of `GET /ready`, 200 or 503.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready` with 200, `unavailable` with 503.
    pub status: ReadyStatus,
    /// Each check's result.
    pub checks: ReadyChecks,
}

/// Whether every check passed.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ReadyStatus {
    /// Every check passed.
    Ready,
    /// A check failed.
    Unavailable,
}

/// The checks of `/ready`.
#[derive(ToSchema)]
pub struct ReadyChecks {
    /// Storage answered a ping within 2 s.
    pub storage: CheckState,
    /// Redis answered a ping within 2 s; only with `REDIS_URL`.
    #[schema(nullable = false)]
    pub redis: Option<CheckState>,
}

/// The result of one check.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum CheckState {
    /// It answered.
    Ok,
    /// It did not answer in time.
    Down,
}

/// The answer of `GET /v1/admin/actors`.
#[derive(ToSchema)]
pub struct ActorTree {
    /// How many actors are listed.
    pub count: u64,
    /// The actors, by kind and id.
    pub items: Vec<ActorRow>,
}

/// One live actor.
#[derive(ToSchema)]
pub struct ActorRow {
    /// `supervisor`, `tenant`, `stream`, `drop`, `session` or `persister`.
    pub kind: String,
    /// Its id within its kind.
    pub id: String,
    /// Its supervisor (`kind:id`), when that is a listed actor.
    #[schema(required = true)]
    pub parent: Option<String>,
    /// Messages waiting in its mailbox.
    pub mailbox_depth: u64,
    /// How often its supervisor restarted it.
    pub restarts: u64,
    /// Seconds since its current incarnation started.
    pub uptime_seconds: f64,
}

/// The answer of `GET /v1/admin/cluster`.
#[derive(ToSchema)]
pub struct ClusterView {
    /// This node's id.
    #[schema(rename = "self")]
    pub this: String,
    /// The nodes whose heartbeat is fresh (a single node lists itself alone).
    pub nodes: Vec<ClusterNode>,
}

/// One node of the cluster.
#[derive(ToSchema)]
pub struct ClusterNode {
    /// Its id (`LIVESHOP_NODE_ID`).
    pub id: String,
    /// When it started.
    pub started_at: Timestamp,
    /// WebSocket connections it serves.
    pub connections: u64,
    /// Live streams it owns.
    pub streams_owned: u64,
}

/// The answer of `GET /v1/admin/stats`: this node's totals since it started.
#[derive(ToSchema)]
pub struct Stats {
    /// This node's id.
    pub node: String,
    /// WebSocket connections open now.
    pub connections: u64,
    /// Event frames written to sockets.
    pub events_delivered: u64,
    /// Claim decisions.
    pub claims: u64,
    /// Claim decisions by result.
    pub claims_by_result: BTreeMap<String, u64>,
    /// Actor restarts.
    pub restarts: u64,
    /// Actor restarts by kind.
    pub restarts_by_kind: BTreeMap<String, u64>,
    /// Live actors by kind.
    pub actors_by_kind: BTreeMap<String, u64>,
}

/// The answer of `POST /v1/admin/streams/{id}/crash`.
#[derive(ToSchema)]
pub struct StreamCrashed {
    /// The stream.
    pub stream: StreamId,
    /// Always true.
    pub crashed: bool,
}

/// The answer of `POST /v1/admin/drops/{id}/crash`.
#[derive(ToSchema)]
pub struct DropCrashed {
    /// The drop.
    pub drop: DropId,
    /// Always true.
    pub crashed: bool,
}

/// The answer of `POST /v1/admin/sessions/{id}/crash`.
#[derive(ToSchema)]
pub struct SessionCrashed {
    /// The connection's session.
    pub session: SessionId,
    /// Always true.
    pub crashed: bool,
}

/// The answer of `POST /v1/admin/persister/crash`.
#[derive(ToSchema)]
pub struct PersisterCrashed {
    /// Always true.
    pub persister: bool,
    /// Always true.
    pub crashed: bool,
}

/// The answer of `GET /dev`.
#[derive(ToSchema)]
pub struct DevInfo {
    /// Always `dev`.
    pub mode: String,
    /// Where to mint a token: `POST /dev/token`.
    pub token: String,
}

/// The answer of `POST /dev/token`.
#[derive(ToSchema)]
pub struct DevToken {
    /// The signed token.
    pub token: String,
    /// Its role.
    pub role: String,
    /// Its tenant (`null` for an operator).
    #[schema(required = true)]
    pub tenant: Option<String>,
    /// Its user id.
    pub sub: String,
    /// When it expires, in Unix seconds.
    pub exp: u64,
}

// ---- conventions ----------------------------------------------------------------------------

/// The HTTP methods an OpenAPI path item may hold.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// A refusal that every operation of a kind can give, whatever its own description says.
struct Common {
    status: u16,
    code: ErrorCode,
    why: &'static str,
}

const fn common(status: u16, code: ErrorCode, why: &'static str) -> Common {
    Common { status, code, why }
}

/// Any request with a token.
const AUTHENTICATED: [Common; 5] = [
    common(
        400,
        ErrorCode::BadRequest,
        "more than one `Authorization` header",
    ),
    common(
        401,
        ErrorCode::Unauthorized,
        "no token, or one that does not verify (the message says why)",
    ),
    common(
        403,
        ErrorCode::Banned,
        "the caller is banned from the tenant",
    ),
    common(
        429,
        ErrorCode::RateLimited,
        "too many requests; retry after `Retry-After` seconds",
    ),
    common(
        503,
        ErrorCode::Unavailable,
        "storage, or the actor in charge, did not answer; retry",
    ),
];

/// Any request with a JSON body.
const WITH_BODY: [Common; 2] = [
    common(
        400,
        ErrorCode::BadRequest,
        "the body is not JSON of this shape (the message names the field)",
    ),
    common(413, ErrorCode::TooLarge, "the body is over 64 KiB"),
];

/// Any request with a path parameter.
const WITH_PATH_PARAMETER: Common = common(
    400,
    ErrorCode::BadRequest,
    "a path parameter cannot be decoded",
);

/// Any request at all.
const ANY: Common = common(
    500,
    ErrorCode::Internal,
    "a fault inside the engine; details go to the log only",
);

/// Applies the conventions of the module doc to every operation of `doc`. Panics on an error
/// answer that names no code, or a code another status carries: a mistake in an annotation,
/// which the tests find.
fn conventions(doc: &mut Value) {
    doc["components"]["securitySchemes"] = json!({
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An HS256 JWT with the claims `sub`, `role`, `tid` (tenant roles), `exp` and optionally `name` and `nbf` (docs/API.md, authentication)",
        },
        "token": {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The same token as a query parameter; `GET /v1/ws` only",
        },
    });
    let Some(paths) = doc["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if METHODS.contains(&method.as_str()) {
                operation_conventions(path, operation);
            }
        }
    }
}

fn operation_conventions(path: &str, operation: &mut Value) {
    let authenticated = operation["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|req| req.get("bearer").is_some()));
    let with_body = operation.get("requestBody").is_some();
    let with_path_parameter = operation["parameters"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path"));
    let mut common: Vec<&Common> = Vec::new();
    if authenticated {
        common.extend(AUTHENTICATED.iter());
    }
    if with_body {
        common.extend(WITH_BODY.iter());
    }
    if with_path_parameter {
        common.push(&WITH_PATH_PARAMETER);
    }
    common.push(&ANY);

    let tag = operation["tags"][0].as_str().unwrap_or("api").to_owned();
    let name = operation["operationId"].as_str().unwrap_or("").to_owned();
    operation["operationId"] = json!(format!("{tag}_{name}"));

    let responses = operation["responses"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("{path}: an operation without responses"));
    for c in &common {
        let answer = responses
            .entry(c.status.to_string())
            .or_insert_with(|| json!({ "description": "" }));
        if answer.get("content").is_some() {
            // An answer with a body of its own (`/ready`'s 503) is not an error body.
            continue;
        }
        let description = answer["description"].as_str().unwrap_or("").to_owned();
        if !description.contains(c.why) {
            let line = format!("`{}`: {}.", c.code.as_str(), c.why);
            let before = description.trim_end_matches('.');
            answer["description"] = json!(if before.is_empty() {
                line
            } else {
                format!("{before}. {line}")
            });
        }
    }
    for (status, answer) in responses.iter_mut() {
        let status: u16 = status
            .parse()
            .unwrap_or_else(|_| panic!("{path}: answer status {status} is not a number"));
        if status < 400 || answer.get("content").is_some() {
            continue;
        }
        let description = answer["description"].as_str().unwrap_or("");
        let codes = named_codes(description);
        assert!(
            !codes.is_empty(),
            "{path}: the {status} answer names no error code in backticks"
        );
        for code in &codes {
            // 426 carries `bad_request`: the upgrade was malformed, the status says how.
            let fits =
                code.http_status() == status || (status == 426 && *code == ErrorCode::BadRequest);
            assert!(
                fits,
                "{path}: the {status} answer names `{}`, which is answered {}",
                code.as_str(),
                code.http_status()
            );
        }
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        answer["content"] = json!({
            "application/json": {
                "schema": {
                    "allOf": [
                        { "$ref": "#/components/schemas/ErrorBody" },
                        {
                            "type": "object",
                            "properties": {
                                "error": {
                                    "type": "object",
                                    "properties": { "code": { "type": "string", "enum": names } },
                                },
                            },
                        },
                    ],
                },
            },
        });
        if status == 429 {
            answer["headers"] = json!({
                "Retry-After": {
                    "description": "Whole seconds to wait before retrying, at least 1",
                    "required": true,
                    "schema": { "type": "integer", "minimum": 1 },
                },
            });
        }
    }
}

/// The error codes a description names in backticks, in order, without repeats.
fn named_codes(description: &str) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    for (i, part) in description.split('`').enumerate() {
        if i % 2 == 1
            && let Some(code) = ALL_CODES.iter().find(|c| c.as_str() == part)
            && !codes.contains(code)
        {
            codes.push(*code);
        }
    }
    codes
}

#[cfg(test)]
mod tests;
