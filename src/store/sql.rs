//! The SQL both backends share, compiled once per backend.
//!
//! `sqlite.rs` and `postgres.rs` each include this file with `#[path = "sql.rs"] mod sql;`
//! after defining, in themselves:
//! - `type Db` (the sqlx database) and `type Backend` (the store struct),
//! - `const BACKEND: &str` and `static MIGRATOR: sqlx::migrate::Migrator`,
//! - `Backend::reader()` / `Backend::writer()` (the pools reads and writes go through),
//!   and `Backend::label()` (where the database is, password redacted),
//! - `fn unavailable_code(code: &str) -> bool`, which database error codes mean the
//!   database cannot be reached,
//! - `const AUDIT_LOCK` (see `audit_sql.rs`) and `const ONE_TRIP` (see `writes_sql.rs`).
//!
//! Every statement uses `$N` placeholders and binds only text, 64-bit integers and 64-bit
//! floats, which both drivers handle the same way.

use super::{BACKEND, Backend, Db, MIGRATOR, unavailable_code};
use crate::agents::Agent;
use crate::audit::{AuditRecord, Checkpoint};
use crate::enforcement::EnforcementAction;
use crate::evidence::Evidence;
use crate::reliability::{Reliability, TaskCounts};
use crate::store::group::{Pending, for_each_batch};
use crate::store::{
    ActionFilter, AgentFilter, DownstreamConnection, IdempotencyRecord, Listed, Page, Store,
    StoreError, StoreResult, TaskFilter, TaskSnapshot, TimeRange, WriteBatch,
};
use crate::tasks::{Task, TaskStatus};
use crate::verification::{VerdictSummary, Verification};
use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use uuid::Uuid;

// The audit log's statements, kept apart to keep this file readable.
#[path = "audit_sql.rs"]
mod audit_sql;
use audit_sql::ChainHead;
#[path = "events_sql.rs"]
mod events_sql;
#[path = "keys_sql.rs"]
mod keys_sql;
#[path = "verdicts_sql.rs"]
mod verdicts_sql;
#[path = "writes_sql.rs"]
mod writes_sql;
use audit_sql::audit_writes;
use events_sql::event_writes;
use keys_sql::key_writes;
use verdicts_sql::verification_write;
use writes_sql::Write;

type Query<'q> = sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>;
type Tx = sqlx::Transaction<'static, Db>;

/// Statuses a task counts as submitted in [`Store::task_counts`].
const SUBMITTED: [TaskStatus; 3] = [
    TaskStatus::Submitted,
    TaskStatus::Verified,
    TaskStatus::Rejected,
];

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone)]
enum Arg {
    Text(String),
    Int(i64),
    OptText(Option<String>),
    OptInt(Option<i64>),
    Real(f64),
    OptReal(Option<f64>),
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<Uuid> for Arg {
    fn from(v: Uuid) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<Uuid>> for Arg {
    fn from(v: Option<Uuid>) -> Self {
        Arg::OptText(v.map(|u| u.to_string()))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}

fn bind(query: Query<'_>, arg: Arg) -> Query<'_> {
    match arg {
        Arg::Text(v) => query.bind(v),
        Arg::Int(v) => query.bind(v),
        Arg::OptText(v) => query.bind(v),
        Arg::OptInt(v) => query.bind(v),
        Arg::Real(v) => query.bind(v),
        Arg::OptReal(v) => query.bind(v),
    }
}

fn query(sql: &str, args: Vec<Arg>) -> Query<'_> {
    args.into_iter().fold(sqlx::query(sql), bind)
}

/// A statement under construction: text plus the values of its placeholders.
#[derive(Debug, Default)]
struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    fn new(text: &str) -> Self {
        Self {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Binds `arg` and returns its placeholder.
    fn arg(&mut self, arg: impl Into<Arg>) -> String {
        self.args.push(arg.into());
        format!("${}", self.args.len())
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends ` WHERE …` / ` AND …` for each condition.
    fn push_where(&mut self, conditions: &[String]) {
        for (i, c) in conditions.iter().enumerate() {
            self.text.push_str(if i == 0 { " WHERE " } else { " AND " });
            self.text.push_str(c);
        }
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or_default()
}

/// `'a','b'` for an IN list of statuses (all static identifiers, never user input).
fn status_list(statuses: &[TaskStatus]) -> String {
    statuses
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// `|a|b|`: a list stored so that `LIKE '%|a|%'` finds one element.
fn bar_list<I: IntoIterator<Item = S>, S: Display>(items: I) -> String {
    let mut out = String::from("|");
    for item in items {
        out.push_str(&item.to_string());
        out.push('|');
    }
    out
}

/// A LIKE pattern (with `ESCAPE '\'`) that matches `|value|` anywhere, taking `value`
/// literally.
pub(crate) fn element_pattern(value: &str) -> String {
    let mut out = String::from("%|");
    for c in value.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("|%");
    out
}

fn to_body<T: Serialize>(table: &str, id: impl Display, value: &T) -> StoreResult<String> {
    serde_json::to_string(value)
        .with_context(|| format!("{BACKEND}: encoding {table} row {id}"))
        .map_err(StoreError::Internal)
}

fn from_body<T: DeserializeOwned>(table: &str, id: &str, body: &str) -> StoreResult<T> {
    serde_json::from_str(body)
        .with_context(|| format!("{BACKEND}: decoding the body of {table} row {id}"))
        .map_err(StoreError::Internal)
}

/// One `seq, rid, body` row decoded.
fn decode_row<T: DeserializeOwned>(
    table: &str,
    row: &<Db as sqlx::Database>::Row,
) -> StoreResult<(i64, T)> {
    let columns = || -> Result<(i64, String, String), sqlx::Error> {
        Ok((
            row.try_get("seq")?,
            row.try_get("rid")?,
            row.try_get("body")?,
        ))
    };
    let (seq, rid, body) = columns()
        .with_context(|| format!("{BACKEND}: reading a {table} row"))
        .map_err(StoreError::Internal)?;
    Ok((seq, from_body(table, &rid, &body)?))
}

fn parse_uuid(table: &str, column: &str, value: &str) -> StoreResult<Uuid> {
    Uuid::parse_str(value)
        .with_context(|| format!("{BACKEND}: {table}.{column} holds {value:?}, not a UUID"))
        .map_err(StoreError::Internal)
}

/// Cuts a `limit + 1` fetch down to one page and says where the next starts.
fn paginate<T>(mut rows: Vec<(i64, T)>, limit: usize) -> Listed<T> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next_cursor = if more {
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    Listed {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next_cursor,
    }
}

fn page_limit(page: Page) -> usize {
    page.limit.clamp(1, 10_000) as usize
}

/// Whether the error means the database cannot be reached right now.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| unavailable_code(&code)),
        _ => false,
    }
}

/// The constraint a unique violation names (or, where the driver names none, its
/// message, e.g. SQLite's `UNIQUE constraint failed: agents.name`).
fn unique_violation(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => Some(
            db.constraint()
                .map(str::to_string)
                .unwrap_or_else(|| db.message().to_string()),
        ),
        _ => None,
    }
}

/// How a unique violation on one insert or update is reported.
#[derive(Clone, Copy)]
enum OnUnique {
    /// A row with this id (or chain position) already exists: someone else wrote first.
    Conflict,
    /// `agents.name` is taken (anything else is a Conflict).
    AgentName,
    Idempotency,
}

impl Backend {
    /// Classifies a driver error from doing `what`.
    fn fail(&self, e: sqlx::Error, what: impl Display) -> StoreError {
        if is_unavailable(&e) {
            tracing::warn!(backend = BACKEND, error = %e, "store unavailable");
            return StoreError::Unavailable(format!(
                "{BACKEND} database at {} could not {what}: {e}",
                self.label()
            ));
        }
        StoreError::Internal(anyhow!(e).context(format!("{BACKEND}: could not {what}")))
    }

    /// Like [`Self::fail`], but reports unique violations as `on_unique` says.
    fn fail_write(&self, e: sqlx::Error, on_unique: OnUnique, what: impl Display) -> StoreError {
        if let Some(constraint) = unique_violation(&e) {
            tracing::debug!(backend = BACKEND, %constraint, "unique violation");
            return match on_unique {
                OnUnique::Idempotency => StoreError::Duplicate("idempotency"),
                OnUnique::AgentName
                    if constraint.contains("agents_name") || constraint.contains("agents.name") =>
                {
                    StoreError::Duplicate("agents.name")
                }
                OnUnique::AgentName | OnUnique::Conflict => StoreError::Conflict,
            };
        }
        self.fail(e, what)
    }

    /// Runs a write statement in the transaction; returns the rows it affected.
    async fn exec(
        &self,
        tx: &mut Tx,
        sql: &str,
        args: Vec<Arg>,
        on_unique: OnUnique,
        what: impl Display,
    ) -> StoreResult<u64> {
        query(sql, args)
            .execute(&mut **tx)
            .await
            .map(|done| done.rows_affected())
            .map_err(|e| self.fail_write(e, on_unique, what))
    }

    /// Fetches `seq, rid, body` rows and decodes each body.
    async fn fetch<T: DeserializeOwned>(
        &self,
        table: &str,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Vec<(i64, T)>> {
        let rows = query(sql, args)
            .fetch_all(self.reader())
            .await
            .map_err(|e| self.fail(e, format!("read {table}")))?;
        rows.iter().map(|row| decode_row(table, row)).collect()
    }

    async fn fetch_items<T: DeserializeOwned>(
        &self,
        table: &str,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Vec<T>> {
        Ok(self
            .fetch(table, sql, args)
            .await?
            .into_iter()
            .map(|(_, item)| item)
            .collect())
    }

    async fn fetch_one<T: DeserializeOwned>(
        &self,
        table: &str,
        sql: &str,
        args: Vec<Arg>,
    ) -> StoreResult<Option<T>> {
        Ok(self.fetch_items(table, sql, args).await?.into_iter().next())
    }

    /// Writes one batch in `tx`; `head` is the audit chain's head as `tx` left it (see
    /// [`Self::append_audit`]). The batch's statements go to the database together (see
    /// [`writes_sql`]).
    async fn write_batch(
        &self,
        tx: &mut Tx,
        batch: &WriteBatch,
        head: &mut Option<ChainHead>,
    ) -> StoreResult<()> {
        let mut writes = Vec::new();
        for agent in &batch.agents {
            agent_writes(agent, &mut writes)?;
        }
        key_writes(&batch.api_keys, &mut writes)?;
        for task in &batch.tasks {
            task_writes(task, &mut writes)?;
        }
        for e in &batch.evidence {
            writes.push(Write::new(
                "INSERT INTO evidence (id, task_id, agent_id, chain_index, created_us, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                vec![
                    e.id.into(),
                    e.task_id.into(),
                    e.agent_id.into(),
                    e.chain_index.into(),
                    micros(e.created_at).into(),
                    to_body("evidence", e.id, e)?.into(),
                ],
                OnUnique::Conflict,
                format!("append evidence {} to task {}", e.id, e.task_id),
            ));
        }
        for v in &batch.verifications {
            writes.push(verification_write(v)?);
        }
        for a in &batch.actions {
            writes.push(Write::new(
                "INSERT INTO enforcement_actions (id, agent_id, action, created_us, body) \
                 VALUES ($1, $2, $3, $4, $5)",
                vec![
                    a.id.into(),
                    a.agent_id.into(),
                    a.action.as_str().into(),
                    micros(a.created_at).into(),
                    to_body("enforcement_actions", a.id, a)?.into(),
                ],
                OnUnique::Conflict,
                format!("record enforcement action {}", a.id),
            ));
        }
        for s in &batch.task_snapshots {
            writes.push(Write::new(
                "INSERT INTO task_snapshots (task_id, status, created_us, body) \
                 VALUES ($1, $2, $3, $4)",
                vec![
                    s.task_id.into(),
                    s.status.as_str().into(),
                    micros(s.created_at).into(),
                    to_body("task_snapshots", s.task_id, s)?.into(),
                ],
                OnUnique::Conflict,
                format!("snapshot task {}", s.task_id),
            ));
        }
        for r in &batch.reliability {
            writes.push(Write::new(
                "INSERT INTO reliability_snapshots (agent_id, time_window, created_us, body) \
                 VALUES ($1, $2, $3, $4)",
                vec![
                    r.agent_id.into(),
                    r.window.as_str().into(),
                    micros(r.computed_at).into(),
                    to_body::<Reliability>("reliability_snapshots", r.agent_id, r)?.into(),
                ],
                OnUnique::Conflict,
                format!("record reliability of agent {}", r.agent_id),
            ));
        }
        for i in &batch.idempotency {
            writes.push(Write::new(
                "INSERT INTO idempotency (scope, key, fingerprint, created_us, body) \
                 VALUES ($1, $2, $3, $4, $5)",
                vec![
                    i.scope.as_str().into(),
                    i.key.as_str().into(),
                    i.fingerprint.as_str().into(),
                    micros(i.created_at).into(),
                    to_body("idempotency", format!("{}/{}", i.scope, i.key), &i.response)?.into(),
                ],
                OnUnique::Idempotency,
                format!("record idempotency key {}/{}", i.scope, i.key),
            ));
        }
        // The audit entries go last, so that the head of the chain is locked and read as
        // late as can be: on SQLite, once the transaction already holds the write lock.
        if !batch.audit.is_empty() && head.is_none() {
            *head = Some(
                self.write_and_lock_head(tx, std::mem::take(&mut writes))
                    .await?,
            );
        }
        audit_writes(&batch.audit, head, &mut writes)?;
        event_writes(&batch.events, &mut writes)?;
        self.run_writes(tx, writes).await
    }
}

/// The statements that write `agent`: an insert for its first version, an update from the
/// one before for any later one.
fn agent_writes(agent: &Agent, writes: &mut Vec<Write>) -> StoreResult<()> {
    let body = to_body("agents", agent.id, agent)?;
    let capabilities = bar_list(&agent.capabilities);
    let what = format!("write agent {} (version {})", agent.id, agent.version);
    writes.push(match agent.version {
        1 => Write::new(
            "INSERT INTO agents (id, name, status, capabilities, version, created_us, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                agent.id.into(),
                agent.name.as_str().into(),
                agent.status.as_str().into(),
                capabilities.into(),
                agent.version.into(),
                micros(agent.created_at).into(),
                body.into(),
            ],
            OnUnique::AgentName,
            what,
        ),
        v if v > 1 => Write::new(
            "UPDATE agents SET name = $2, status = $3, capabilities = $4, version = $5, \
             body = $6 WHERE id = $1 AND version = $7",
            vec![
                agent.id.into(),
                agent.name.as_str().into(),
                agent.status.as_str().into(),
                capabilities.into(),
                v.into(),
                body.into(),
                (v - 1).into(),
            ],
            OnUnique::AgentName,
            what,
        )
        .versioned(),
        v => {
            return Err(StoreError::Internal(anyhow!(
                "agent {} has version {v}; versions start at 1",
                agent.id
            )));
        }
    });
    Ok(())
}

/// The statements that write `task`, as [`agent_writes`] does an agent; a new task's
/// dependencies, fixed when it is created, go with it.
fn task_writes(task: &Task, writes: &mut Vec<Write>) -> StoreResult<()> {
    let body = to_body("tasks", task.id, task)?;
    let depends_on = bar_list(&task.depends_on);
    let what = format!("write task {} (version {})", task.id, task.version);
    // The row's values in the order both statements number them; the seventh is when the
    // task was created for an insert, the version being replaced for an update.
    let values = move |seventh: i64| -> Vec<Arg> {
        vec![
            task.id.into(),
            task.status.as_str().into(),
            task.agent_id.into(),
            depends_on.into(),
            task.assigned_at.map(micros).into(),
            task.version.into(),
            seventh.into(),
            body.into(),
            task.deadline.map(micros).into(),
        ]
    };
    match task.version {
        1 => {
            writes.push(Write::new(
                "INSERT INTO tasks (id, status, agent_id, depends_on, assigned_us, version, \
                 created_us, body, deadline_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                values(micros(task.created_at)),
                OnUnique::Conflict,
                what,
            ));
            for dependency in &task.depends_on {
                writes.push(Write::new(
                    "INSERT INTO task_dependencies (task_id, depends_on) VALUES ($1, $2)",
                    vec![task.id.into(), (*dependency).into()],
                    OnUnique::Conflict,
                    format!("record that task {} depends on {dependency}", task.id),
                ));
            }
        }
        v if v > 1 => writes.push(
            Write::new(
                "UPDATE tasks SET status = $2, agent_id = $3, depends_on = $4, \
                 assigned_us = $5, version = $6, body = $8, deadline_us = $9 \
                 WHERE id = $1 AND version = $7",
                values(v - 1),
                OnUnique::Conflict,
                what,
            )
            .versioned(),
        ),
        v => {
            return Err(StoreError::Internal(anyhow!(
                "task {} has version {v}; versions start at 1",
                task.id
            )));
        }
    }
    Ok(())
}

/// Group commit (see [`crate::store::group`]): the transactions themselves.
impl Backend {
    /// Writes `group` in one transaction and reports each batch's outcome.
    ///
    /// First all or nothing: no savepoints, and the audit chain's head is read once for
    /// the group, so a batch costs only its own statements. Should a batch of several
    /// fail, that transaction is dropped and the group written again with a savepoint
    /// around each batch, so that only the failing one is refused. Should the database be
    /// unavailable, every batch is told so at once.
    pub(super) async fn commit_group(&self, group: Vec<Pending>) {
        let error = match self.write_whole(&group).await {
            Ok(()) => {
                for pending in group {
                    let _ = pending.done.send(Ok(()));
                }
                return;
            }
            // One batch of several failed on what it writes: the others go without it. Not
            // when the database is out of reach: writing again would only wait again.
            Err(Undone::Batch(e))
                if group.len() > 1 && !matches!(e, StoreError::Unavailable(_)) =>
            {
                return self.commit_each(group).await;
            }
            Err(Undone::Batch(e) | Undone::Group(e)) => e,
        };
        if group.len() == 1 {
            if let Some(pending) = group.into_iter().next() {
                let _ = pending.done.send(Err(error));
            }
            return;
        }
        for pending in group {
            let _ = pending.done.send(Err(for_each_batch(&error)));
        }
    }

    /// Writes every batch in one transaction, or none.
    async fn write_whole(&self, group: &[Pending]) -> Result<(), Undone> {
        let mut tx = self
            .writer()
            .begin()
            .await
            .map_err(|e| Undone::Group(self.fail(e, "begin a transaction")))?;
        let mut head = None;
        for pending in group {
            self.write_batch(&mut tx, &pending.batch, &mut head)
                .await
                .map_err(Undone::Batch)?;
        }
        tx.commit()
            .await
            .map_err(|e| Undone::Group(self.fail_write(e, OnUnique::Conflict, "commit")))
    }

    /// Writes `group` in one transaction, each batch in a savepoint, and reports each
    /// batch's outcome.
    async fn commit_each(&self, group: Vec<Pending>) {
        let mut tx = match self.writer().begin().await {
            Ok(tx) => tx,
            Err(e) => {
                let error = self.fail(e, "begin a transaction");
                for pending in group {
                    let _ = pending.done.send(Err(for_each_batch(&error)));
                }
                return;
            }
        };
        let mut written = Vec::with_capacity(group.len());
        let mut batches = group.into_iter();
        while let Some(Pending { batch, done }) = batches.next() {
            match self.write_in_savepoint(&mut tx, &batch).await {
                Ok(()) => written.push(done),
                Err(Undone::Batch(e)) => {
                    let _ = done.send(Err(e));
                }
                Err(Undone::Group(e)) => {
                    // The transaction is unusable: nothing in it will be committed. It
                    // rolls back when dropped.
                    let _ = done.send(Err(for_each_batch(&e)));
                    for done in written.into_iter().chain(batches.map(|p| p.done)) {
                        let _ = done.send(Err(for_each_batch(&e)));
                    }
                    return;
                }
            }
        }
        if written.is_empty() {
            // Nothing left to commit: every batch was rolled back to its savepoint.
            return;
        }
        match tx.commit().await {
            Ok(()) => {
                for done in written {
                    let _ = done.send(Ok(()));
                }
            }
            Err(e) => {
                let error = self.fail_write(e, OnUnique::Conflict, "commit");
                for done in written {
                    let _ = done.send(Err(for_each_batch(&error)));
                }
            }
        }
    }

    /// Writes one batch of a group inside a savepoint; a batch that fails leaves nothing
    /// behind in the transaction. The audit head is read afresh: an earlier batch's
    /// entries may have been rolled back.
    async fn write_in_savepoint(&self, tx: &mut Tx, batch: &WriteBatch) -> Result<(), Undone> {
        self.savepoint(tx, "SAVEPOINT ares_batch").await?;
        match self.write_batch(tx, batch, &mut None).await {
            Ok(()) => self.savepoint(tx, "RELEASE SAVEPOINT ares_batch").await,
            Err(e) => {
                self.savepoint(tx, "ROLLBACK TO SAVEPOINT ares_batch")
                    .await?;
                self.savepoint(tx, "RELEASE SAVEPOINT ares_batch").await?;
                Err(Undone::Batch(e))
            }
        }
    }

    async fn savepoint(&self, tx: &mut Tx, statement: &'static str) -> Result<(), Undone> {
        sqlx::query(statement)
            .execute(&mut **tx)
            .await
            .map(|_| ())
            .map_err(|e| Undone::Group(self.fail(e, statement.to_lowercase())))
    }
}

/// Why a batch of a group was not written.
enum Undone {
    /// This batch failed and was rolled back to its savepoint; the group goes on.
    Batch(StoreError),
    /// The transaction itself failed: no batch of the group is written.
    Group(StoreError),
}

const AGENT_COLUMNS: &str = "SELECT seq, id AS rid, body FROM agents";
const TASK_COLUMNS: &str = "SELECT seq, id AS rid, body FROM tasks";

#[async_trait]
impl Store for Backend {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR.run(self.writer()).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => self.fail(e, "apply migrations"),
            other => StoreError::Internal(
                anyhow!(other).context(format!("{BACKEND}: could not apply migrations")),
            ),
        })
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(self.reader())
            .await
            .map(|_| ())
            .map_err(|e| self.fail(e, "answer a ping"))
    }

    async fn close(&self) {
        self.writer().close().await;
        self.reader().close().await;
    }

    fn pool_usage(&self) -> crate::store::PoolUsage {
        let mut pools = vec![self.writer()];
        if !std::ptr::eq(self.reader(), self.writer()) {
            pools.push(self.reader());
        }
        pools
            .into_iter()
            .fold(crate::store::PoolUsage::default(), |usage, pool| {
                crate::store::PoolUsage {
                    open: usage.open + pool.size(),
                    idle: usage.idle + pool.num_idle() as u32,
                    max: usage.max + pool.options().get_max_connections(),
                }
            })
    }

    #[tracing::instrument(skip_all, fields(
        backend = BACKEND,
        agents = batch.agents.len(),
        tasks = batch.tasks.len(),
        evidence = batch.evidence.len(),
        verifications = batch.verifications.len(),
        actions = batch.actions.len(),
        agent_ids = ?batch.agents.iter().map(|a| a.id).collect::<Vec<_>>(),
        task_ids = ?batch.tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
    ))]
    async fn commit(&self, batch: WriteBatch) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.group
            .commit(batch, |group| {
                let store = self.clone();
                Box::pin(async move { store.commit_group(group).await })
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, key_id = %id))]
    async fn api_key(&self, id: &str) -> StoreResult<Option<crate::auth::ApiKey>> {
        self.read_api_key(id).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn list_api_keys(&self) -> StoreResult<Vec<crate::auth::ApiKey>> {
        self.read_api_keys().await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, agent_id = %id))]
    async fn agent(&self, id: Uuid) -> StoreResult<Option<Agent>> {
        self.fetch_one(
            "agents",
            &format!("{AGENT_COLUMNS} WHERE id = $1"),
            vec![id.into()],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, name = %name))]
    async fn agent_by_name(&self, name: &str) -> StoreResult<Option<Agent>> {
        self.fetch_one(
            "agents",
            &format!("{AGENT_COLUMNS} WHERE name = $1"),
            vec![name.into()],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, ?filter, after = ?page.after, limit = page.limit))]
    async fn list_agents(&self, filter: &AgentFilter, page: Page) -> StoreResult<Listed<Agent>> {
        let limit = page_limit(page);
        let mut sql = Sql::new(AGENT_COLUMNS);
        let mut conditions = Vec::new();
        if let Some(status) = filter.status {
            conditions.push(format!("status = {}", sql.arg(status.as_str())));
        }
        if let Some(capability) = &filter.capability {
            let p = sql.arg(element_pattern(capability));
            conditions.push(format!(r"capabilities LIKE {p} ESCAPE '\'"));
        }
        if let Some(after) = page.after {
            conditions.push(format!("seq > {}", sql.arg(after)));
        }
        sql.push_where(&conditions);
        let l = sql.arg(limit as i64 + 1);
        sql.push(&format!(" ORDER BY seq ASC LIMIT {l}"));
        let rows = self.fetch("agents", &sql.text, sql.args).await?;
        Ok(paginate(rows, limit))
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, ?capabilities))]
    async fn capable_agents(&self, capabilities: &[String]) -> StoreResult<Vec<Agent>> {
        let mut sql = Sql::new(AGENT_COLUMNS);
        let mut conditions = vec!["status <> 'deregistered'".to_string()];
        for capability in capabilities {
            let p = sql.arg(element_pattern(capability));
            conditions.push(format!(r"capabilities LIKE {p} ESCAPE '\'"));
        }
        sql.push_where(&conditions);
        sql.push(" ORDER BY seq ASC");
        self.fetch_items("agents", &sql.text, sql.args).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, task_id = %id))]
    async fn task(&self, id: Uuid) -> StoreResult<Option<Task>> {
        self.fetch_one(
            "tasks",
            &format!("{TASK_COLUMNS} WHERE id = $1"),
            vec![id.into()],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, count = ids.len()))]
    async fn tasks(&self, ids: &[Uuid]) -> StoreResult<Vec<Task>> {
        // Answered in the order asked, each task once, missing ones left out.
        let mut wanted: Vec<Uuid> = Vec::with_capacity(ids.len());
        let mut seen = HashSet::new();
        for id in ids {
            if seen.insert(*id) {
                wanted.push(*id);
            }
        }
        let mut found: HashMap<Uuid, Task> = HashMap::with_capacity(wanted.len());
        for chunk in wanted.chunks(500) {
            let mut sql = Sql::new(TASK_COLUMNS);
            let placeholders: Vec<String> = chunk.iter().map(|id| sql.arg(*id)).collect();
            sql.push(&format!(" WHERE id IN ({})", placeholders.join(", ")));
            for task in self
                .fetch_items::<Task>("tasks", &sql.text, sql.args)
                .await?
            {
                found.insert(task.id, task);
            }
        }
        Ok(wanted.iter().filter_map(|id| found.remove(id)).collect())
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, ?filter, after = ?page.after, limit = page.limit))]
    async fn list_tasks(&self, filter: &TaskFilter, page: Page) -> StoreResult<Listed<Task>> {
        let limit = page_limit(page);
        let mut sql = Sql::new(TASK_COLUMNS);
        let mut conditions = Vec::new();
        if let Some(status) = filter.status {
            conditions.push(format!("status = {}", sql.arg(status.as_str())));
        }
        if let Some(agent_id) = filter.agent_id {
            conditions.push(format!("agent_id = {}", sql.arg(agent_id)));
        }
        if let Some(after) = page.after {
            conditions.push(format!("seq < {}", sql.arg(after)));
        }
        sql.push_where(&conditions);
        let l = sql.arg(limit as i64 + 1);
        sql.push(&format!(" ORDER BY seq DESC LIMIT {l}"));
        let rows = self.fetch("tasks", &sql.text, sql.args).await?;
        Ok(paginate(rows, limit))
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn open_task_counts(&self, agents: Option<&[Uuid]>) -> StoreResult<HashMap<Uuid, i64>> {
        let mut sql = Sql::new(&format!(
            "SELECT agent_id, COUNT(*) AS open_tasks FROM tasks \
             WHERE status IN ({}) AND agent_id IS NOT NULL",
            status_list(&TaskStatus::OPEN)
        ));
        if let Some(agents) = agents {
            if agents.is_empty() {
                return Ok(HashMap::new());
            }
            let placeholders: Vec<String> = agents.iter().map(|id| sql.arg(*id)).collect();
            sql.push(&format!(" AND agent_id IN ({})", placeholders.join(", ")));
        }
        sql.push(" GROUP BY agent_id");
        let rows = query(&sql.text, sql.args)
            .fetch_all(self.reader())
            .await
            .map_err(|e| self.fail(e, "count open tasks"))?;
        let mut counts = HashMap::with_capacity(rows.len());
        for row in &rows {
            let agent_id: String = row
                .try_get("agent_id")
                .map_err(|e| self.fail(e, "read open task counts"))?;
            let open: i64 = row
                .try_get("open_tasks")
                .map_err(|e| self.fail(e, "read open task counts"))?;
            counts.insert(parse_uuid("tasks", "agent_id", &agent_id)?, open);
        }
        Ok(counts)
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %agent_id))]
    async fn open_tasks_of(&self, agent_id: Uuid) -> StoreResult<Vec<Task>> {
        let sql = format!(
            "{TASK_COLUMNS} WHERE agent_id = $1 AND status IN ({}) ORDER BY seq ASC",
            status_list(&TaskStatus::OPEN)
        );
        self.fetch_items("tasks", &sql, vec![agent_id.into()]).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn overdue_tasks(&self, now: DateTime<Utc>, page: Page) -> StoreResult<Listed<Task>> {
        let limit = page_limit(page);
        let sql = format!(
            "{TASK_COLUMNS} WHERE status IN ({}) AND deadline_us <= $1 \
             AND (assigned_us IS NULL OR assigned_us < deadline_us) AND seq > $2 \
             ORDER BY seq ASC LIMIT $3",
            status_list(&[TaskStatus::Assigned, TaskStatus::InProgress])
        );
        let args = vec![
            micros(now).into(),
            page.after.unwrap_or(i64::MIN).into(),
            (limit as i64 + 1).into(),
        ];
        Ok(paginate(self.fetch("tasks", &sql, args).await?, limit))
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %task_id))]
    async fn dependents_of(&self, task_id: Uuid) -> StoreResult<Vec<Task>> {
        self.fetch_items(
            "tasks",
            "SELECT t.seq, t.id AS rid, t.body FROM tasks t \
             JOIN task_dependencies d ON d.task_id = t.id \
             WHERE d.depends_on = $1 ORDER BY t.seq ASC",
            vec![task_id.into()],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %agent_id, ?since))]
    async fn task_counts(
        &self,
        agent_id: Uuid,
        since: Option<DateTime<Utc>>,
    ) -> StoreResult<TaskCounts> {
        let mut sql = Sql::new(&format!(
            "SELECT COUNT(*) AS assigned, \
             COUNT(CASE WHEN status IN ({}) THEN 1 END) AS submitted FROM tasks",
            status_list(&SUBMITTED)
        ));
        let mut conditions = vec![format!("agent_id = {}", sql.arg(agent_id))];
        match since {
            Some(since) => conditions.push(format!("assigned_us >= {}", sql.arg(micros(since)))),
            None => conditions.push("assigned_us IS NOT NULL".to_string()),
        }
        sql.push_where(&conditions);
        let row = query(&sql.text, sql.args)
            .fetch_one(self.reader())
            .await
            .map_err(|e| self.fail(e, format!("count the tasks of agent {agent_id}")))?;
        let counts = || -> Result<TaskCounts, sqlx::Error> {
            Ok(TaskCounts {
                assigned: row.try_get("assigned")?,
                submitted: row.try_get("submitted")?,
            })
        };
        counts().map_err(|e| self.fail(e, "read task counts"))
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %task_id))]
    async fn evidence_for_task(&self, task_id: Uuid) -> StoreResult<Vec<Evidence>> {
        self.fetch_items(
            "evidence",
            "SELECT seq, id AS rid, body FROM evidence WHERE task_id = $1 ORDER BY chain_index ASC",
            vec![task_id.into()],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %task_id))]
    async fn task_with_last_evidence(
        &self,
        task_id: Uuid,
    ) -> StoreResult<Option<(Task, Option<Evidence>)>> {
        let row = query(
            "SELECT seq, id AS rid, body, \
             (SELECT e.body FROM evidence e WHERE e.task_id = tasks.id \
              ORDER BY e.chain_index DESC LIMIT 1) AS last_evidence \
             FROM tasks WHERE id = $1",
            vec![task_id.into()],
        )
        .fetch_optional(self.reader())
        .await
        .map_err(|e| self.fail(e, "read tasks"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (_, task): (i64, Task) = decode_row("tasks", &row)?;
        let last: Option<String> = row
            .try_get("last_evidence")
            .with_context(|| format!("{BACKEND}: reading the last evidence of task {task_id}"))
            .map_err(StoreError::Internal)?;
        let last = last
            .map(|body| from_body("evidence", &format!("last of task {task_id}"), &body))
            .transpose()?;
        Ok(Some((task, last)))
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %task_id))]
    async fn verifications_for_task(&self, task_id: Uuid) -> StoreResult<Vec<Verification>> {
        self.fetch_items(
            "verifications",
            "SELECT seq, id AS rid, body FROM verifications WHERE task_id = $1 \
             ORDER BY created_us ASC, seq ASC",
            vec![task_id.into()],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %agent_id, ?range, limit))]
    async fn verifications_for_agent(
        &self,
        agent_id: Uuid,
        range: TimeRange,
        limit: i64,
    ) -> StoreResult<Vec<Verification>> {
        self.latest_verifications(agent_id, range, limit).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %agent_id, ?range))]
    async fn verdict_summary(
        &self,
        agent_id: Uuid,
        range: TimeRange,
        pending: Option<&Verification>,
    ) -> StoreResult<VerdictSummary> {
        self.summarise_verdicts(agent_id, range, pending).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %task_id))]
    async fn task_snapshots(&self, task_id: Uuid) -> StoreResult<Vec<TaskSnapshot>> {
        self.fetch_items(
            "task_snapshots",
            "SELECT seq, task_id AS rid, body FROM task_snapshots WHERE task_id = $1 \
             ORDER BY seq ASC",
            vec![task_id.into()],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, ?filter, after = ?page.after, limit = page.limit))]
    async fn list_actions(
        &self,
        filter: &ActionFilter,
        page: Page,
    ) -> StoreResult<Listed<EnforcementAction>> {
        let limit = page_limit(page);
        let mut sql = Sql::new("SELECT seq, id AS rid, body FROM enforcement_actions");
        let mut conditions = Vec::new();
        if let Some(agent_id) = filter.agent_id {
            conditions.push(format!("agent_id = {}", sql.arg(agent_id)));
        }
        if let Some(action) = filter.action {
            conditions.push(format!("action = {}", sql.arg(action.as_str())));
        }
        if let Some(since) = filter.since {
            conditions.push(format!("created_us >= {}", sql.arg(micros(since))));
        }
        if let Some(until) = filter.until {
            conditions.push(format!("created_us < {}", sql.arg(micros(until))));
        }
        if let Some(after) = page.after {
            conditions.push(format!("seq < {}", sql.arg(after)));
        }
        sql.push_where(&conditions);
        let l = sql.arg(limit as i64 + 1);
        sql.push(&format!(" ORDER BY seq DESC LIMIT {l}"));
        let rows = self
            .fetch("enforcement_actions", &sql.text, sql.args)
            .await?;
        Ok(paginate(rows, limit))
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %scope, %key))]
    async fn idempotency(&self, scope: &str, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        let row = sqlx::query(
            "SELECT fingerprint, created_us, body FROM idempotency WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(self.reader())
        .await
        .map_err(|e| self.fail(e, format!("read idempotency key {scope}/{key}")))?;
        let Some(row) = row else { return Ok(None) };
        let columns = || -> Result<(String, i64, String), sqlx::Error> {
            Ok((
                row.try_get("fingerprint")?,
                row.try_get("created_us")?,
                row.try_get("body")?,
            ))
        };
        let (fingerprint, created_us, body) =
            columns().map_err(|e| self.fail(e, "read an idempotency row"))?;
        Ok(Some(IdempotencyRecord {
            scope: scope.to_string(),
            key: key.to_string(),
            fingerprint,
            response: from_body("idempotency", &format!("{scope}/{key}"), &body)?,
            created_at: from_micros(created_us),
        }))
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn downstream_connections(&self) -> StoreResult<Vec<DownstreamConnection>> {
        self.fetch_items(
            "downstream_connections",
            "SELECT seq, name AS rid, body FROM downstream_connections ORDER BY name ASC",
            vec![],
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, name = %connection.name))]
    async fn record_downstream(&self, connection: &DownstreamConnection) -> StoreResult<()> {
        let body = to_body("downstream_connections", &connection.name, connection)?;
        sqlx::query(
            "INSERT INTO downstream_connections (name, updated_us, body) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET updated_us = excluded.updated_us, body = excluded.body",
        )
        .bind(connection.name.as_str())
        .bind(micros(connection.updated_at))
        .bind(body)
        .execute(self.writer())
        .await
        .map(|_| ())
        .map_err(|e| {
            self.fail(
                e,
                format!("record downstream connection {}", connection.name),
            )
        })
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, ?after, limit))]
    async fn audit_log(&self, after: Option<i64>, limit: i64) -> StoreResult<Vec<AuditRecord>> {
        self.read_audit_log(after, limit).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn audit_head(&self) -> StoreResult<(i64, String)> {
        self.read_audit_head().await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, length = checkpoint.length))]
    async fn record_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        self.insert_checkpoint(checkpoint).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn audit_checkpoints(&self) -> StoreResult<Vec<Checkpoint>> {
        self.read_checkpoints(false).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND))]
    async fn latest_checkpoint(&self) -> StoreResult<Option<Checkpoint>> {
        Ok(self.read_checkpoints(true).await?.pop())
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, ?after, limit))]
    async fn evidence_task_ids(&self, after: Option<Uuid>, limit: i64) -> StoreResult<Vec<Uuid>> {
        self.read_evidence_task_ids(after, limit).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, ?after, limit))]
    async fn events_after(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<(i64, crate::events::Event)>> {
        self.read_events_after(after, limit).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, limit))]
    async fn latest_events(&self, limit: i64) -> StoreResult<Vec<(i64, crate::events::Event)>> {
        self.read_latest_events(limit).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %id))]
    async fn event_position(&self, id: Uuid) -> StoreResult<Option<i64>> {
        self.read_event_position(id).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %before, limit))]
    async fn unpublished_events(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<crate::events::Event>> {
        self.read_unpublished_events(before, limit).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, count = ids.len()))]
    async fn mark_published(&self, ids: &[Uuid]) -> StoreResult<()> {
        self.write_published(ids).await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %agent_id, ?window))]
    async fn reliability_history(
        &self,
        agent_id: Uuid,
        window: crate::reliability::Window,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Reliability>> {
        self.read_reliability_history(agent_id, window, since, limit)
            .await
    }

    #[tracing::instrument(skip_all, fields(backend = BACKEND, %events_before, %snapshots_before))]
    async fn prune(
        &self,
        events_before: DateTime<Utc>,
        snapshots_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        self.delete_before(events_before, snapshots_before).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(element_pattern("run_tests"), r"%|run\_tests|%");
        assert_eq!(element_pattern(r"a%b\c"), r"%|a\%b\\c|%");
        assert_eq!(bar_list(["a", "b"]), "|a|b|");
        assert_eq!(bar_list(Vec::<String>::new()), "|");
    }

    #[test]
    fn a_page_has_a_cursor_only_when_more_rows_exist() {
        let rows = vec![(1, 'a'), (2, 'b'), (3, 'c')];
        assert_eq!(paginate(rows.clone(), 2).next_cursor, Some(2));
        assert_eq!(paginate(rows, 3).next_cursor, None);
    }
}
