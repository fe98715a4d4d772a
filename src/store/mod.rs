//! Storage: one interface, [`Store`], with an embedded SQLite implementation (the default)
//! and a PostgreSQL one (production). Every service operation reads what it needs, then
//! commits everything it changes as one atomic [`WriteBatch`].

use crate::agents::{Agent, AgentStatus};
use crate::audit::{AuditRecord, Checkpoint};
use crate::enforcement::{ActionKind, EnforcementAction};
use crate::evidence::Evidence;
use crate::reliability::{Reliability, TaskCounts};
use crate::tasks::{Task, TaskStatus};
use crate::verification::{VerdictSummary, Verification};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

pub mod group;
mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What went wrong in the store, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached (down, pool timed out); retrying may help.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint refused the write; names which: `agents.name`,
    /// `idempotency`, `evidence.chain`.
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    /// An optimistic-concurrency check failed: the row changed since it was read.
    #[error("write conflict")]
    Conflict,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A task as it was at one transition, kept so a rollback can restore it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskSnapshot {
    pub task_id: Uuid,
    /// The state the task entered at this transition.
    pub status: TaskStatus,
    pub task: Task,
    /// Why the transition happened (`created`, `assigned`, `submitted`, …).
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

/// The first result of an idempotent call, kept so a retry returns it unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// The operation and caller the key belongs to, e.g. `create_task`.
    pub scope: String,
    pub key: String,
    /// sha256 of the request, to refuse the same key with a different body.
    pub fingerprint: String,
    /// The JSON the first call answered.
    pub response: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// A downstream MCP server's last known state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DownstreamConnection {
    pub name: String,
    pub role: String,
    /// `connected`, `disconnected` or `failed`.
    pub status: String,
    pub last_ping_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub latency_ms: Option<f64>,
    pub updated_at: DateTime<Utc>,
}

/// Everything one operation changes, committed atomically or not at all.
///
/// Agents and tasks carry their *new* `version`: version 1 inserts; a higher version
/// updates only if the stored row still has `version - 1` (else [`StoreError::Conflict`]).
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub agents: Vec<Agent>,
    pub tasks: Vec<Task>,
    /// Appended to their task's chain; a taken `chain_index` is a Conflict.
    pub evidence: Vec<Evidence>,
    pub verifications: Vec<Verification>,
    pub actions: Vec<EnforcementAction>,
    pub task_snapshots: Vec<TaskSnapshot>,
    pub reliability: Vec<Reliability>,
    /// A taken (scope, key) is `Duplicate("idempotency")`.
    pub idempotency: Vec<IdempotencyRecord>,
    /// API keys, inserted or replaced by id.
    pub api_keys: Vec<crate::auth::ApiKey>,
    /// Appended to the audit log, in order; the store gives each its position and hash
    /// at the head of the chain inside the commit's transaction.
    pub audit: Vec<crate::audit::AuditDraft>,
    /// What this batch's change tells listeners; stored with it, published after it.
    pub events: Vec<crate::events::Event>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
            && self.tasks.is_empty()
            && self.evidence.is_empty()
            && self.verifications.is_empty()
            && self.actions.is_empty()
            && self.task_snapshots.is_empty()
            && self.reliability.is_empty()
            && self.idempotency.is_empty()
            && self.api_keys.is_empty()
            && self.audit.is_empty()
            && self.events.is_empty()
    }
}

/// How busy the store's connection pools are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
}

/// Where a page of a list starts, and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// The opaque cursor of the previous page's `next_cursor`, decoded.
    pub after: Option<i64>,
    pub limit: i64,
}

/// One page of a list, with the cursor of the next page when there is one.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    pub status: Option<AgentStatus>,
    /// Agents that have this capability.
    pub capability: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    pub status: Option<TaskStatus>,
    pub agent_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionFilter {
    pub agent_id: Option<Uuid>,
    pub action: Option<ActionKind>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// A span of time: from `since` (inclusive) to `until` (exclusive), open where `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl TimeRange {
    pub fn since(since: Option<DateTime<Utc>>) -> Self {
        Self { since, until: None }
    }
}

/// The storage interface both backends implement; one conformance suite runs on both.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// A cheap round trip, for health checks.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the pool, waiting for in-flight work.
    async fn close(&self);
    /// Connections open, idle and allowed, over all of the store's pools.
    fn pool_usage(&self) -> PoolUsage;

    /// Commits the batch in one transaction.
    async fn commit(&self, batch: WriteBatch) -> StoreResult<()>;

    /// The API key with this id (revoked ones included).
    async fn api_key(&self, id: &str) -> StoreResult<Option<crate::auth::ApiKey>>;
    /// Every API key, oldest first.
    async fn list_api_keys(&self) -> StoreResult<Vec<crate::auth::ApiKey>>;

    async fn agent(&self, id: Uuid) -> StoreResult<Option<Agent>>;
    async fn agent_by_name(&self, name: &str) -> StoreResult<Option<Agent>>;
    /// Agents in registration order.
    async fn list_agents(&self, filter: &AgentFilter, page: Page) -> StoreResult<Listed<Agent>>;
    /// Every agent that is not deregistered and has all of `capabilities`.
    async fn capable_agents(&self, capabilities: &[String]) -> StoreResult<Vec<Agent>>;

    async fn task(&self, id: Uuid) -> StoreResult<Option<Task>>;
    async fn tasks(&self, ids: &[Uuid]) -> StoreResult<Vec<Task>>;
    /// Tasks newest first.
    async fn list_tasks(&self, filter: &TaskFilter, page: Page) -> StoreResult<Listed<Task>>;
    /// Open (assigned, in progress, submitted) tasks per agent: of these agents, or of all
    /// when None.
    async fn open_task_counts(&self, agents: Option<&[Uuid]>) -> StoreResult<HashMap<Uuid, i64>>;
    /// An agent's open tasks, oldest first.
    async fn open_tasks_of(&self, agent_id: Uuid) -> StoreResult<Vec<Task>>;
    /// Assigned and in-progress tasks whose deadline is at or before `now` and whose holder
    /// had them before it (a task handed on after its deadline is not overdue again),
    /// oldest first, a page at a time.
    async fn overdue_tasks(&self, now: DateTime<Utc>, page: Page) -> StoreResult<Listed<Task>>;
    /// Tasks whose `depends_on` names `task_id`.
    async fn dependents_of(&self, task_id: Uuid) -> StoreResult<Vec<Task>>;
    /// Tasks assigned to the agent since `since`, and how many of them it submitted.
    async fn task_counts(
        &self,
        agent_id: Uuid,
        since: Option<DateTime<Utc>>,
    ) -> StoreResult<TaskCounts>;

    /// A task's evidence chain in order.
    async fn evidence_for_task(&self, task_id: Uuid) -> StoreResult<Vec<Evidence>>;
    /// A task and the last link of its evidence chain, if it has one (what the next link
    /// chains on from), read together in one statement without the rest of the chain.
    async fn task_with_last_evidence(
        &self,
        task_id: Uuid,
    ) -> StoreResult<Option<(Task, Option<Evidence>)>>;
    /// A task's verifications, oldest first.
    async fn verifications_for_task(&self, task_id: Uuid) -> StoreResult<Vec<Verification>>;
    /// An agent's latest `limit` verifications in `range`, oldest first.
    async fn verifications_for_agent(
        &self,
        agent_id: Uuid,
        range: TimeRange,
        limit: i64,
    ) -> StoreResult<Vec<Verification>>;
    /// The totals of an agent's verifications in `range`, computed where the data is, so
    /// their cost in memory does not grow with the agent's history. `pending`, a verdict
    /// about to be stored, counts as the latest.
    async fn verdict_summary(
        &self,
        agent_id: Uuid,
        range: TimeRange,
        pending: Option<&Verification>,
    ) -> StoreResult<VerdictSummary>;
    /// A task's snapshots, oldest first.
    async fn task_snapshots(&self, task_id: Uuid) -> StoreResult<Vec<TaskSnapshot>>;

    /// Enforcement actions, newest first.
    async fn list_actions(
        &self,
        filter: &ActionFilter,
        page: Page,
    ) -> StoreResult<Listed<EnforcementAction>>;

    async fn idempotency(&self, scope: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>>;

    async fn downstream_connections(&self) -> StoreResult<Vec<DownstreamConnection>>;
    /// Inserts or replaces the row named `connection.name`.
    async fn record_downstream(&self, connection: &DownstreamConnection) -> StoreResult<()>;

    /// Audit entries after position `after` (from the start when None), oldest first, at
    /// most `limit`. A row whose body cannot be read comes back with outcome `unreadable`,
    /// which never matches its hash.
    async fn audit_log(&self, after: Option<i64>, limit: i64) -> StoreResult<Vec<AuditRecord>>;
    /// The log's length and its last entry's hash (0 and 64 zeros when empty).
    async fn audit_head(&self) -> StoreResult<(i64, String)>;
    /// Stores a signed checkpoint of the audit log.
    async fn record_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()>;
    /// Every stored checkpoint, oldest first.
    async fn audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>>;
    /// The checkpoint stored last.
    async fn latest_checkpoint(&self) -> StoreResult<Option<Checkpoint>>;
    /// Ids of the tasks that have evidence, in id order, after `after`, at most `limit`.
    async fn evidence_task_ids(&self, after: Option<Uuid>, limit: i64) -> StoreResult<Vec<Uuid>>;

    /// Stored events after position `after` (from the start when None), oldest first, at
    /// most `limit`, each with its position.
    async fn events_after(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<(i64, crate::events::Event)>>;
    /// Where the event with this id stands in the stream (None once pruned or never stored).
    async fn event_position(&self, id: Uuid) -> StoreResult<Option<i64>>;
    /// Events committed before `before` that no instance has published yet (its committer
    /// crashed first), oldest first, at most `limit`.
    async fn unpublished_events(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::events::Event>>;
    /// Records that these events reached the event bus (and Redis, when configured).
    async fn mark_published(&self, ids: &[Uuid]) -> StoreResult<()>;
    /// The newest `limit` events, oldest first, each with its position.
    async fn latest_events(&self, limit: i64) -> StoreResult<Vec<(i64, crate::events::Event)>>;
    /// An agent's reliability snapshots for `window` since `since`, oldest first, at most
    /// `limit` (the newest ones when there are more).
    async fn reliability_history(
        &self,
        agent_id: Uuid,
        window: crate::reliability::Window,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Reliability>>;
    /// Deletes events and reliability snapshots older than the given times; returns how
    /// many of each went. Evidence, verdicts, actions and the audit log are never pruned.
    async fn prune(
        &self,
        events_before: DateTime<Utc>,
        snapshots_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)>;
}

/// Opens the store a URL names (`sqlite://PATH`, `sqlite::memory:`, `postgres://…`) and
/// applies its migrations.
pub async fn connect(url: &str) -> anyhow::Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(PostgresStore::connect(url).await?)
        } else if url.starts_with("sqlite:") {
            Arc::new(SqliteStore::connect(url).await?)
        } else {
            anyhow::bail!(
                "DATABASE_URL must start with sqlite:// or postgres:// (got {})",
                redact_url(url)
            );
        };
    store.migrate().await?;
    Ok(store)
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            super::redact_url("postgres://ares:hunter2@db:5432/ares"),
            "postgres://ares:***@db:5432/ares"
        );
        assert_eq!(
            super::redact_url("sqlite:///tmp/a.db"),
            "sqlite:///tmp/a.db"
        );
    }
}
