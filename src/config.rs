//! Command line and environment: what to serve, where to keep data, who may connect.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "ares",
    version,
    about = "ARES: the Agent Reliability Enforcement System, an MCP server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for `serve` when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

// Parsed once at start and dropped: a large `Serve` variant costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve MCP over stdio (default) or streamable HTTP (--http).
    Serve(ServeArgs),
    /// Apply database migrations and exit.
    Migrate(StoreArgs),
    /// Make an ed25519 key pair for signing evidence (prints JSON: private_key, public_key).
    Keygen,
    /// Sign submit_evidence arguments (JSON from a file or stdin) with a private key.
    Sign(crate::signing::SignArgs),
    /// Mint, list and revoke API keys for the HTTP transport.
    #[command(subcommand)]
    Key(crate::auth::cli::KeyCommand),
    /// Check the tamper-evident audit log, or sign a checkpoint of it.
    #[command(subcommand)]
    Audit(crate::audit::cli::AuditCommand),
    /// Serve the code checker: an MCP stdio server that runs allow-listed commands under a
    /// root, for `command_succeeds` criteria.
    CodeChecker(crate::code_checker::CodeCheckerArgs),
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Where data lives: sqlite://PATH or postgres://… Default: an embedded SQLite file at
    /// $XDG_DATA_HOME/ares/ares.db.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub audit: crate::audit::key::AuditServeArgs,
    #[command(flatten)]
    pub downstream: crate::downstream::DownstreamArgs,
    /// Redis (redis://HOST:PORT/DB), optional: shares events, MCP sessions, the cache and
    /// rate limits between instances. ARES serves on without it (health says `degraded`).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Serve streamable HTTP on this address (e.g. 127.0.0.1:8080) instead of stdio.
    #[arg(long, env = "ARES_HTTP")]
    pub http: Option<SocketAddr>,
    /// Also serve `/metrics` and `/health` on this address WITHOUT an API key, beside stdio
    /// or HTTP (e.g. 127.0.0.1:9464). Meant for a private interface or a port only the
    /// scraper can reach: the metrics name agents.
    #[arg(long, env = "ARES_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Host names the HTTP server answers to (DNS-rebinding protection). Default:
    /// localhost, 127.0.0.1, ::1.
    #[arg(
        long = "allowed-host",
        env = "ARES_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Browser origins allowed to call the HTTP server, e.g. https://app.example.com:443.
    /// Default: loopback origins only; requests from other origins get 403.
    #[arg(
        long = "allowed-origin",
        env = "ARES_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body in bytes (larger gets 413).
    #[arg(long, env = "ARES_MAX_BODY_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// A bootstrap admin API key for HTTP (set it in the environment, not on the command
    /// line, where other users can see it).
    #[arg(long, env = "ARES_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Require signed evidence from every agent, not only those with a public key.
    #[arg(long, env = "ARES_REQUIRE_SIGNATURES", value_parser = clap::builder::BoolishValueParser::new(), default_missing_value = "true", num_args = 0..=1)]
    pub require_signatures: bool,
    /// Serve HTTP without authentication: every caller is an admin. For local experiments
    /// only; ARES logs a warning at start.
    #[arg(long, env = "ARES_NO_AUTH", value_parser = clap::builder::BoolishValueParser::new(), default_missing_value = "true", num_args = 0..=1)]
    pub no_auth: bool,
    /// Seconds an HTTP connection may sit idle between requests (or take to send a
    /// request's headers) before ARES closes it. Streams being answered are not affected.
    #[arg(long, env = "ARES_IDLE_TIMEOUT_SECS", default_value_t = crate::server::IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_secs: u64,
    /// Requests per second each API key may make over HTTP (bursts of twice that); more
    /// get 429 with Retry-After.
    #[arg(long, env = "ARES_RATE_LIMIT", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,
    /// Enforcement thresholds, a JSON file; fields left out keep their defaults (see README).
    #[arg(long, env = "ARES_POLICY")]
    pub policy: Option<PathBuf>,
    /// Seconds between sweeps (lapsed suspensions, work of suspended agents, missed
    /// deadlines).
    #[arg(long, env = "ARES_SWEEP_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub sweep_secs: u64,
    /// Days events are kept (the backlog of the live feeds); evidence, verdicts, actions and
    /// the audit log are never pruned.
    #[arg(long, env = "ARES_RETAIN_EVENTS_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub retain_events_days: u32,
    /// Days reliability snapshots (the trend charts' points) are kept.
    #[arg(long, env = "ARES_RETAIN_SNAPSHOTS_DAYS", default_value_t = 90, value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub retain_snapshots_days: u32,
}

impl ServeArgs {
    /// How long history is kept.
    pub fn retention(&self) -> crate::service::sweep::Retention {
        crate::service::sweep::Retention {
            events: chrono::Duration::days(self.retain_events_days.into()),
            snapshots: chrono::Duration::days(self.retain_snapshots_days.into()),
        }
    }

    /// The enforcement policy: the file's, or the defaults.
    pub fn policy(&self) -> anyhow::Result<crate::enforcement::Policy> {
        match &self.policy {
            None => Ok(crate::enforcement::Policy::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("cannot read the policy file {}: {e}", path.display())
                })?;
                crate::enforcement::Policy::from_json(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
        }
    }
}

/// A secret from the environment or command line: usable, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_string()))
    }
}

impl StoreArgs {
    /// The store URL: the one given, or the default SQLite file in the user's data directory.
    pub fn url(&self) -> anyhow::Result<String> {
        match &self.database_url {
            Some(url) if !url.trim().is_empty() => Ok(url.trim().to_string()),
            _ => Ok(format!("sqlite://{}", default_sqlite_path()?.display())),
        }
    }
}

/// `$XDG_DATA_HOME/ares/ares.db`, falling back to `~/.local/share/ares/ares.db`.
pub fn default_sqlite_path() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("neither XDG_DATA_HOME nor HOME is set; set DATABASE_URL")
                })?;
            PathBuf::from(home).join(".local/share")
        }
    };
    Ok(base.join("ares").join("ares.db"))
}
