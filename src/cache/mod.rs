//! The read cache: agent records (30 s), reliability (5 min) and task counts (1 h), kept so
//! hot reads skip the database — in Redis when it is configured (one cache for every
//! instance, keys under `ares:cache:`), otherwise in this process. Every commit forgets what
//! it changed before the call returns, so a read after a write, through any instance, sees
//! the write.
//!
//! Never cached: anything a verdict rests on. Ground-truth checks (files, commands, lint,
//! pages) ask the downstream servers every time, since a kept answer would let a verdict rest
//! on a file as it was minutes ago. The one downstream answer that is safe to keep, a
//! server's tool list, is already kept with its live session (read once per connection), so
//! the seed's 2-minute TTL for downstream responses has nothing left to cover.
//!
//! Races: a value read from the database just before a write commits must not be stored
//! after that write's invalidation. Each key has a generation that every invalidation bumps;
//! a loaded value is stored only if its key's generation is still the one seen before
//! loading — checked and stored atomically (a Lua script in Redis, a shard lock here).
//!
//! Redis down: the cache is skipped and the database answers; invalidations Redis did not
//! take are retried in the background, and until they went through this instance does not
//! read the cache.

mod local;
mod shared;

pub use shared::RedisUse;

use crate::error::AresResult;
use crate::reliability::Window;
use crate::store::{Store, StoreResult, WriteBatch};
use crate::tasks::TaskStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const AGENT_TTL: Duration = Duration::from_secs(30);
const RELIABILITY_TTL: Duration = Duration::from_secs(5 * 60);
const TASK_COUNTS_TTL: Duration = Duration::from_secs(3600);
const WINDOWS: [Window; 4] = [Window::Hour, Window::Day, Window::Week, Window::All];

/// One cached value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// The agent's record.
    Agent(Uuid),
    /// `get_reliability` for the agent over the window.
    Reliability(Uuid, Window),
    /// Tasks assigned to and submitted by the agent in the window.
    TaskCounts(Uuid, Window),
}

impl Entry {
    pub fn ttl(self) -> Duration {
        match self {
            Self::Agent(_) => AGENT_TTL,
            Self::Reliability(..) => RELIABILITY_TTL,
            Self::TaskCounts(..) => TASK_COUNTS_TTL,
        }
    }

    /// Its Redis key.
    pub fn key(self) -> String {
        match self {
            Self::Agent(id) => format!("ares:cache:agent:{id}"),
            Self::Reliability(id, w) => format!("ares:cache:reliability:{id}:{}", w.as_str()),
            Self::TaskCounts(id, w) => format!("ares:cache:task_counts:{id}:{}", w.as_str()),
        }
    }

    fn generation_key(self) -> String {
        format!(
            "ares:cache:generation:{}",
            &self.key()["ares:cache:".len()..]
        )
    }

    /// What follows from the agent's work: its reliability and task counts, every window.
    fn from_work_of(agent: Uuid) -> impl Iterator<Item = Entry> {
        WINDOWS
            .into_iter()
            .flat_map(move |w| [Self::Reliability(agent, w), Self::TaskCounts(agent, w)])
    }
}

/// The cached entries a batch changes. `previous_holders` are the agents that held the
/// batch's tasks before it (see [`previous_holders`]): handing a task on changes their
/// counts too.
pub fn touched_by(batch: &WriteBatch, previous_holders: &[Uuid]) -> Vec<Entry> {
    let mut agents: HashSet<Uuid> = previous_holders.iter().copied().collect();
    agents.extend(batch.tasks.iter().filter_map(|t| t.agent_id));
    agents.extend(batch.verifications.iter().map(|v| v.agent_id));
    let mut touched: Vec<Entry> = batch.agents.iter().map(|a| Entry::Agent(a.id)).collect();
    agents.extend(batch.agents.iter().map(|a| a.id));
    let mut agents: Vec<Uuid> = agents.into_iter().collect();
    agents.sort();
    touched.extend(agents.into_iter().flat_map(Entry::from_work_of));
    touched
}

/// The agents that held the batch's tasks before it, read before it commits — only for tasks
/// it may take from someone: released (pending, rolled back, blocked) or handed to an agent
/// other than their first.
pub async fn previous_holders(store: &dyn Store, batch: &WriteBatch) -> StoreResult<Vec<Uuid>> {
    let ids: Vec<Uuid> = batch
        .tasks
        .iter()
        .filter(|t| t.version > 1)
        .filter(|t| match t.status {
            TaskStatus::Pending | TaskStatus::RolledBack | TaskStatus::Blocked => true,
            // The first assignment takes the task from nobody.
            TaskStatus::Assigned => t.attempts > 1,
            _ => false,
        })
        .map(|t| t.id)
        .collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(store
        .tasks(&ids)
        .await?
        .into_iter()
        .filter_map(|t| t.agent_id)
        .collect())
}

/// A cached value with the (service clock's) time it was read, so a moved test clock ages it
/// as it ages everything else.
#[derive(Serialize, Deserialize)]
struct Stored<T> {
    at: DateTime<Utc>,
    value: T,
}

fn encode<T: Serialize>(value: &T, now: DateTime<Utc>) -> Option<String> {
    serde_json::to_string(&Stored { at: now, value }).ok()
}

/// The value, if it is readable and younger than the entry's TTL.
fn decode<T: DeserializeOwned>(json: &str, entry: Entry, now: DateTime<Utc>) -> Option<T> {
    let stored: Stored<T> = serde_json::from_str(json).ok()?;
    let age = now.signed_duration_since(stored.at);
    (age < chrono::Duration::from_std(entry.ttl()).ok()?).then_some(stored.value)
}

/// The cache, in Redis or in this process.
pub struct Cache(Backend);

enum Backend {
    Local(local::Local),
    Shared(Arc<shared::Shared>),
}

impl Default for Cache {
    fn default() -> Self {
        Self::local()
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Backend::Local(_) => "Cache(in process)",
            Backend::Shared(_) => "Cache(Redis)",
        })
    }
}

impl Cache {
    /// Kept in this process: for a single instance.
    pub fn local() -> Self {
        Self(Backend::Local(local::Local::new()))
    }

    /// Kept in Redis, shared by every instance using it.
    pub fn shared(link: crate::redis_link::RedisLink) -> Self {
        Self(Backend::Shared(Arc::new(shared::Shared::new(link))))
    }

    /// The entry's value from the cache, or else from `load` (then kept for its TTL).
    /// Errors are `load`'s only: Redis failing means a database read.
    pub async fn get_or_load<T, F, Fut>(
        &self,
        entry: Entry,
        now: DateTime<Utc>,
        load: F,
    ) -> AresResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = AresResult<T>>,
    {
        let seen = match &self.0 {
            Backend::Local(local) => local.get(entry),
            Backend::Shared(shared) => match shared.get(entry).await {
                Some(seen) => seen,
                None => return load().await,
            },
        };
        if let Some(value) = seen
            .value
            .as_deref()
            .and_then(|json| decode(json, entry, now))
        {
            tracing::trace!(key = %entry.key(), "cache hit");
            return Ok(value);
        }
        let value = load().await?;
        if let Some(json) = encode(&value, now) {
            match &self.0 {
                Backend::Local(local) => local.put_if_current(entry, seen.generation, json),
                Backend::Shared(shared) => {
                    shared.put_if_current(entry, seen.generation, json).await
                }
            }
        }
        Ok(value)
    }

    /// Forgets these entries everywhere the cache is kept, before returning.
    pub async fn invalidate(&self, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        match &self.0 {
            Backend::Local(local) => entries.iter().for_each(|e| local.invalidate(*e)),
            Backend::Shared(shared) => shared.invalidate(entries).await,
        }
    }

    /// Whether the entry is stored right now (for tests and diagnostics).
    pub async fn holds(&self, entry: Entry) -> bool {
        match &self.0 {
            Backend::Local(local) => local.get(entry).value.is_some(),
            Backend::Shared(shared) => shared
                .get(entry)
                .await
                .is_some_and(|seen| seen.value.is_some()),
        }
    }
}

/// What a lookup found: the stored JSON, and the key's generation at that moment.
struct Seen {
    value: Option<String>,
    generation: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{Agent, AgentStatus};
    use crate::tasks::Task;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    /// Loads `value` through the cache, counting the loads.
    async fn read(
        cache: &Cache,
        entry: Entry,
        now: DateTime<Utc>,
        loads: &AtomicUsize,
        value: i64,
    ) -> i64 {
        cache
            .get_or_load(entry, now, || async {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(value)
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_cached_value_is_served_until_its_ttl_passes() {
        let cache = Cache::local();
        let entry = Entry::Agent(Uuid::now_v7());
        let loads = AtomicUsize::new(0);
        assert_eq!(read(&cache, entry, at(0), &loads, 1).await, 1);
        assert_eq!(
            read(&cache, entry, at(29), &loads, 2).await,
            1,
            "within 30 s"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(
            read(&cache, entry, at(30), &loads, 3).await,
            3,
            "30 s on: read again"
        );
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn each_kind_keeps_its_own_ttl() {
        let cache = Cache::local();
        let agent = Uuid::now_v7();
        let loads = AtomicUsize::new(0);
        let reliability = Entry::Reliability(agent, Window::All);
        let counts = Entry::TaskCounts(agent, Window::Day);
        read(&cache, reliability, at(0), &loads, 1).await;
        read(&cache, counts, at(0), &loads, 1).await;
        assert_eq!(read(&cache, reliability, at(299), &loads, 2).await, 1);
        assert_eq!(read(&cache, reliability, at(300), &loads, 2).await, 2);
        assert_eq!(read(&cache, counts, at(3599), &loads, 2).await, 1);
        assert_eq!(read(&cache, counts, at(3600), &loads, 2).await, 2);
    }

    #[tokio::test]
    async fn an_invalidated_entry_is_read_again_and_others_stay() {
        let cache = Cache::local();
        let (a, b) = (Entry::Agent(Uuid::now_v7()), Entry::Agent(Uuid::now_v7()));
        let loads = AtomicUsize::new(0);
        read(&cache, a, at(0), &loads, 1).await;
        read(&cache, b, at(0), &loads, 1).await;
        cache.invalidate(&[a]).await;
        assert!(!cache.holds(a).await);
        assert!(cache.holds(b).await);
        assert_eq!(read(&cache, a, at(1), &loads, 2).await, 2);
    }

    #[tokio::test]
    async fn a_value_loaded_before_an_invalidation_is_not_stored_after_it() {
        let cache = Cache::local();
        let entry = Entry::Agent(Uuid::now_v7());
        let value = cache
            .get_or_load(entry, at(0), || async {
                // A write commits and invalidates while this read is in flight.
                cache.invalidate(&[entry]).await;
                Ok(1)
            })
            .await
            .unwrap();
        assert_eq!(value, 1, "the caller still gets what it read");
        assert!(!cache.holds(entry).await, "but the stale read is not kept");
    }

    #[tokio::test]
    async fn a_failed_load_is_not_cached() {
        let cache = Cache::local();
        let entry = Entry::Agent(Uuid::now_v7());
        let failed: AresResult<i64> = cache
            .get_or_load(entry, at(0), || async {
                Err(crate::AresError::not_found("agent", "x"))
            })
            .await;
        assert!(failed.is_err());
        assert!(!cache.holds(entry).await);
    }

    fn agent(id: Uuid) -> Agent {
        Agent {
            id,
            name: "a".into(),
            capabilities: vec![],
            public_key: None,
            configuration: serde_json::Value::Null,
            max_concurrent_tasks: 1,
            status: AgentStatus::Active,
            throttle_limit: None,
            suspended_until: None,
            reliability_score: 0.5,
            on_probation: false,
            created_at: at(0),
            updated_at: at(0),
            version: 2,
        }
    }

    fn task(holder: Option<Uuid>) -> Task {
        Task {
            id: Uuid::now_v7(),
            description: "t".into(),
            required_capabilities: vec![],
            criteria: vec![],
            agent_id: holder,
            priority: 5,
            deadline: None,
            depends_on: vec![],
            status: TaskStatus::Submitted,
            idempotency_key: None,
            created_at: at(0),
            updated_at: at(0),
            assigned_at: None,
            submitted_at: None,
            completed_at: None,
            attempts: 1,
            superseded_verifications: vec![],
            version: 3,
        }
    }

    #[test]
    fn a_batch_touches_the_records_it_writes_and_the_work_of_every_agent_in_it() {
        let (written, holder, previous, bystander) = (
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        let batch = WriteBatch {
            agents: vec![agent(written)],
            tasks: vec![task(Some(holder)), task(None)],
            ..Default::default()
        };
        let touched = touched_by(&batch, &[previous]);
        assert!(touched.contains(&Entry::Agent(written)));
        assert!(
            !touched.contains(&Entry::Agent(holder)),
            "a task does not change its holder's record"
        );
        for agent in [written, holder, previous] {
            for w in WINDOWS {
                assert!(touched.contains(&Entry::Reliability(agent, w)));
                assert!(touched.contains(&Entry::TaskCounts(agent, w)));
            }
        }
        assert!(!touched.iter().any(|e| match e {
            Entry::Agent(a) | Entry::Reliability(a, _) | Entry::TaskCounts(a, _) => *a == bystander,
        }));
    }

    #[test]
    fn a_reliability_snapshot_alone_touches_nothing() {
        let batch = WriteBatch {
            reliability: vec![crate::reliability::compute(
                Uuid::now_v7(),
                Window::All,
                &Default::default(),
                &[],
                Default::default(),
                at(0),
            )],
            ..Default::default()
        };
        assert!(touched_by(&batch, &[]).is_empty());
    }

    #[test]
    fn keys_live_under_the_cache_prefix() {
        let id = Uuid::nil();
        assert_eq!(
            Entry::Reliability(id, Window::Day).key(),
            format!("ares:cache:reliability:{id}:24h")
        );
        assert_eq!(
            Entry::Agent(id).generation_key(),
            format!("ares:cache:generation:agent:{id}")
        );
    }
}
