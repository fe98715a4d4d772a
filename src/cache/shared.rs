//! The cache in Redis, shared by every instance, and Redis used as a helper that may be away.

use super::{Entry, Seen};
use crate::redis_link::RedisLink;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Generations outlive any read in flight by far; they expire only to free memory.
const GENERATION_TTL_SECS: u64 = 24 * 3600;
/// How often invalidations Redis missed are tried again.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Stores `ARGV[2]` under `KEYS[1]` for `ARGV[3]` seconds only if the generation at
/// `KEYS[2]` is still `ARGV[1]` (empty: none yet).
const STORE_IF_CURRENT: &str = r"
local generation = redis.call('GET', KEYS[2]) or ''
if generation == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
";

/// Redis as an optional helper: used while it answers; while it is marked down, passed over
/// at once and pinged in the background every half second until it answers again (so a
/// request never waits on an absent Redis, and its return is noticed without one).
#[derive(Clone)]
pub struct RedisUse {
    pub link: RedisLink,
    probing: Arc<AtomicBool>,
}

impl RedisUse {
    pub fn new(link: RedisLink) -> Self {
        Self {
            link,
            probing: Arc::default(),
        }
    }

    /// Whether to use Redis now.
    pub fn ready(&self) -> bool {
        if self.link.is_up() {
            return true;
        }
        if !self.probing.swap(true, Ordering::AcqRel)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (link, probing) = (self.link.clone(), self.probing.clone());
            runtime.spawn(async move {
                while link.ping().await.is_err() {
                    tokio::time::sleep(RETRY_EVERY).await;
                }
                probing.store(false, Ordering::Release);
            });
        }
        false
    }
}

/// The cache in Redis.
pub(super) struct Shared {
    redis: RedisUse,
    /// Invalidations Redis did not take, retried until it does.
    missed: Mutex<HashSet<Entry>>,
    /// A background task is retrying them.
    retrying: AtomicBool,
    /// [`STORE_IF_CURRENT`], hashed once.
    store_if_current: redis::Script,
}

impl Shared {
    pub(super) fn new(link: RedisLink) -> Self {
        Self {
            redis: RedisUse::new(link),
            missed: Mutex::default(),
            retrying: AtomicBool::new(false),
            store_if_current: redis::Script::new(STORE_IF_CURRENT),
        }
    }

    /// None: do not use the cache now (Redis is down, or has invalidations still to take).
    pub(super) async fn get(&self, entry: Entry) -> Option<Seen> {
        if !self.redis.ready() || !self.missed.lock().expect("missed lock").is_empty() {
            return None;
        }
        let mut connection = self.redis.link.connection();
        let mut found: Vec<Option<String>> = self
            .redis
            .link
            .run(
                redis::cmd("MGET")
                    .arg(entry.key())
                    .arg(entry.generation_key())
                    .query_async(&mut connection),
            )
            .await?;
        let generation = found.pop().flatten();
        let value = found.pop().flatten();
        Some(Seen { value, generation })
    }

    pub(super) async fn put_if_current(
        &self,
        entry: Entry,
        generation: Option<String>,
        json: String,
    ) {
        let mut connection = self.redis.link.connection();
        let mut invocation = self.store_if_current.key(entry.key());
        invocation
            .key(entry.generation_key())
            .arg(generation.unwrap_or_default())
            .arg(json)
            .arg(entry.ttl().as_secs());
        let _: Option<i64> = self
            .redis
            .link
            .run(invocation.invoke_async(&mut connection))
            .await;
    }

    pub(super) async fn invalidate(self: &Arc<Self>, entries: &[Entry]) {
        // Earlier misses go along; they stay listed (so reads keep off the cache) until
        // Redis has taken them.
        let mut all: HashSet<Entry> = entries.iter().copied().collect();
        all.extend(self.missed.lock().expect("missed lock").iter().copied());
        if self.redis.ready() && self.forget(&all).await {
            self.missed
                .lock()
                .expect("missed lock")
                .retain(|e| !all.contains(e));
            return;
        }
        let mut missed = self.missed.lock().expect("missed lock");
        if missed.is_empty() {
            tracing::warn!(
                "Redis did not take a cache invalidation; the database answers until it does"
            );
        }
        missed.extend(entries.iter().copied());
        drop(missed);
        self.retry_in_background();
    }

    /// Deletes the entries and bumps their generations, in one round trip.
    async fn forget(&self, entries: &HashSet<Entry>) -> bool {
        let mut pipe = redis::pipe();
        for entry in entries {
            let generation = entry.generation_key();
            pipe.del(entry.key()).ignore();
            pipe.incr(&generation, 1).ignore();
            pipe.expire(&generation, GENERATION_TTL_SECS as i64)
                .ignore();
        }
        let mut connection = self.redis.link.connection();
        self.redis
            .link
            .run(pipe.query_async::<()>(&mut connection))
            .await
            .is_some()
    }

    fn retry_in_background(self: &Arc<Self>) {
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.retrying.store(false, Ordering::Release);
            return;
        };
        let shared = self.clone();
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(RETRY_EVERY).await;
                let missed: HashSet<Entry> = shared.missed.lock().expect("missed lock").clone();
                if missed.is_empty() || shared.forget(&missed).await {
                    let mut left = shared.missed.lock().expect("missed lock");
                    left.retain(|e| !missed.contains(e));
                    if left.is_empty() {
                        tracing::info!(
                            "Redis took the missed cache invalidations; cache in use again"
                        );
                        shared.retrying.store(false, Ordering::Release);
                        return;
                    }
                }
            }
        });
    }
}
