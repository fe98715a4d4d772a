//! Publishing every committed event at least once, even when its committer crashes.
//!
//! Events are stored unpublished in their change's transaction. After the commit the
//! instance publishes them (on its bus, and to Redis when configured) and notes their ids
//! here; the relay marks them published in one write a second. Whatever stays unpublished
//! past [`GRACE`] — its committer died between commit and publish, or Redis was away — any
//! instance's relay publishes. That can deliver an event twice; the bus drops what it
//! carried already, and clients deduplicate by `event_id`.

use super::Ares;
use crate::events::Event;
use crate::store::StoreResult;
use std::sync::{Arc, Mutex};
use uuid::Uuid;

/// How long an unpublished event may wait for its committer before a relay publishes it.
/// Publishing takes milliseconds after a commit; marks are written every relay tick.
pub const GRACE: chrono::TimeDelta = chrono::TimeDelta::seconds(3);

/// How many stale events one relay tick takes on.
const BATCH: i64 = 500;

/// The most published ids waiting for a relay tick (about 1 MB).
const MAX_NOTED: usize = 65_536;

/// Ids of events published since the relay last marked them.
#[derive(Debug, Default)]
pub struct Outbox {
    published: Mutex<Vec<Uuid>>,
}

impl Outbox {
    /// Notes published ids for the relay to mark. Bounded: where nothing runs the relay
    /// (ARES embedded without `serve`), ids past the bound are not noted; a relay started
    /// later would publish those events again, which listeners deduplicate.
    fn note(&self, ids: impl IntoIterator<Item = Uuid>) {
        let mut noted = self.lock();
        if noted.len() < MAX_NOTED {
            noted.extend(ids);
        }
    }

    fn take(&self) -> Vec<Uuid> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Uuid>> {
        self.published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Ares {
    /// Publishes committed events: to the other instances through Redis when configured
    /// (they serve the truth from the database meanwhile, and the relay retries what
    /// Redis did not take), then on this instance's bus.
    pub(crate) async fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let delivered = match self.redis.as_ref() {
            Some(redis) => redis.is_up() && redis.publish(&self.instance, &events).await,
            None => true,
        };
        if delivered {
            self.outbox.note(events.iter().map(|e| e.event_id));
        }
        for event in events {
            self.events.publish(Arc::new(event));
        }
    }

    /// One relay tick: marks what this instance published, then publishes what nobody
    /// did within [`GRACE`]. Returns how many stale events it published. `ares serve` runs
    /// it every second.
    pub async fn relay_events(&self) -> StoreResult<usize> {
        let published = self.outbox.take();
        if !published.is_empty()
            && let Err(e) = self.store.mark_published(&published).await
        {
            // Left unmarked they are published again later: a duplicate, never a loss.
            tracing::debug!(error = %e, "could not mark published events");
        }
        // While Redis is away, what this instance committed already went out on its own bus;
        // publishing the backlog every tick would repeat it. It goes when Redis returns.
        if self.redis.as_ref().is_some_and(|r| !r.is_up()) {
            return Ok(0);
        }
        let stale = self
            .store
            .unpublished_events(self.now() - GRACE, BATCH)
            .await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let count = stale.len();
        tracing::info!(count, "publishing events their committer did not");
        self.publish(stale).await;
        Ok(count)
    }
}
