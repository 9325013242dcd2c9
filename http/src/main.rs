//! `liveshop`: serve (default), migrate, or mint a token.

use std::process::ExitCode;

/// mimalloc returns freed memory to the system more eagerly than glibc's per-thread arenas, which
/// keeps the resident size per idle connection small.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use liveshop_engine::auth::Role;
use liveshop_http::auth::{MAX_TTL_SECS, MintError, claims_for};
use liveshop_http::{Application, Config, telemetry};
use liveshop_storage::SqlStore;

/// The Liveshop realtime engine.
#[derive(Parser)]
#[command(name = "liveshop", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run migrations, then serve HTTP and WebSocket until SIGINT/SIGTERM, then drain.
    Serve,
    /// Apply migrations and exit.
    Migrate,
    /// Print an HS256 token signed with the configured secret.
    Token {
        /// viewer, seller, moderator, admin or operator.
        #[arg(long)]
        role: String,
        /// Tenant id (required for every role but operator).
        #[arg(long)]
        tenant: Option<String>,
        /// User id (default: the role name).
        #[arg(long)]
        sub: Option<String>,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Lifetime in seconds, from 1 to 31622400 (366 days).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=MAX_TTL_SECS))]
        ttl: u64,
        /// Sign with the key of this kid in LIVESHOP_JWT_SECRETS (default: the first).
        #[arg(long)]
        kid: Option<String>,
    },
}

fn main() -> ExitCode {
    let _ = dotenvy::dotenv();
    // Before the runtime and its threads allocate anything.
    let huge_pages_off = liveshop_http::memory::disable_transparent_huge_pages();
    let cli = Cli::parse();
    telemetry::init_logs(cli.config.mode);
    if let Err(e) = huge_pages_off {
        tracing::warn!(error = %e, "could not turn transparent huge pages off; allocation may stall");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(cli.config).await,
            Command::Migrate => migrate(cli.config).await,
            Command::Token {
                role,
                tenant,
                sub,
                name,
                ttl,
                kid,
            } => token(&cli.config, &role, tenant, sub, name, ttl, kid.as_deref()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "liveshop stopped with an error");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped(shutdown_signal()).await
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = SqlStore::connect(&config.database_url).await?;
    store.migrate().await?;
    tracing::info!("migrations applied");
    Ok(())
}

fn token(
    config: &Config,
    role: &str,
    tenant: Option<String>,
    sub: Option<String>,
    name: Option<String>,
    ttl: u64,
    kid: Option<&str>,
) -> anyhow::Result<()> {
    let role = Role::parse(role).ok_or_else(|| {
        anyhow::anyhow!("--role must be one of viewer, seller, moderator, admin, operator")
    })?;
    if role != Role::Operator && tenant.is_none() {
        anyhow::bail!("--tenant is required for the {} role", role.as_str());
    }
    let keys = config.resolve_keys()?.keys;
    let sub = sub.unwrap_or_else(|| role.as_str().to_owned());
    let claims = claims_for(role, tenant.as_deref(), &sub, name.as_deref(), ttl);
    let token = match kid {
        None => keys.mint(&claims)?,
        Some(kid) => keys.mint_with(kid, &claims).map_err(|e| match e {
            MintError::UnknownKid(_) if keys.signing_kid().is_none() => anyhow::anyhow!(
                "--kid {kid:?} needs LIVESHOP_JWT_SECRETS (kid=secret,...): the single LIVESHOP_JWT_SECRET has no kid"
            ),
            MintError::UnknownKid(_) => anyhow::anyhow!(
                "--kid {kid:?} is not a kid of LIVESHOP_JWT_SECRETS (its kids: {})",
                keys.kids().collect::<Vec<_>>().join(", ")
            ),
            MintError::Sign(e) => e.into(),
        })?,
    };
    println!("{token}");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
