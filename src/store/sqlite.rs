//! The embedded SQLite store, the default.
//!
//! Writes go through a pool of exactly one connection, so concurrent commits queue up in
//! the process instead of failing with `SQLITE_BUSY`; reads use a separate pool and, in WAL
//! mode, never wait for a writer. An in-memory database (`sqlite::memory:`) lives in one
//! connection that reads and writes share. The SQL itself is in `sql.rs`, shared with
//! PostgreSQL.

use crate::store::redact_url;
use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

// The shared SQL, compiled once per backend on purpose.
#[allow(clippy::duplicate_mod)]
#[path = "sql.rs"]
mod sql;

type Db = sqlx::Sqlite;
type Backend = SqliteStore;
const BACKEND: &str = "sqlite";
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// None: commits already take turns on the single writer connection.
const AUDIT_LOCK: Option<&str> = None;
/// A commit batch's statements go to the writer thread as one query (see `writes_sql.rs`).
const ONE_TRIP: bool = true;

/// How long a statement waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite result codes (primary, the low byte of the extended code) that mean the database
/// cannot be used right now: BUSY, LOCKED, IOERR, CANTOPEN.
fn unavailable_code(code: &str) -> bool {
    code.parse::<i64>()
        .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 14))
}

/// The SQLite implementation of [`crate::store::Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    /// One connection: commits run one at a time, those that queue up meanwhile together.
    write: SqlitePool,
    label: String,
    /// Commits queued while another is written share its successor's transaction.
    group: crate::store::group::GroupCommit,
}

impl SqliteStore {
    /// Opens (creating if missing, with its directory) the database `url` names:
    /// `sqlite://PATH`, `sqlite:PATH` or `sqlite::memory:`. Does not migrate.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let label = redact_url(url);
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {label}"))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal)
            // Capability and dependency matching uses LIKE, which must not fold case.
            .pragma("case_sensitive_like", "ON");

        if memory {
            // One connection that never closes: the database lives as long as it does.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .with_context(|| format!("opening SQLite database {label}"))?;
            tracing::info!(database = %label, "opened in-memory SQLite store");
            return Ok(Self {
                read: pool.clone(),
                write: pool,
                label,
                group: Default::default(),
            });
        }

        let path = options.get_filename().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating the directory of {}", path.display()))?;
        }
        // No memory map: in WAL mode a reader unmaps its whole map whenever another
        // connection has committed since its last read, so with a write on most calls every
        // read paid a munmap (a TLB shootdown on every core) and re-faulted its pages, and
        // the map counted in RSS. Plain reads cost no more (BENCHMARKS.md, hot spot 7).
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .pragma("mmap_size", "0");

        // The writer opens first so the file exists and is in WAL mode before readers come.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening SQLite database {label}"))?;
        let readers = std::thread::available_parallelism()
            .map_or(4, |n| n.get() as u32)
            .clamp(2, 8);
        let read = SqlitePoolOptions::new()
            .max_connections(readers)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .with_context(|| format!("opening SQLite database {label} for reading"))?;
        tracing::info!(database = %label, readers, "opened SQLite store");
        Ok(Self {
            read,
            write,
            label,
            group: Default::default(),
        })
    }

    fn reader(&self) -> &SqlitePool {
        &self.read
    }

    fn writer(&self) -> &SqlitePool {
        &self.write
    }

    fn label(&self) -> &str {
        &self.label
    }
}

#[cfg(test)]
mod tests {
    //! Group commit's two ways of writing a group, called directly: which one runs depends
    //! on timing when commits come from concurrent callers (`tests/store.rs` covers that).

    use super::SqliteStore;
    use crate::agents::Agent;
    use crate::audit::{Actor, AuditDraft, args_digest, verify_chain};
    use crate::events::{Event, EventMetadata};
    use crate::store::group::Pending;
    use crate::store::{Store, StoreError, StoreResult, WriteBatch};
    use chrono::{SubsecRound, Utc};
    use tokio::sync::oneshot;
    use uuid::Uuid;

    /// A batch registering agent `name`, with its audit entry and two events.
    fn registration(name: &str) -> WriteBatch {
        // The store keeps microseconds, and the audit hash covers the time.
        let now = Utc::now().trunc_subsecs(6);
        let agent = Agent::for_test(name);
        let event = |event_type: &str| Event {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            timestamp: now,
            agent_id: Some(agent.id),
            task_id: None,
            data: serde_json::json!({ "name": name }),
            metadata: EventMetadata {
                correlation_id: Uuid::now_v7(),
                source: "test".into(),
                instance: "test".into(),
            },
        };
        WriteBatch {
            events: vec![event("agent.registered"), event("agent.status_changed")],
            audit: vec![AuditDraft {
                id: Uuid::now_v7(),
                at: now,
                actor: Actor::system(),
                tool: "register_agent".into(),
                args_digest: args_digest(&serde_json::json!({ "name": name })),
                outcome: "ok".into(),
                agent_ids: vec![agent.id],
                task_ids: vec![],
            }],
            agents: vec![agent],
            ..Default::default()
        }
    }

    /// Writes `names` as one group and returns each batch's outcome, in order.
    async fn commit_group(store: &SqliteStore, names: &[&str]) -> Vec<StoreResult<()>> {
        let mut outcomes = Vec::new();
        let group = names
            .iter()
            .map(|name| {
                let (done, outcome) = oneshot::channel();
                outcomes.push(outcome);
                Pending {
                    batch: registration(name),
                    done,
                }
            })
            .collect();
        store.commit_group(group).await;
        let mut results = Vec::new();
        for outcome in outcomes {
            results.push(outcome.await.expect("every batch hears back"));
        }
        results
    }

    async fn store() -> SqliteStore {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        store
    }

    #[tokio::test]
    async fn a_group_is_written_whole_with_its_audit_entries_chained_in_order() {
        let store = store().await;
        let outcomes = commit_group(&store, &["a", "b", "c"]).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        // The head read for the first batch is carried to the next: no gap, no reuse.
        let log = store.audit_log(None, 100).await.unwrap();
        assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        verify_chain(&log).expect("the chain holds");
        // A second group chains on from where the first left the log.
        let outcomes = commit_group(&store, &["d", "e"]).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let log = store.audit_log(None, 100).await.unwrap();
        assert_eq!(log.len(), 5);
        verify_chain(&log).expect("the chain holds across groups");
        // Each batch's two events went in with one statement.
        assert_eq!(store.latest_events(100).await.unwrap().len(), 10);
    }

    /// A batch whose statements go in one trip: `agents` then its audit entry and events.
    fn agents_batch(agents: Vec<Agent>) -> WriteBatch {
        let mut batch = registration("carrier");
        batch.agents = agents;
        batch
    }

    #[tokio::test]
    async fn a_statement_failing_inside_one_trip_fails_its_batch_by_name() {
        let store = store().await;
        assert!(commit_group(&store, &["taken"]).await[0].is_ok());
        let stored = store.agent_by_name("taken").await.unwrap().unwrap();

        // A stale version in the middle of the trip: the update before it and the entries
        // after it are rolled back with it.
        let mut stale = stored.clone();
        stale.version = 3;
        let result = store
            .commit(agents_batch(vec![Agent::for_test("fresh"), stale]))
            .await;
        assert!(matches!(result, Err(StoreError::Conflict)), "{result:?}");
        assert!(store.agent_by_name("fresh").await.unwrap().is_none());

        // A unique violation after a good insert is told apart as such.
        let result = store
            .commit(agents_batch(vec![
                Agent::for_test("other"),
                Agent::for_test("taken"),
            ]))
            .await;
        assert!(
            matches!(result, Err(StoreError::Duplicate("agents.name"))),
            "{result:?}"
        );
        assert!(store.agent_by_name("other").await.unwrap().is_none());
        assert_eq!(store.audit_log(None, 100).await.unwrap().len(), 1);
        assert_eq!(store.latest_events(100).await.unwrap().len(), 2);

        // The same shapes written right go through, the versioned update included.
        let mut next = stored;
        next.version = 2;
        next.status = crate::agents::AgentStatus::Suspended;
        store
            .commit(agents_batch(vec![Agent::for_test("fresh"), next]))
            .await
            .unwrap();
        let taken = store.agent_by_name("taken").await.unwrap().unwrap();
        assert_eq!(
            (taken.version, taken.status),
            (2, crate::agents::AgentStatus::Suspended)
        );
        assert!(store.agent_by_name("fresh").await.unwrap().is_some());
        let log = store.audit_log(None, 100).await.unwrap();
        assert_eq!(log.len(), 2);
        verify_chain(&log).expect("the chain holds");
        assert_eq!(store.latest_events(100).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_batch_too_large_to_keep_prepared_is_written_whole_each_time() {
        let store = store().await;
        // 20 inserts and the head read: more statements than stay cached.
        for round in 0..2 {
            let agents = (0..20)
                .map(|i| Agent::for_test(&format!("bulk-{round}-{i}")))
                .collect();
            store.commit(agents_batch(agents)).await.unwrap();
        }
        for name in ["bulk-0-0", "bulk-0-19", "bulk-1-0", "bulk-1-19"] {
            assert!(store.agent_by_name(name).await.unwrap().is_some(), "{name}");
        }
        let log = store.audit_log(None, 100).await.unwrap();
        assert_eq!(log.len(), 2);
        verify_chain(&log).expect("the chain holds");
    }

    #[tokio::test]
    async fn a_failing_batch_in_a_group_fails_alone_when_it_is_written_again() {
        let store = store().await;
        assert!(commit_group(&store, &["taken"]).await[0].is_ok());
        // The whole group fails first on the duplicate; the retry with savepoints keeps
        // the batches around it.
        let outcomes = commit_group(&store, &["x", "taken", "y"]).await;
        assert!(outcomes[0].is_ok(), "{outcomes:?}");
        assert!(
            matches!(outcomes[1], Err(StoreError::Duplicate("agents.name"))),
            "{outcomes:?}"
        );
        assert!(outcomes[2].is_ok(), "{outcomes:?}");
        let log = store.audit_log(None, 100).await.unwrap();
        assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
        verify_chain(&log).expect("the chain holds");
        assert_eq!(store.latest_events(100).await.unwrap().len(), 6);
        for name in ["x", "y"] {
            assert!(store.agent_by_name(name).await.unwrap().is_some(), "{name}");
        }
        // A group of one that fails is refused, and nothing of it lands.
        let outcomes = commit_group(&store, &["x"]).await;
        assert!(matches!(
            outcomes[0],
            Err(StoreError::Duplicate("agents.name"))
        ));
        assert_eq!(store.audit_log(None, 100).await.unwrap().len(), 3);
    }
}
