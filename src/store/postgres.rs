//! The PostgreSQL store, for production. The SQL itself is in `sql.rs`, shared with SQLite.

use crate::store::redact_url;
use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

// The shared SQL, compiled once per backend on purpose.
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

type Db = sqlx::Postgres;
type Backend = PostgresStore;
const BACKEND: &str = "postgres";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
/// Concurrent commits take turns at the head of the audit chain (released at commit).
/// The key is "ARESAUDT" in ASCII.
const AUDIT_LOCK: Option<&str> = Some("SELECT pg_advisory_xact_lock(4706900784436298836)");
/// The extended protocol takes one statement per query (see `writes_sql.rs`).
const ONE_TRIP: bool = false;

/// How long a call waits for a connection before the store counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLSTATEs that mean the server cannot be used right now: connection exceptions (class
/// 08), shutdown and startup (57P01–57P03), too many connections (53300).
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

/// The PostgreSQL implementation of [`crate::store::Store`].
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    label: String,
    /// Commits queued while another is written share its successor's transaction.
    group: crate::store::group::GroupCommit,
}

impl PostgresStore {
    /// Connects to the database `url` names (`postgres://…`). Does not migrate.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let label = redact_url(url);
        let options = PgConnectOptions::from_str(url)
            .with_context(|| format!("invalid PostgreSQL URL {label}"))?
            .application_name("ares");
        let max = std::thread::available_parallelism()
            .map_or(8, |n| n.get() as u32 * 4)
            .clamp(4, 16);
        let pool = PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {label}"))?;
        tracing::info!(database = %label, max_connections = max, "connected to PostgreSQL store");
        Ok(Self {
            pool,
            label,
            group: Default::default(),
        })
    }

    fn reader(&self) -> &PgPool {
        &self.pool
    }

    fn writer(&self) -> &PgPool {
        &self.pool
    }

    fn label(&self) -> &str {
        &self.label
    }
}
