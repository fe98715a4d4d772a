//! Events, reliability history and retention: SQL shared by both backends like the rest of
//! `sql.rs`. An event row keeps the whole event as JSON, ordered by `seq`.

use super::{Arg, Backend, OnUnique, StoreResult, Write, micros, to_body};
use crate::events::Event;
use crate::reliability::{Reliability, Window};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use uuid::Uuid;

const EVENT_COLUMNS: &str = "SELECT seq, id AS rid, body FROM events";
const MAX_ROWS: i64 = 10_000;
/// Events written by one INSERT: far below either database's limit on bound parameters.
const EVENTS_PER_INSERT: usize = 100;

/// What writing these events is called in an error: the event ids.
struct Recording<'a>(&'a [Event]);

impl std::fmt::Display for Recording<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("record events")?;
        for (i, event) in self.0.iter().enumerate() {
            let separator = if i == 0 { " " } else { ", " };
            write!(f, "{separator}{}", event.event_id)?;
        }
        Ok(())
    }
}

/// The statements that record a commit's events: one (a few at most: one per change).
pub(super) fn event_writes(events: &[Event], writes: &mut Vec<Write>) -> StoreResult<()> {
    for events in events.chunks(EVENTS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO events (id, event_type, agent_id, task_id, created_us, body, published) \
             VALUES ",
        );
        let mut args = Vec::with_capacity(events.len() * 6);
        for (i, event) in events.iter().enumerate() {
            let first = i * 6;
            if i > 0 {
                sql.push_str(", ");
            }
            let _ = write!(
                sql,
                "(${}, ${}, ${}, ${}, ${}, ${}, 0)",
                first + 1,
                first + 2,
                first + 3,
                first + 4,
                first + 5,
                first + 6
            );
            args.extend([
                event.event_id.into(),
                event.event_type.as_str().into(),
                event.agent_id.into(),
                event.task_id.into(),
                micros(event.timestamp).into(),
                Arg::Text(to_body("events", event.event_id, event)?),
            ]);
        }
        writes.push(Write::new(
            sql,
            args,
            OnUnique::Conflict,
            Recording(events).to_string(),
        ));
    }
    Ok(())
}

impl Backend {
    pub(super) async fn read_events_after(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<(i64, Event)>> {
        self.fetch(
            "events",
            &format!("{EVENT_COLUMNS} WHERE seq > $1 ORDER BY seq ASC LIMIT $2"),
            vec![after.unwrap_or(0).into(), limit.clamp(1, MAX_ROWS).into()],
        )
        .await
    }

    pub(super) async fn read_event_position(&self, id: Uuid) -> StoreResult<Option<i64>> {
        let rows: Vec<(i64, Event)> = self
            .fetch(
                "events",
                &format!("{EVENT_COLUMNS} WHERE id = $1"),
                vec![id.into()],
            )
            .await?;
        Ok(rows.first().map(|(seq, _)| *seq))
    }

    pub(super) async fn read_unpublished_events(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Event>> {
        self.fetch_items(
            "events",
            &format!(
                "{EVENT_COLUMNS} WHERE published = 0 AND created_us < $1 ORDER BY seq ASC LIMIT $2"
            ),
            vec![micros(before).into(), limit.clamp(1, MAX_ROWS).into()],
        )
        .await
    }

    pub(super) async fn write_published(&self, ids: &[Uuid]) -> StoreResult<()> {
        // Chunks keep each statement well under both backends' parameter limits.
        for chunk in ids.chunks(500) {
            let mut tx = self
                .writer()
                .begin()
                .await
                .map_err(|e| self.fail(e, "begin a transaction"))?;
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            self.exec(
                &mut tx,
                &format!(
                    "UPDATE events SET published = 1 WHERE published = 0 AND id IN ({})",
                    placeholders.join(", ")
                ),
                chunk.iter().map(|id| (*id).into()).collect(),
                OnUnique::Conflict,
                "mark events published",
            )
            .await?;
            tx.commit()
                .await
                .map_err(|e| self.fail(e, "commit the published marks"))?;
        }
        Ok(())
    }

    pub(super) async fn read_latest_events(&self, limit: i64) -> StoreResult<Vec<(i64, Event)>> {
        let mut rows = self
            .fetch(
                "events",
                &format!("{EVENT_COLUMNS} ORDER BY seq DESC LIMIT $1"),
                vec![limit.clamp(1, MAX_ROWS).into()],
            )
            .await?;
        rows.reverse();
        Ok(rows)
    }

    pub(super) async fn read_reliability_history(
        &self,
        agent_id: Uuid,
        window: Window,
        since: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<Reliability>> {
        let mut rows: Vec<(i64, Reliability)> = self
            .fetch(
                "reliability_snapshots",
                "SELECT seq, agent_id AS rid, body FROM reliability_snapshots \
                 WHERE agent_id = $1 AND time_window = $2 AND created_us >= $3 \
                 ORDER BY created_us DESC, seq DESC LIMIT $4",
                vec![
                    agent_id.into(),
                    window.as_str().into(),
                    micros(since).into(),
                    limit.clamp(1, MAX_ROWS).into(),
                ],
            )
            .await?;
        rows.reverse();
        Ok(rows.into_iter().map(|(_, r)| r).collect())
    }

    pub(super) async fn delete_before(
        &self,
        events_before: DateTime<Utc>,
        snapshots_before: DateTime<Utc>,
    ) -> StoreResult<(u64, u64)> {
        let mut tx = self
            .writer()
            .begin()
            .await
            .map_err(|e| self.fail(e, "begin a transaction"))?;
        let events = self
            .exec(
                &mut tx,
                "DELETE FROM events WHERE created_us < $1",
                vec![micros(events_before).into()],
                OnUnique::Conflict,
                "prune old events",
            )
            .await?;
        let snapshots = self
            .exec(
                &mut tx,
                "DELETE FROM reliability_snapshots WHERE created_us < $1",
                vec![micros(snapshots_before).into()],
                OnUnique::Conflict,
                "prune old reliability snapshots",
            )
            .await?;
        tx.commit()
            .await
            .map_err(|e| self.fail(e, "commit the pruning"))?;
        Ok((events, snapshots))
    }
}
