//! Calls that change the same task queue up inside this process instead of racing: with
//! optimistic versions alone, a thousand concurrent submissions to one task would mostly
//! fail with conflicts; queued, each commits on its first try. Instances sharing a database
//! still race each other, which the version check and a few retries settle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

const SHARDS: usize = 64;

/// One async lock per key, created on first use and gone when nobody holds or awaits it.
pub struct KeyedLocks {
    shards: Vec<Mutex<HashMap<Uuid, Weak<tokio::sync::Mutex<()>>>>>,
}

impl Default for KeyedLocks {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl KeyedLocks {
    /// Waits for `key`'s turn; the turn lasts as long as the guard.
    pub async fn lock(&self, key: Uuid) -> OwnedMutexGuard<()> {
        let lock = {
            let shard = &self.shards[(key.as_u128() % SHARDS as u128) as usize];
            let mut locks = shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match locks.get(&key).and_then(Weak::upgrade) {
                Some(lock) => lock,
                None => {
                    if locks.len() >= 256 {
                        locks.retain(|_, lock| lock.strong_count() > 0);
                    }
                    let lock = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key, Arc::downgrade(&lock));
                    lock
                }
            }
        };
        lock.lock_owned().await
    }

    /// Keys with a live lock.
    #[cfg(test)]
    fn live(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .map(|l| l.values().filter(|w| w.strong_count() > 0).count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_key_at_a_time_and_nothing_left_behind() {
        let locks = Arc::new(KeyedLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let key = Uuid::now_v7();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (locks, inside) = (locks.clone(), inside.clone());
                tokio::spawn(async move {
                    let _turn = locks.lock(key).await;
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "alone");
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Another key never waits for this one.
        let _held = locks.lock(key).await;
        let _other = locks.lock(Uuid::now_v7()).await;
        drop(_held);
        drop(_other);
        assert_eq!(locks.live(), 0);
    }
}
