//! The operations behind every tool. Each validates its input, reads what it needs, decides
//! with the pure domain rules, and commits everything it changes as one atomic batch — so a
//! failed call changes nothing.

use crate::clock::{Clock, SystemClock};
use crate::enforcement::Policy;
use crate::error::{AresError, AresResult};
use crate::store::{IdempotencyRecord, Store, WriteBatch};
use chrono::{DateTime, Utc};
use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

pub mod agents;
pub mod audit;
pub mod enforce;
pub mod evidence;
pub mod health;
pub mod keys;
pub mod locks;
pub mod outbox;
pub mod progress;
pub mod reliability;
pub mod sweep;
pub mod tasks;
pub mod verify;

/// The ARES service: shared by every session and transport.
#[derive(Clone)]
pub struct Ares {
    /// The source of truth.
    pub store: Arc<dyn Store>,
    /// Where "now" comes from; tests substitute a manual clock.
    pub clock: Arc<dyn Clock>,
    /// Thresholds of the enforcement ladder.
    pub policy: Policy,
    /// When this instance started, for `health`.
    started: Instant,
    /// Every agent must sign its evidence (otherwise only agents with a public key).
    pub require_signatures: bool,
    /// API keys the HTTP gate has read recently; revocation empties the key's entry.
    pub key_cache: Arc<crate::auth::middleware::KeyCache>,
    /// Signs checkpoints of the audit log; a key of its own unless given one.
    pub audit_key: Arc<crate::audit::AuditKey>,
    /// The servers ground-truth criteria are checked through; None: such criteria are
    /// `unverifiable`.
    pub downstream: Option<Arc<crate::downstream::Downstream>>,
    /// Where committed changes are announced (resource subscribers, the dashboard).
    pub events: crate::events::EventBus,
    /// This process, as named in its events' metadata (`instance`).
    pub instance: String,
    /// Redis, when configured: events to other instances, sessions, cache, rate limits.
    pub redis: Option<crate::redis_link::RedisLink>,
    /// Turns for calls that change the same task (see [`locks`]).
    pub task_locks: Arc<locks::KeyedLocks>,
    /// How long events and reliability snapshots are kept.
    pub retention: sweep::Retention,
    /// What `/metrics` exports; its counters follow `events`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Hot reads (agents, reliability, task counts): in Redis when configured, else here.
    pub cache: Arc<crate::cache::Cache>,
    /// Events this instance published, to be marked so in the store (see [`outbox`]).
    outbox: Arc<outbox::Outbox>,
    /// Concurrent health checks share one probe (see [`health`]).
    probes: Arc<health::Probes>,
}

impl Ares {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            policy: Policy::default(),
            started: Instant::now(),
            require_signatures: false,
            key_cache: Arc::default(),
            audit_key: Arc::new(crate::audit::AuditKey::generate()),
            downstream: None,
            events: crate::events::EventBus::default(),
            retention: sweep::Retention::default(),
            task_locks: Arc::default(),
            instance: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            redis: None,
            metrics: Arc::default(),
            cache: Arc::default(),
            outbox: Arc::default(),
            probes: Arc::default(),
        }
    }

    /// Checks ground-truth criteria through these downstream servers.
    pub fn with_downstream(
        mut self,
        downstream: Option<Arc<crate::downstream::Downstream>>,
    ) -> Self {
        self.downstream = downstream;
        self
    }

    /// Signs audit checkpoints with this key (see [`crate::audit::key`]).
    pub fn with_audit_key(mut self, key: crate::audit::AuditKey) -> Self {
        self.audit_key = Arc::new(key);
        self
    }

    /// Requires every agent to sign its evidence, not only agents with a public key.
    pub fn require_signatures(mut self, required: bool) -> Self {
        self.require_signatures = required;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Shares events, sessions, cache and rate limits with other instances through Redis.
    pub fn with_redis(mut self, redis: Option<crate::redis_link::RedisLink>) -> Self {
        self.cache = Arc::new(match &redis {
            Some(link) => crate::cache::Cache::shared(link.clone()),
            None => crate::cache::Cache::local(),
        });
        self.redis = redis;
        self
    }

    /// Keeps events and reliability snapshots this long.
    pub fn with_retention(mut self, retention: sweep::Retention) -> Self {
        self.retention = retention;
        self
    }

    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Commits one operation's changes atomically. Every service write goes through here,
    /// and every change but a reliability snapshot appends an audit entry to the same
    /// transaction. The change's events are stored with it and published once it is
    /// durable.
    pub(crate) async fn commit(&self, mut batch: WriteBatch) -> crate::store::StoreResult<()> {
        let now = self.now();
        if let Some(entry) = crate::audit::context::draft(&mut batch, now) {
            batch.events =
                crate::events::derive(&batch, now, entry.id, &entry.tool, &self.instance);
            batch.audit.push(entry);
        }
        let events = batch.events.clone();
        let tool = batch.audit.last().map(|entry| entry.tool.clone());
        let holders = crate::cache::previous_holders(self.store.as_ref(), &batch).await?;
        let touched = crate::cache::touched_by(&batch, &holders);
        let committed = self.store.commit(batch).await;
        // Forgotten before the call returns, so the next read anywhere sees this write. A
        // failed commit forgets too: a conflict means what was read is stale.
        self.cache.invalidate(&touched).await;
        committed?;
        if let Some(tool) = tool {
            crate::failpoint::crash_after_commit(&tool);
        }
        self.publish(events).await;
        Ok(())
    }

    /// Runs `op` again when a concurrent call changed the same record first, so callers
    /// racing on one task see a clean answer instead of a conflict.
    async fn retrying<T, F, Fut>(&self, mut op: F) -> AresResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = AresResult<T>>,
    {
        // Within this process calls on one task take turns (`task_locks`); what is left is
        // other instances writing the same record. A random wait, growing to at most 64 ms,
        // keeps two instances from retrying in lockstep; 16 tries bound the whole at ~1 s.
        let mut attempt = 0u32;
        loop {
            match op().await {
                Err(AresError::Conflict) if attempt < 16 => {
                    attempt += 1;
                    let ceiling = 2u64 << attempt.min(5);
                    let wait = 1 + getrandom::u64().unwrap_or(ceiling) % ceiling;
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                other => return other,
            }
        }
    }

    /// Runs an idempotent operation: with a key, a retry with the same request returns the
    /// first answer and writes nothing; the same key with a different request is refused.
    /// `op` returns its answer and the batch to commit; the key's record joins that batch.
    async fn idempotent<T, F, Fut>(
        &self,
        scope: &str,
        key: Option<&str>,
        request: &impl Serialize,
        op: F,
    ) -> AresResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn() -> Fut,
        Fut: Future<Output = AresResult<(T, WriteBatch)>>,
    {
        let Some(key) = key else {
            return self
                .retrying(|| async {
                    let (out, batch) = op().await?;
                    self.commit(batch).await?;
                    Ok(out)
                })
                .await;
        };
        validate_idempotency_key(key)?;
        let fingerprint = fingerprint(request);
        self.retrying(|| async {
            if let Some(done) = self.store.idempotency(scope, key).await? {
                return replay(done, &fingerprint, key);
            }
            let (out, mut batch) = op().await?;
            batch.idempotency.push(IdempotencyRecord {
                scope: scope.to_string(),
                key: key.to_string(),
                fingerprint: fingerprint.clone(),
                response: serde_json::to_value(&out).map_err(|e| AresError::Internal(e.into()))?,
                created_at: self.now(),
            });
            match self.commit(batch).await {
                Err(crate::store::StoreError::Duplicate("idempotency")) => Err(AresError::Conflict),
                Err(e) => Err(e.into()),
                Ok(()) => Ok(out),
            }
        })
        .await
    }
}

fn replay<T: DeserializeOwned>(
    done: IdempotencyRecord,
    fingerprint: &str,
    key: &str,
) -> AresResult<T> {
    if done.fingerprint != fingerprint {
        return Err(AresError::invalid(
            "idempotency_key",
            format!("{key:?} was already used for a different request; use a new key"),
        ));
    }
    serde_json::from_value(done.response).map_err(|e| AresError::Internal(e.into()))
}

fn validate_idempotency_key(key: &str) -> AresResult<()> {
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return Err(AresError::invalid(
            "idempotency_key",
            "expected 1-200 printable characters",
        ));
    }
    Ok(())
}

/// sha256 of the request's canonical JSON.
fn fingerprint(request: &impl Serialize) -> String {
    let bytes = serde_json_canonicalizer::to_vec(request).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// Parses an RFC 3339 time argument, naming the field when it is not one.
pub fn parse_time(field: &str, value: &str) -> AresResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| crate::clock::micros(t.with_timezone(&Utc)))
        .map_err(|_| {
            AresError::invalid(
                field,
                format!("expected an RFC 3339 time such as 2026-01-31T12:00:00Z (got {value:?})"),
            )
        })
}

pub fn parse_optional_time(field: &str, value: Option<&str>) -> AresResult<Option<DateTime<Utc>>> {
    value.map(|v| parse_time(field, v)).transpose()
}

/// Decodes a list's `limit` and `cursor` arguments.
pub fn page(limit: Option<i64>, cursor: Option<&str>) -> AresResult<crate::store::Page> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AresError::invalid(
            "limit",
            "expected an integer from 1 to 500",
        ));
    }
    let after = cursor
        .map(|c| {
            c.parse::<i64>().map_err(|_| {
                AresError::invalid("cursor", "expected the next_cursor of a previous page")
            })
        })
        .transpose()?;
    Ok(crate::store::Page { after, limit })
}
