//! The composition root: storage, actor tree, router, listener, and the graceful drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue};
use axum::routing::{delete, get, post};
use dashmap::DashMap;
use liveshop_actors::fanout::Fanout;
use liveshop_actors::{Engine, EngineConfig};
use liveshop_engine::storage::Storage;
use liveshop_storage::SqlStore;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::config::{Config, Mode};
use crate::routes::{admin, drops, moderation, ops, products, streams, tenants};
use crate::state::{AppState, Inner};
use crate::{middleware, telemetry, ws};

/// Largest REST body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A built, bound, not yet serving engine.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
    router: Router,
    /// The separate `/metrics` listener (`LIVESHOP_METRICS_LISTEN`), when configured.
    metrics_listener: Option<TcpListener>,
}

impl Application {
    /// Connects storage, applies migrations, starts the actor tree and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        config.check_production()?;
        if config.fault_injection {
            tracing::warn!(
                "LIVESHOP_ENABLE_FAULT_INJECTION is on: operators can crash actors over HTTP (development only; production refuses it)"
            );
        }
        let _checked_cors = middleware::cors(&config).map_err(anyhow::Error::msg)?;
        let resolved = config.resolve_keys()?;
        if resolved.generated {
            tracing::warn!(
                file = crate::config::DEV_SECRET_FILE,
                "LIVESHOP_JWT_SECRET is unset: using a generated development secret (never do this in production)"
            );
        }
        if let Some(signing) = resolved.keys.signing_kid() {
            // Key ids only: a secret never reaches a log line.
            tracing::info!(
                signing_kid = signing,
                kids = resolved.keys.kids().collect::<Vec<_>>().join(","),
                "token keys from LIVESHOP_JWT_SECRETS"
            );
        }
        let store = SqlStore::connect(&config.database_url).await?;
        store.migrate().await?;
        let store: Arc<dyn Storage> = Arc::new(store);
        // Install the recorder before the actor tree starts, so its first gauges are recorded.
        let metrics = telemetry::metrics_handle();
        telemetry::describe_metrics();
        let engine_config = EngineConfig {
            limits: config.limits(),
            claim_batch_max: if config.group_commit { 1000 } else { 1 },
            ..EngineConfig::default()
        };
        let resume_buffer = engine_config.limits.resume_buffer;
        let live = Arc::new(crate::ws::keepalive::Live::default());
        let (engine, cluster) = match &config.redis_url {
            None => {
                let fanout = Fanout::in_process(resume_buffer);
                (
                    Engine::start(store.clone(), fanout, engine_config).await?,
                    None,
                )
            }
            Some(url) => {
                let (node, fanout, cluster) =
                    crate::cluster::ClusterNode::build(&config, &store, url, resume_buffer)?;
                let engine = Engine::start_in_cluster(
                    store.clone(),
                    fanout,
                    node.engine_config(engine_config),
                    liveshop_actors::clock::TimeAndIds::system(),
                    cluster,
                )
                .await?;
                node.serve(&engine, live.clone());
                (engine, Some(Arc::new(node)))
            }
        };
        let listener = listen(config.listen)?;
        let addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_listen {
            Some(at) => Some(listen(at).map_err(|e| {
                anyhow::anyhow!("cannot listen on LIVESHOP_METRICS_LISTEN={at}: {e}")
            })?),
            None => None,
        };
        let (drain, _) = watch::channel(false);
        let admission = Arc::new(crate::admission::Admission::new(&config));
        let node_id = cluster
            .as_ref()
            .map_or_else(|| config.node_id(), |c| c.node_id.clone());
        let state = AppState(Arc::new(Inner {
            keys: resolved.keys,
            config,
            store,
            engine,
            metrics,
            readiness: crate::readiness::ReadinessCache::default(),
            known_tenants: DashMap::new(),
            seen: crate::state::SeenMarks::default(),
            http_buckets: DashMap::new(),
            drain,
            live,
            node_id,
            started_at: liveshop_actors::clock::now(),
            cluster,
            admission,
        }));
        let router = router(state.clone());
        Ok(Self {
            listener,
            addr,
            state,
            router,
            metrics_listener,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the separate `/metrics` listener, when `LIVESHOP_METRICS_LISTEN` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains: stop accepting, close every WebSocket with
    /// 1012, wait for them (bounded), write what is queued, return.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.addr, "listening");
        let state = self.state.clone();
        let janitor_state = self.state.clone();
        let janitor = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                janitor_state.forget_idle();
            }
        });
        let keepalive = tokio::spawn(crate::ws::keepalive::run(state.clone()));
        let metrics_server = self.metrics_listener.map(|listener| {
            let addr = listener.local_addr().ok();
            tracing::info!(addr = ?addr, "serving /metrics on its own listener");
            tokio::spawn(serve_metrics(listener, state.clone()))
        });
        let drain = state.drain.clone();
        let serving = crate::serve::Serving {
            admission: state.admission.clone(),
            header_read_timeout: state.config.header_read_timeout(),
            production: state.config.mode == Mode::Production,
        };
        crate::serve::serve(self.listener, self.router, serving, async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining");
            drain.send_replace(true);
        })
        .await;
        if let Some(cluster) = &state.cluster {
            cluster.hand_over(&state.engine).await;
        }
        drain_connections(&state).await;
        janitor.abort();
        keepalive.abort();
        if let Some(task) = metrics_server {
            task.abort();
        }
        state.engine.shutdown().await;
        tracing::info!("drained; bye");
        Ok(())
    }
}

/// Connections the kernel may queue before they are accepted. A reconnect storm brings thousands
/// within a second; a connection that does not fit is dropped and its client retries only after
/// a 1 s SYN timeout. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the listening socket with [`LISTEN_BACKLOG`].
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `/metrics` alone on the metrics listener (everything else is 404 there).
async fn serve_metrics(listener: TcpListener, state: AppState) {
    let router = Router::new()
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { crate::error::ApiError::not_found("route") })
        .with_state(state);
    if let Err(err) = axum::serve(listener, router).await {
        tracing::error!(error = %err, "the metrics listener stopped");
    }
}

async fn drain_connections(state: &AppState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(state.config.drain_secs);
    while !state.live.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = state.live.len();
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain deadline passed with connections still open"
        );
    }
}

/// All routes with their middleware.
pub fn router(state: AppState) -> Router {
    let production = state.config.mode == Mode::Production;
    let mut api = Router::new()
        .route("/v1/tenants", post(tenants::create))
        .route("/v1/tenants/{id}", get(tenants::get))
        .route("/v1/products", post(products::create).get(products::list))
        .route("/v1/streams", post(streams::create).get(streams::list))
        .route("/v1/streams/{id}", get(streams::get))
        .route("/v1/streams/{id}/start", post(streams::start))
        .route("/v1/streams/{id}/end", post(streams::end))
        .route("/v1/streams/{id}/pin", post(streams::pin))
        .route("/v1/streams/{id}/drops", post(drops::open))
        .route(
            "/v1/streams/{id}/chat/{message}",
            delete(moderation::delete_message),
        )
        .route("/v1/streams/{id}/mutes", post(moderation::mute))
        .route(
            "/v1/streams/{id}/chat-settings",
            get(moderation::get_settings).patch(moderation::patch_settings),
        )
        .route("/v1/streams/{id}/moderation-log", get(moderation::log))
        .route(
            "/v1/tenants/{id}/bans",
            post(moderation::ban).get(moderation::list_bans),
        )
        .route("/v1/tenants/{id}/bans/{user}", delete(moderation::unban))
        .route("/v1/drops/{id}", get(drops::get))
        .route("/v1/drops/{id}/close", post(drops::close))
        .route("/v1/drops/{id}/claims", post(drops::claim))
        .route("/v1/claims", get(drops::my_claims))
        .route("/v1/admin/claims/{id}/pay", post(admin::pay_claim))
        .route("/v1/admin/actors", get(admin::actors))
        .route("/v1/admin/cluster", get(admin::cluster))
        .route("/v1/ws", get(ws::gateway::upgrade));
    if state.config.fault_injection {
        api = api
            .route("/v1/admin/streams/{id}/crash", post(admin::crash_stream))
            .route("/v1/admin/drops/{id}/crash", post(admin::crash_drop))
            .route("/v1/admin/sessions/{id}/crash", post(admin::crash_session))
            .route("/v1/admin/persister/crash", post(admin::crash_persister));
    }
    let mut ops_routes = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/v1/openapi.json", get(crate::openapi::document));
    if state.config.metrics_listen.is_none() {
        ops_routes = ops_routes.route("/metrics", get(ops::metrics));
    }
    // `build` has checked the origins, so this never falls back to no CORS at all.
    let cors = middleware::cors(&state.config).unwrap_or_default();
    let mut router = ops_routes
        .merge(api)
        .merge(crate::pages::routes(state.config.mode))
        .fallback(|| async { crate::error::ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            crate::error::ApiError::new(
                liveshop_engine::ErrorCode::MethodNotAllowed,
                "method not allowed on this path",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(cors)
        .layer(axum::middleware::from_fn(middleware::observe))
        .layer(CatchPanicLayer::custom(|_| {
            let body =
                crate::error::error_body(liveshop_engine::ErrorCode::Internal, "internal error");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(body),
            )
                .into_response_boxed()
        }));
    // The same list the answers written outside the router carry (`plain.rs`).
    for (name, value) in crate::plain::SECURITY_HEADERS {
        router = router.layer(header(name, value));
    }
    if production {
        router = router.layer(header(crate::plain::HSTS.0, crate::plain::HSTS.1));
    }
    router.with_state(state)
}

fn header(name: &'static str, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    )
}

trait IntoResponseBoxed {
    fn into_response_boxed(self) -> axum::response::Response;
}

impl<T: axum::response::IntoResponse> IntoResponseBoxed for T {
    fn into_response_boxed(self) -> axum::response::Response {
        self.into_response()
    }
}
