//! The cache inside this process, for a single instance.

use super::{Entry, Seen};
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::Instant;

/// In-process entries at most, over all shards.
const LOCAL_MAX: usize = 10_000;
const SHARDS: usize = 32;

/// The in-process cache: shards of a map, each with one generation for all its keys (an
/// invalidation may cost a neighbour one store, never correctness).
pub(super) struct Local {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Default)]
struct Shard {
    generation: u64,
    entries: HashMap<Entry, (String, Instant)>,
}

impl Local {
    pub(super) fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, entry: Entry) -> std::sync::MutexGuard<'_, Shard> {
        let mut hasher = DefaultHasher::new();
        entry.hash(&mut hasher);
        let index = (hasher.finish() % SHARDS as u64) as usize;
        self.shards[index].lock().expect("cache shard lock")
    }

    pub(super) fn get(&self, entry: Entry) -> Seen {
        let shard = self.shard(entry);
        Seen {
            value: shard
                .entries
                .get(&entry)
                .filter(|(_, expires)| *expires > Instant::now())
                .map(|(json, _)| json.clone()),
            generation: Some(shard.generation.to_string()),
        }
    }

    pub(super) fn put_if_current(&self, entry: Entry, generation: Option<String>, json: String) {
        let mut shard = self.shard(entry);
        if generation != Some(shard.generation.to_string()) {
            return;
        }
        if shard.entries.len() >= LOCAL_MAX / SHARDS {
            let now = Instant::now();
            shard.entries.retain(|_, (_, expires)| *expires > now);
            if shard.entries.len() >= LOCAL_MAX / SHARDS {
                shard.entries.clear();
            }
        }
        shard
            .entries
            .insert(entry, (json, Instant::now() + entry.ttl()));
    }

    pub(super) fn invalidate(&self, entry: Entry) {
        let mut shard = self.shard(entry);
        shard.generation += 1;
        shard.entries.remove(&entry);
    }
}
