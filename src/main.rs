//! The `ares` binary: parses the command line, starts logging to stderr, opens the store and
//! serves over stdio or HTTP until SIGINT/SIGTERM.
#![forbid(unsafe_code)]
// `run` holds every subcommand's future; together they pass the default query depth limit
// in release builds ("queries overflow the depth limit" on the layout of `run`).
#![recursion_limit = "256"]

use ares::Ares;
use ares::config::{Cli, Command, ServeArgs, StoreArgs};
use ares::server::{self, HttpOptions};
use ares::store::{self, redact_url};
use clap::Parser;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// jemalloc instead of glibc's malloc: faster at the many small, short-lived allocations
/// a call makes across tokio's worker threads, and its background thread gives memory freed
/// by closed sessions back to the system within about a second (`.cargo/config.toml` sets
/// the decay), where glibc keeps it in its per-thread arenas. Figures in BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(run(cli));
    // A blocking stdin read may never return; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("ares: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Logs go to stderr only: in stdio mode stdout is the protocol. `ARES_LOG` sets the filter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARES_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}

/// Each command's future is boxed: side by side in one `match` their state machines nest
/// deeply enough to overflow the compiler's layout query depth.
async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Migrate(args)) => Box::pin(migrate(args)).await,
        Some(Command::Key(command)) => Box::pin(ares::auth::cli::run(command)).await,
        Some(Command::Keygen) => {
            println!("{}", ares::signing::keygen());
            Ok(())
        }
        Some(Command::Sign(args)) => ares::signing::sign_command(args),
        Some(Command::Audit(command)) => Box::pin(ares::audit::cli::run(command)).await,
        Some(Command::CodeChecker(args)) => Box::pin(ares::code_checker::serve_stdio(args)).await,
        Some(Command::Serve(args)) => Box::pin(serve(args)).await,
        None => Box::pin(serve(cli.serve)).await,
    }
}

async fn migrate(args: StoreArgs) -> anyhow::Result<()> {
    let url = args.url()?;
    let store = store::connect(&url).await?;
    tracing::info!(store = %redact_url(&url), "migrations applied");
    store.close().await;
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Signals first, so a SIGTERM during start-up still shuts down cleanly.
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone())?;
    let policy = args.policy()?;
    let url = args.store.url()?;
    let audit_key = args.audit.key.load(&url, true)?;
    let store = Box::pin(store::connect(&url)).await?;
    tracing::info!(store = %redact_url(&url), backend = store.backend(), "store ready");
    let downstream = Box::pin(args.downstream.start(store.clone())).await?;
    let redis = args
        .redis_url
        .as_deref()
        .map(ares::redis_link::RedisLink::open)
        .transpose()?;
    let ares = Arc::new(
        Ares::new(store.clone())
            .with_downstream(downstream.clone())
            .with_redis(redis.clone())
            .with_policy(policy)
            .with_retention(args.retention())
            .with_audit_key(audit_key)
            .require_signatures(args.require_signatures),
    );
    if let Some(redis) = &redis {
        tracing::info!(redis = %redis.label(), instance = %ares.instance, "sharing events and sessions through Redis");
        redis.spawn_subscriber(ares.instance.clone(), ares.events.clone(), shutdown.clone());
    }
    spawn_sweeper(ares.clone(), args.sweep_secs, shutdown.clone());
    let idle = std::time::Duration::from_secs(args.idle_timeout_secs);
    spawn_relay(ares.clone(), shutdown.clone());
    if let Some(addr) = args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let address = listener.local_addr()?;
        tracing::info!(%address, "serving /metrics and /health without a key");
        if !address.ip().is_loopback() {
            tracing::warn!(%address, "--metrics-addr answers without a key: keep it on a private network");
        }
        let app = server::metrics_router(ares.clone());
        tokio::spawn(Box::pin(server::serve_http(
            listener,
            app,
            idle,
            shutdown.clone(),
        )));
    }
    let every = args.audit.checkpoint_every();
    tokio::spawn(Box::pin(
        ares.clone().run_checkpoints(every, shutdown.clone()),
    ));
    let relay = ares.clone();
    let result = match args.http {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await?;
            tracing::info!(address = %listener.local_addr()?, "serving MCP over streamable HTTP at /mcp");
            let options = HttpOptions {
                allowed_hosts: args.allowed_hosts.clone(),
                allowed_origins: args.allowed_origins.clone(),
                max_body_bytes: args.max_body_bytes,
                admin_token: args.admin_token.clone(),
                no_auth: args.no_auth,
                rate_limit: args.rate_limit,
            };
            if args.no_auth {
                tracing::warn!(
                    "AUTHENTICATION IS DISABLED (--no-auth): anyone who can reach {addr} has admin rights over ARES"
                );
            }
            let app = server::router(ares, &options, shutdown.clone());
            Box::pin(server::serve_http(listener, app, idle, shutdown.clone())).await
        }
        None => {
            tracing::info!("serving MCP over stdio");
            Box::pin(server::serve_stdio(ares, shutdown.clone())).await
        }
    };
    // However serving ended (a signal, or stdin closed), stop the timers before the store.
    shutdown.cancel();
    if let Some(downstream) = &downstream {
        downstream.shutdown();
    }
    if let Err(e) = relay.relay_events().await {
        tracing::debug!(error = %e, "could not mark the last published events");
    }
    store.close().await;
    tracing::info!("stopped");
    result
}

/// Runs the sweeper every `secs` seconds, and the retention sweep hourly, until shutdown.
fn spawn_sweeper(ares: Arc<Ares>, secs: u64, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut prune = tokio::time::interval(std::time::Duration::from_secs(3600));
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    // Recorded in the audit log as ARES's own work.
                    let context = ares::audit::CallContext::system("sweep");
                    if let Err(e) = ares::audit::context::scope(context, ares.sweep()).await {
                        tracing::warn!(error = %e, "sweep failed; retrying next tick");
                    }
                }
                _ = prune.tick() => {
                    if let Err(e) = ares.prune_history().await {
                        tracing::warn!(error = %e, "retention sweep failed; retrying next hour");
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
    });
}

/// Runs the event outbox relay every second until shutdown (`serve` runs it once more
/// before closing the store, so what this instance published is marked).
fn spawn_relay(ares: Arc<Ares>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => return,
            }
            if let Err(e) = ares.relay_events().await {
                tracing::debug!(error = %e, "event relay failed; retrying next second");
            }
        }
    });
}

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        shutdown.cancel();
    });
    Ok(())
}
