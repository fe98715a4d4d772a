//! Group commit: commits that queue up while another is being written go to the database
//! together, in one transaction.
//!
//! Every caller puts its batch in the queue, then either receives its outcome or, when the
//! turn to write is free, takes the turn and writes whatever is queued, its own batch among
//! it. One caller alone writes alone, exactly as without grouping; under load a transaction
//! carries as many batches as arrived while the last one was written. What a group saves is
//! per transaction: the `BEGIN` and `COMMIT`, and every page that several of its batches
//! change (the last page of each append-only table, the index pages of recent rows) is
//! written to the log once instead of once per batch. On PostgreSQL the group also shares
//! one hold of the audit chain's lock and one WAL flush, and the chain's head is read once.
//!
//! A batch that fails gets its own error; the others in its group are not affected: the
//! group is written again with each batch in a savepoint of its own, and the failing one is
//! rolled back to its savepoint. Only a failure of the group's `BEGIN` or `COMMIT` fails
//! every batch in it, as it would have failed each alone.

use super::{StoreError, StoreResult, WriteBatch};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// At most this many batches share a transaction, so that one transaction (and the lock it
/// holds) stays short and a failed `COMMIT` fails a bounded number of calls.
pub const MAX_GROUP: usize = 64;

/// A batch waiting to be written, and where its outcome goes.
pub struct Pending {
    pub batch: WriteBatch,
    pub done: oneshot::Sender<StoreResult<()>>,
}

/// Writes a group of batches and reports each one's outcome through its `done`.
pub type WriteGroup = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The queue of batches and the turn to write them; one per store.
#[derive(Default, Clone)]
pub struct GroupCommit {
    queue: Arc<Mutex<Vec<Pending>>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Commits `batch`, in a group with whatever else is queued when the turn comes.
    /// `write` writes one group; it runs as a task of its own, so a caller that goes away
    /// mid-write does not cut the others' transaction short.
    pub async fn commit(
        &self,
        batch: WriteBatch,
        write: impl Fn(Vec<Pending>) -> WriteGroup,
    ) -> StoreResult<()> {
        let (done, mut outcome) = oneshot::channel();
        self.queue
            .lock()
            .expect("commit queue lock")
            .push(Pending { batch, done });
        loop {
            tokio::select! {
                biased;
                result = &mut outcome => {
                    return result.unwrap_or_else(|_| {
                        Err(StoreError::Internal(anyhow::anyhow!(
                            "the commit was lost: the task writing it stopped"
                        )))
                    });
                }
                turn = self.turn.clone().lock_owned() => {
                    let group = {
                        let mut queue = self.queue.lock().expect("commit queue lock");
                        let take = queue.len().min(MAX_GROUP);
                        queue.drain(..take).collect::<Vec<_>>()
                    };
                    if group.is_empty() {
                        // Our batch went in an earlier group; its outcome is on its way.
                        continue;
                    }
                    let writing = write(group);
                    tokio::spawn(async move {
                        writing.await;
                        drop(turn);
                    });
                }
            }
        }
    }
}

/// The same failure, for each batch of a group that it failed.
pub fn for_each_batch(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(message) => StoreError::Unavailable(message.clone()),
        StoreError::Duplicate(what) => StoreError::Duplicate(what),
        StoreError::Conflict => StoreError::Conflict,
        StoreError::Internal(e) => StoreError::Internal(anyhow::anyhow!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A writer that takes a while, records each group's size and fails batches that
    /// carry an idempotency record (standing in for a batch that violates a constraint).
    fn slow_writer(sizes: Arc<Mutex<Vec<usize>>>) -> impl Fn(Vec<Pending>) -> WriteGroup {
        move |group| {
            let sizes = sizes.clone();
            Box::pin(async move {
                sizes.lock().unwrap().push(group.len());
                tokio::time::sleep(Duration::from_millis(20)).await;
                for p in group {
                    let outcome = if p.batch.idempotency.is_empty() {
                        Ok(())
                    } else {
                        Err(StoreError::Conflict)
                    };
                    let _ = p.done.send(outcome);
                }
            })
        }
    }

    #[tokio::test]
    async fn a_lone_commit_is_written_alone() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = GroupCommit::default();
        group
            .commit(WriteBatch::default(), slow_writer(sizes.clone()))
            .await
            .unwrap();
        assert_eq!(*sizes.lock().unwrap(), vec![1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_that_arrive_during_a_write_share_the_next_transaction() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let group = GroupCommit::default();
        let failed = Arc::new(AtomicUsize::new(0));
        let calls = (0..40).map(|i| {
            let (group, sizes, failed) = (group.clone(), sizes.clone(), failed.clone());
            tokio::spawn(async move {
                let mut batch = WriteBatch::default();
                if i % 10 == 0 {
                    batch.idempotency.push(super::super::IdempotencyRecord {
                        scope: "test".into(),
                        key: i.to_string(),
                        fingerprint: String::new(),
                        response: serde_json::Value::Null,
                        created_at: chrono::Utc::now(),
                    });
                }
                if group.commit(batch, slow_writer(sizes)).await.is_err() {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
            })
        });
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap();
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(
            sizes.iter().sum::<usize>(),
            40,
            "every batch written once: {sizes:?}"
        );
        assert!(
            sizes.len() < 40,
            "concurrent commits were grouped: {sizes:?}"
        );
        assert!(sizes.iter().all(|&n| n <= MAX_GROUP));
        assert_eq!(
            failed.load(Ordering::SeqCst),
            4,
            "only the failing batches failed"
        );
    }

    #[tokio::test]
    async fn a_writer_that_drops_the_outcome_is_an_error_not_a_hang() {
        let group = GroupCommit::default();
        let result = group
            .commit(WriteBatch::default(), |g| Box::pin(async move { drop(g) }))
            .await;
        assert!(matches!(result, Err(StoreError::Internal(_))), "{result:?}");
    }
}
