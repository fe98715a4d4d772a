//! Downstream MCP servers ARES checks ground truth through: the filesystem server for files,
//! code checkers (`ares code-checker`, ESLint's MCP server) for commands and lint, Playwright
//! for pages. [`config`] reads the `mcpServers` file, [`connection`] keeps each server
//! connected, [`checks`] turns a criterion into tool calls and a verdict.
//!
//! A criterion goes to the servers of its role in order (a primary, then its fallback); the
//! first real answer decides. A server that is missing, hangs, crashes or answers nonsense
//! makes the criterion `unverifiable` with the reason — never met, and never a hung verify.

pub mod checks;
pub mod config;
pub mod connection;

pub use config::{DownstreamConfig, Role, ServerConfig};
pub use connection::Connection;

use crate::evidence::EvidenceItem;
use crate::store::Store;
use crate::verification::{Criterion, CriterionResult, CriterionStatus};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// `ares serve` options for the downstream servers.
#[derive(Debug, Clone, clap::Args)]
pub struct DownstreamArgs {
    /// The downstream servers ground truth is checked through: a JSON file with an
    /// `mcpServers` object, as in Claude Desktop's config (see README). Without it,
    /// ground-truth criteria are `unverifiable`.
    #[arg(long = "downstream", env = "ARES_DOWNSTREAM")]
    pub downstream: Option<PathBuf>,
    /// Seconds a downstream server gets to connect, and to answer each call.
    #[arg(long, env = "ARES_DOWNSTREAM_TIMEOUT_SECS", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub downstream_timeout_secs: u64,
    /// Seconds between pings of each connected downstream server.
    #[arg(long, env = "ARES_DOWNSTREAM_PING_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub downstream_ping_secs: u64,
}

impl DownstreamArgs {
    /// Reads the file (a bad one is a start-up error naming the server and field) and
    /// starts the manager; None when no file is given.
    pub async fn start(&self, store: Arc<dyn Store>) -> anyhow::Result<Option<Arc<Downstream>>> {
        let Some(path) = self
            .downstream
            .as_ref()
            .filter(|p| !p.as_os_str().is_empty())
        else {
            tracing::info!(
                "no downstream servers configured; ground-truth criteria will be unverifiable"
            );
            return Ok(None);
        };
        let config = DownstreamConfig::load(path)?;
        let options = Options {
            timeout: Duration::from_secs(self.downstream_timeout_secs),
            ping_every: Duration::from_secs(self.downstream_ping_secs),
        };
        Ok(Some(Downstream::start(config, store, options).await))
    }
}

/// How the manager treats every server unless its entry says otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Bounds connecting and each tool call.
    pub timeout: Duration,
    /// How often a connected server is pinged.
    pub ping_every: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            ping_every: Duration::from_secs(30),
        }
    }
}

/// Every configured server with its connection.
pub struct Downstream {
    config: DownstreamConfig,
    connections: Vec<Arc<Connection>>,
    shutdown: CancellationToken,
}

impl Downstream {
    /// Starts a supervisor per server, which connects in the background: start-up does not
    /// wait for any server, and a check arriving early waits for the connect in flight.
    pub async fn start(
        config: DownstreamConfig,
        store: Arc<dyn Store>,
        options: Options,
    ) -> Arc<Downstream> {
        let shutdown = CancellationToken::new();
        let mut connections = Vec::with_capacity(config.servers.len());
        for server in &config.servers {
            let conn = Arc::new(Connection::new(
                server.clone(),
                options.timeout,
                store.clone(),
            ));
            conn.record("disconnected", Some("connecting".into())).await;
            tokio::spawn(
                conn.clone()
                    .supervise(options.ping_every, shutdown.child_token()),
            );
            connections.push(conn);
        }
        tracing::info!(servers = connections.len(), "downstream servers configured");
        Arc::new(Downstream {
            config,
            connections,
            shutdown,
        })
    }

    /// The configured servers, in name order.
    pub fn servers(&self) -> &[Arc<Connection>] {
        &self.connections
    }

    /// Stops pinging and reconnecting and closes every session (children exit).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Checks a ground-truth criterion through the servers of its role, in order.
    #[tracing::instrument(skip_all, fields(criterion = criterion.type_name()))]
    pub async fn check(&self, criterion: &Criterion, items: &[EvidenceItem]) -> CriterionResult {
        let Some(role) = criterion.needs_role().and_then(Role::parse) else {
            return CriterionResult::new(
                criterion,
                CriterionStatus::Unverifiable,
                format!(
                    "`{}` is not checked by a downstream server",
                    criterion.type_name()
                ),
            );
        };
        let candidates: Vec<&Arc<Connection>> = self
            .config
            .for_role(role)
            .into_iter()
            .filter_map(|s| self.connections.iter().find(|c| c.name() == s.name))
            .collect();
        if candidates.is_empty() {
            return not_configured(criterion);
        }
        let mut reasons = Vec::new();
        let mut failures = Vec::new();
        for conn in &candidates {
            match checks::check(conn, criterion, items).await {
                Ok(result) => return with_reasons(result, &failures),
                Err(why) => {
                    tracing::info!(server = %conn.name(), criterion = criterion.type_name(), reason = %why.reason, "downstream could not decide");
                    let line = format!("`{}`: {}", conn.name(), why.reason);
                    if !why.lacks_tool {
                        failures.push(line.clone());
                    }
                    reasons.push(line);
                }
            }
        }
        let mut result = CriterionResult::new(
            criterion,
            CriterionStatus::Unverifiable,
            format!(
                "no `{}` server could check this: {}",
                role.as_str(),
                reasons.join("; ")
            ),
        );
        result.checked_via = candidates
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(",");
        result
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A fallback's verdict says why the primary was passed over.
fn with_reasons(mut result: CriterionResult, skipped: &[String]) -> CriterionResult {
    if !skipped.is_empty() {
        result.detail = format!("{} (fallback used; {})", result.detail, skipped.join("; "));
    }
    result
}

/// The verdict when no server fills the role a criterion needs.
pub fn not_configured(criterion: &Criterion) -> CriterionResult {
    let role = criterion.needs_role().unwrap_or("downstream");
    let mut result = CriterionResult::new(
        criterion,
        CriterionStatus::Unverifiable,
        format!(
            "no `{role}` downstream server is configured, so this cannot be checked against ground truth"
        ),
    );
    result.checked_via = format!("{role} (not configured)");
    result
}
