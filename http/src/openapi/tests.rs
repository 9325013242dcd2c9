//! The document against the code: every route of the sources is documented and every documented
//! operation is a route; the document is well-formed OpenAPI 3.1; the record schemas have exactly
//! the fields their JSON has.

use std::collections::BTreeSet;
use std::path::Path;

use liveshop_engine::ids::ChatId;
use liveshop_engine::moderation::{ChatSettings, ModerationAction, Mute};
use liveshop_engine::records::{ClaimStatus, Drop, DropStatus, StreamStatus, Tenant};
use liveshop_engine::{ProductId, Slug, TenantId, UserId};

use super::*;

/// Routes served on purpose without an entry in the document: the pages, the SDK and their
/// files are for browsers (docs/PAGES.md), not an API.
const NOT_API: [(&str, &str); 7] = [
    ("GET", "/"),
    ("GET", "/studio"),
    ("GET", "/ops"),
    ("GET", "/watch/{stream}"),
    ("GET", "/favicon.ico"),
    ("GET", "/sdk/liveshop.js"),
    ("GET", "/assets/{*path}"),
];

const ROUTING_METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

type Operation = (String, String);

/// `(METHOD, path)` of every `.route("path", method(…).method(…))` call in `source`.
fn routes_in(source: &str, file: &str) -> Vec<Operation> {
    // Spelled in two parts so that this file holds no route call of its own.
    let needle = concat!(".", "route(");
    let mut found = Vec::new();
    let mut offset = 0;
    while let Some(at) = source[offset..].find(needle) {
        let start = offset + at;
        offset = start + needle.len();
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        if source[line_start..start].contains("//") {
            continue;
        }
        let after = source[offset..].trim_start();
        let after = after
            .strip_prefix('"')
            .unwrap_or_else(|| panic!("{file}: a route whose path is not a string literal"));
        let end = after.find('"').expect("the path literal ends");
        let path = &after[..end];
        let handler = after[end + 1..]
            .trim_start()
            .strip_prefix(',')
            .unwrap_or_else(|| panic!("{file}: route {path} has no handler"));
        let mut methods = Vec::new();
        let (mut depth, mut ident, mut in_string) = (0usize, String::new(), false);
        for ch in handler.chars() {
            if in_string {
                in_string = ch != '"';
                continue;
            }
            match ch {
                '"' => in_string = true,
                '(' | '{' | '[' => {
                    let name = ident.rsplit("::").next().unwrap_or("");
                    if depth == 0 && ROUTING_METHODS.contains(&name) {
                        methods.push(name.to_uppercase());
                    }
                    depth += 1;
                    ident.clear();
                }
                ')' | '}' | ']' => {
                    if depth == 0 {
                        break;
                    }
                    depth -= 1;
                    ident.clear();
                }
                c if c.is_alphanumeric() || c == '_' || c == ':' => ident.push(c),
                _ => ident.clear(),
            }
        }
        assert!(
            !methods.is_empty(),
            "{file}: route {path} has no method that this test can read"
        );
        found.extend(methods.into_iter().map(|m| (m, path.to_owned())));
    }
    found
}

/// Every route call of every source file of this crate.
fn routes_of_the_sources() -> BTreeSet<Operation> {
    fn walk(dir: &Path, found: &mut BTreeSet<Operation>) {
        for entry in std::fs::read_dir(dir).expect("the source directory is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).expect("a source file is readable");
                found.extend(routes_in(&source, &path.display().to_string()));
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found
}

fn operations_of(doc: &Value) -> BTreeSet<Operation> {
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(method).is_some() {
                found.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    found
}

fn operations(doc: &Value) -> impl Iterator<Item = (&String, &str, &Value)> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter_map(move |m| item.get(*m).map(|op| (path, *m, op)))
        })
}

#[test]
fn the_route_reader_finds_chained_methods_and_skips_comments_and_closures() {
    // `.ROUTE(` stands for the real call, so that the file walk does not read this sample.
    let source = r#"
        // .ROUTE("/commented", get(x))
        let r = Router::new()
            .ROUTE("/a", post(a::create).get(a::list))
            .ROUTE(
                "/b/{id}",
                get(|h: HeaderMap| async move { page("b.html", &h) }),
            )
            .ROUTE("/c", axum::routing::delete(c::remove));
    "#
    .replace(".ROUTE(", concat!(".", "route("));
    let found: BTreeSet<Operation> = routes_in(&source, "sample").into_iter().collect();
    let expected: BTreeSet<Operation> = [
        ("POST", "/a"),
        ("GET", "/a"),
        ("GET", "/b/{id}"),
        ("DELETE", "/c"),
    ]
    .into_iter()
    .map(|(m, p)| (m.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(found, expected);
}

#[test]
fn every_route_is_documented_and_every_documented_operation_is_a_route() {
    let routes = routes_of_the_sources();
    for (method, path) in NOT_API {
        assert!(
            routes.contains(&(method.to_owned(), path.to_owned())),
            "{method} {path} is listed as not API but is no route any more"
        );
    }
    let not_api: BTreeSet<Operation> = NOT_API
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let api: BTreeSet<Operation> = routes.difference(&not_api).cloned().collect();
    let documented = operations_of(&build());
    let undocumented: Vec<_> = api.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an entry in the OpenAPI document (add #[utoipa::path] and list the handler in ApiDoc): {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&api).collect();
    assert!(
        unrouted.is_empty(),
        "documented operations that no route serves: {unrouted:?}"
    );
    // The contract's endpoints, as a floor in case the reader above ever reads nothing.
    assert!(documented.len() >= 38, "{} operations", documented.len());
}

#[test]
fn the_document_is_openapi_3_1_and_parses_as_such() {
    let doc = build();
    assert_eq!(doc["openapi"], "3.1.0");
    let text = document_text();
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_str(text).expect("the served text is an OpenAPI document");
    // The typed model reads every operation with every answer (it knows fewer fields than
    // OpenAPI has, e.g. a header's `required`, so the texts are not compared).
    let reread = serde_json::to_value(&parsed).expect("it serializes again");
    assert_eq!(operations_of(&reread), operations_of(&doc));
    for (path, method, op) in operations(&doc) {
        let statuses = |o: &Value| -> Vec<String> {
            o["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            statuses(&reread["paths"][path][method]),
            statuses(op),
            "{method} {path}"
        );
    }
    assert_eq!(
        serde_json::from_str::<Value>(text).expect("served JSON"),
        doc,
        "the served text is the document"
    );
}

/// Every `$ref` of `value`.
fn refs<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    found.push(v.as_str().expect("a $ref is a string"));
                } else {
                    refs(v, found);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

#[test]
fn every_reference_resolves_and_every_path_parameter_is_declared() {
    let doc = build();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} names no schema"
        );
    }
    let mut ids = BTreeSet::new();
    for (path, method, op) in operations(&doc) {
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().expect("a parameter name"))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(templated, declared, "{method} {path}: path parameters");
        let id = op["operationId"].as_str().expect("an operation id");
        assert!(ids.insert(id.to_owned()), "operation id {id} is used twice");
        for scheme in op["security"].as_array().into_iter().flatten() {
            for name in scheme.as_object().expect("a requirement").keys() {
                assert!(
                    doc["components"]["securitySchemes"].get(name).is_some(),
                    "{method} {path}: security scheme {name} is not defined"
                );
            }
        }
    }
}

#[test]
fn every_error_answer_has_the_error_body_narrowed_to_its_codes() {
    let doc = build();
    for (path, method, op) in operations(&doc) {
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key("500"), "{method} {path}: no 500");
        let authenticated = op["security"].is_array();
        if authenticated {
            for status in ["400", "401", "403", "429", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: an authenticated operation without {status}"
                );
            }
            let retry = &responses["429"]["headers"]["Retry-After"];
            assert_eq!(retry["required"], true, "{method} {path}: Retry-After");
        }
        for (status, answer) in responses {
            let status: u16 = status.parse().expect("a status");
            if status < 400 || (path == "/ready" && status == 503) {
                continue;
            }
            let schema = &answer["content"]["application/json"]["schema"];
            assert_eq!(
                schema["allOf"][0]["$ref"], "#/components/schemas/ErrorBody",
                "{method} {path} {status}"
            );
            let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
                .as_array()
                .expect("the codes of the answer");
            assert!(!codes.is_empty(), "{method} {path} {status}");
            for code in codes {
                let code = ALL_CODES
                    .iter()
                    .find(|c| c.as_str() == code)
                    .unwrap_or_else(|| panic!("{method} {path} {status}: unknown code {code}"));
                assert!(
                    code.http_status() == status || status == 426,
                    "{method} {path} {status}: `{}` is answered {}",
                    code.as_str(),
                    code.http_status()
                );
            }
        }
    }
    let claim = &doc["paths"]["/v1/drops/{id}/claims"]["post"]["responses"]["409"];
    let codes = &claim["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]
        ["properties"]["code"]["enum"];
    assert_eq!(
        codes,
        &json!(["sold_out", "limit_exceeded", "drop_closed", "conflict"])
    );
    let banned = &doc["paths"]["/v1/products"]["get"]["responses"]["403"]["description"];
    assert!(
        banned.as_str().is_some_and(|d| d.contains("`banned`")),
        "{banned}"
    );
}

#[test]
fn codes_are_read_from_backticks_once_each() {
    assert_eq!(
        named_codes("`sold_out` or `x` or `sold_out`: `conflict`"),
        [ErrorCode::SoldOut, ErrorCode::Conflict]
    );
}

#[test]
#[should_panic(expected = "which is answered 409")]
fn an_answer_naming_a_code_of_another_status_is_refused() {
    let mut op = json!({
        "responses": { "404": { "description": "`sold_out`: nothing left" } },
    });
    operation_conventions("/x", &mut op);
}

#[test]
#[should_panic(expected = "names no error code")]
fn an_error_answer_naming_no_code_is_refused() {
    let mut op = json!({ "responses": { "404": { "description": "not there" } } });
    operation_conventions("/x", &mut op);
}

// ---- the record schemas against their JSON --------------------------------------------------

/// Checks that schema `name` has exactly the properties of `sample`'s JSON, that what it
/// requires is there, and that it requires each property the JSON always has (`always`).
fn same_fields(doc: &Value, name: &str, sample: &impl serde::Serialize, optional: &[&str]) {
    let schema = &doc["components"]["schemas"][name];
    assert!(schema.is_object(), "no schema {name}");
    let json = serde_json::to_value(sample).expect("the sample serializes");
    let keys: BTreeSet<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let properties: BTreeSet<&str> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    let optional: BTreeSet<&str> = optional.iter().copied().collect();
    let on_wire: BTreeSet<&str> = keys.union(&optional).copied().collect();
    assert_eq!(properties, on_wire, "{name}: properties against the JSON");
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let always: BTreeSet<&str> = keys.difference(&optional).copied().collect();
    assert_eq!(required, always, "{name}: required properties");
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[test]
fn the_record_schemas_have_exactly_the_fields_of_their_json() {
    let doc = build();
    let tenant = TenantId::from_trusted("ten_1");
    let user = UserId::from_trusted("usr_1");
    same_fields(
        &doc,
        "Tenant",
        &Tenant {
            id: tenant.clone(),
            slug: Slug::from_trusted("shop".into()),
            name: "Shop".into(),
            created_at: at(0),
        },
        &[],
    );
    let product = Product {
        id: ProductId::from_trusted("prd_1"),
        tenant: tenant.clone(),
        sku: "s".into(),
        title: "t".into(),
        price_cents: 100,
        currency: "EUR".into(),
        image_url: None,
    };
    same_fields(&doc, "Product", &product, &[]);
    let stream = Stream {
        id: StreamId::from_trusted("str_1"),
        tenant: tenant.clone(),
        seller: user.clone(),
        title: "t".into(),
        status: StreamStatus::Scheduled,
        scheduled_at: None,
        started_at: None,
        ended_at: None,
        pinned: None,
        viewers: 0,
    };
    same_fields(&doc, "Stream", &stream, &[]);
    let drop = Drop {
        id: DropId::from_trusted("drp_1"),
        tenant: tenant.clone(),
        stream: stream.id.clone(),
        product: product.id.clone(),
        quantity: 1,
        remaining: 1,
        reserved: 0,
        sold: 0,
        per_user_limit: 1,
        hold_seconds: 300,
        status: DropStatus::Open,
        opened_at: at(0),
        ends_at: None,
        closed_reason: None,
    };
    same_fields(&doc, "Drop", &drop, &[]);
    let claim = Claim {
        id: liveshop_engine::ClaimId::from_trusted("clm_1"),
        tenant: tenant.clone(),
        drop: drop.id.clone(),
        user: user.clone(),
        quantity: 1,
        status: ClaimStatus::Reserved,
        idempotency_key: "k".into(),
        created_at: at(0),
        expires_at: at(1),
    };
    same_fields(&doc, "Claim", &claim, &[]);
    same_fields(
        &doc,
        "Ban",
        &Ban {
            tenant: tenant.clone(),
            user: user.clone(),
            until: None,
            reason: None,
            by: user.clone(),
            at: at(0),
        },
        &[],
    );
    same_fields(
        &doc,
        "Mute",
        &Mute {
            stream: stream.id.clone(),
            user: user.clone(),
            until: at(0),
        },
        &[],
    );
    same_fields(&doc, "ChatSettings", &ChatSettings::default(), &[]);
    let entry = ModerationEntry {
        stream: stream.id.clone(),
        at: at(0),
        actor: user,
        action: ModerationAction::DeleteMessage,
        target: ChatId::from_trusted("msg_1").to_string(),
        reason: None,
    };
    // `reason` is left out of the JSON when there is none.
    same_fields(&doc, "ModerationEntry", &entry, &["reason"]);
}

#[test]
fn enums_ids_and_times_are_spelled_as_on_the_wire() {
    let doc = build();
    let schemas = &doc["components"]["schemas"];
    let spelled = |name: &str, values: Vec<Value>| {
        assert_eq!(
            schemas[name]["enum"],
            Value::Array(values.clone()),
            "{name}"
        );
    };
    spelled(
        "DropStatus",
        [DropStatus::Open, DropStatus::SoldOut, DropStatus::Closed]
            .iter()
            .map(|s| json!(s))
            .collect(),
    );
    spelled(
        "StreamStatus",
        [
            StreamStatus::Scheduled,
            StreamStatus::Live,
            StreamStatus::Ended,
        ]
        .iter()
        .map(|s| json!(s))
        .collect(),
    );
    spelled(
        "ClaimStatus",
        [
            ClaimStatus::Reserved,
            ClaimStatus::Paid,
            ClaimStatus::Expired,
        ]
        .iter()
        .map(|s| json!(s))
        .collect(),
    );
    spelled(
        "ModerationAction",
        [
            ModerationAction::DeleteMessage,
            ModerationAction::Mute,
            ModerationAction::Ban,
            ModerationAction::Unban,
            ModerationAction::ChatSettings,
        ]
        .iter()
        .map(|s| json!(s))
        .collect(),
    );
    assert_eq!(schemas["Timestamp"]["type"], "string");
    assert_eq!(schemas["Timestamp"]["format"], "date-time");
    for id in [
        "TenantId",
        "StreamId",
        "ProductId",
        "DropId",
        "ClaimId",
        "UserId",
    ] {
        assert_eq!(schemas[id]["type"], "string", "{id}");
    }
    // An optional time that is always written: required, and `null` allowed.
    let started = &schemas["Stream"]["properties"]["started_at"];
    let text = started.to_string();
    assert!(text.contains("null"), "{text}");
    assert!(text.contains("#/components/schemas/Timestamp"), "{text}");
}
