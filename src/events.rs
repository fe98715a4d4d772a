//! The event stream: what changed, told to whoever listens — MCP resource subscribers, the
//! dashboard's live feed, the metrics.
//!
//! Events are derived from each committed [`WriteBatch`] (one place, so no operation can
//! forget to publish), stored in the same transaction as the change they describe (so an
//! acknowledged change always has its event, even across a crash), and then published on
//! an in-process bus. Every event carries a unique `event_id`; consumers that may see one
//! twice (a replay after restart, a second instance) deduplicate by it.

use crate::agents::Agent;
use crate::store::WriteBatch;
use crate::tasks::Task;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;
use uuid::Uuid;

/// One thing that happened, in the shape every feed uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Event {
    pub event_id: Uuid,
    /// `agent.registered`, `agent.updated`, `task.created`, `task.updated`,
    /// `evidence.submitted`, `verification.completed`, `enforcement.<action>`.
    pub event_type: String,
    pub timestamp: DateTime<Utc>,
    pub agent_id: Option<Uuid>,
    pub task_id: Option<Uuid>,
    pub data: Value,
    pub metadata: EventMetadata,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventMetadata {
    /// Shared by every event one call caused; also the id of that call's audit entry.
    pub correlation_id: Uuid,
    /// The tool (or timer) that caused it.
    pub source: String,
    /// The ARES instance that committed it.
    #[serde(default)]
    pub instance: String,
}

impl Event {
    /// The MCP resources whose contents this event changes.
    pub fn resources(&self) -> Vec<String> {
        let mut uris = Vec::new();
        let family = self.event_type.split('.').next().unwrap_or_default();
        if let Some(agent) = self.agent_id {
            uris.push(format!("ares://agents/{agent}"));
        }
        if let Some(task) = self.task_id {
            uris.push(format!("ares://tasks/{task}"));
        }
        match family {
            "agent" => uris.push("ares://agents".into()),
            "enforcement" => {
                uris.push("ares://enforcement/actions".into());
                uris.push("ares://agents".into());
            }
            "verification" => uris.push("ares://reports/reliability".into()),
            _ => {}
        }
        uris.push("ares://system/metrics".into());
        uris.push("ares://events".into());
        uris
    }
}

/// Derives the events a batch's commit causes. `correlation_id` ties them to one call.
pub fn derive(
    batch: &WriteBatch,
    at: DateTime<Utc>,
    correlation_id: Uuid,
    source: &str,
    instance: &str,
) -> Vec<Event> {
    let metadata = EventMetadata {
        correlation_id,
        source: source.to_string(),
        instance: instance.to_string(),
    };
    let event = |event_type: String, agent_id, task_id, data| Event {
        event_id: Uuid::now_v7(),
        event_type,
        timestamp: at,
        agent_id,
        task_id,
        data,
        metadata: metadata.clone(),
    };
    let mut events = Vec::new();
    for agent in &batch.agents {
        let kind = if agent.version == 1 {
            "agent.registered"
        } else {
            "agent.updated"
        };
        events.push(event(kind.into(), Some(agent.id), None, agent_data(agent)));
    }
    for task in &batch.tasks {
        let kind = if task.version == 1 {
            "task.created"
        } else {
            "task.updated"
        };
        events.push(event(
            kind.into(),
            task.agent_id,
            Some(task.id),
            task_data(task),
        ));
    }
    for e in &batch.evidence {
        events.push(event(
            "evidence.submitted".into(),
            Some(e.agent_id),
            Some(e.task_id),
            json!({
                "evidence_id": e.id,
                "chain_index": e.chain_index,
                "items": e.items.len(),
                "content_digest": e.content_digest,
            }),
        ));
    }
    for v in &batch.verifications {
        events.push(event(
            "verification.completed".into(),
            Some(v.agent_id),
            Some(v.task_id),
            json!({
                "verification_id": v.id,
                "success": v.success,
                "outcome": v.outcome,
                "quality_score": v.quality_score,
                "discrepancies": v.discrepancies,
            }),
        ));
    }
    for a in &batch.actions {
        events.push(event(
            format!("enforcement.{}", a.action.as_str()),
            Some(a.agent_id),
            None,
            json!({
                "action_id": a.id,
                "action": a.action,
                "reason": a.reason,
                "triggered_by": a.triggered_by,
                "metrics": a.metrics,
                "details": a.details,
                "expires_at": a.expires_at,
            }),
        ));
    }
    events
}

fn agent_data(agent: &Agent) -> Value {
    json!({
        "name": agent.name,
        "status": agent.status,
        "reliability_score": agent.reliability_score,
        "throttle_limit": agent.throttle_limit,
        "suspended_until": agent.suspended_until,
        "on_probation": agent.on_probation,
        "version": agent.version,
    })
}

fn task_data(task: &Task) -> Value {
    json!({
        "status": task.status,
        "agent_id": task.agent_id,
        "priority": task.priority,
        "version": task.version,
    })
}

/// The in-process bus. Slow listeners lose the oldest events (and are told how many), so
/// one stalled subscriber never holds back a commit. An event reaches the bus once: the
/// outbox relay and Redis may hand it over again, and the bus drops what it has carried.
#[derive(Debug, Clone)]
pub struct EventBus {
    sender: broadcast::Sender<Arc<Event>>,
    carried: Arc<Mutex<Carried>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity).0,
            carried: Arc::default(),
        }
    }

    /// Tells every current listener, unless the bus carried this event already; nobody
    /// listening is fine. Returns whether it went out.
    pub fn publish(&self, event: Arc<Event>) -> bool {
        let first = self
            .carried
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first_time(event.event_id);
        if first {
            let _ = self.sender.send(event);
        }
        first
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.sender.subscribe()
    }

    pub fn listeners(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// How many recent event ids the bus remembers (about 1 MB). Duplicates are rare and come
/// within seconds: the relay takes over only events left unpublished for 3 s, which are
/// mostly a dead instance's, never on this bus; that is well inside this many events even
/// at thousands of events a second.
const REMEMBERED: usize = 16_384;

/// The ids of the events the bus carried lately, oldest first.
#[derive(Debug, Default)]
struct Carried {
    ids: HashSet<Uuid>,
    order: VecDeque<Uuid>,
}

impl Carried {
    fn first_time(&mut self, id: Uuid) -> bool {
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > REMEMBERED
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, agent: bool, task: bool) -> Event {
        Event {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            timestamp: Utc::now(),
            agent_id: agent.then(Uuid::nil),
            task_id: task.then(Uuid::max),
            data: Value::Null,
            metadata: EventMetadata {
                correlation_id: Uuid::now_v7(),
                source: "test".into(),
                instance: "test".into(),
            },
        }
    }

    #[test]
    fn each_event_names_the_resources_it_changes() {
        let nil = Uuid::nil();
        let max = Uuid::max();
        assert_eq!(
            event("enforcement.suspend", true, false).resources(),
            [
                format!("ares://agents/{nil}"),
                "ares://enforcement/actions".into(),
                "ares://agents".into(),
                "ares://system/metrics".into(),
                "ares://events".into(),
            ]
        );
        assert_eq!(
            event("verification.completed", true, true).resources(),
            [
                format!("ares://agents/{nil}"),
                format!("ares://tasks/{max}"),
                "ares://reports/reliability".into(),
                "ares://system/metrics".into(),
                "ares://events".into(),
            ]
        );
        assert!(
            !event("task.created", false, true)
                .resources()
                .contains(&"ares://agents".to_string())
        );
    }

    #[tokio::test]
    async fn a_slow_listener_is_told_what_it_missed() {
        let bus = EventBus::new(2);
        let mut slow = bus.subscribe();
        for _ in 0..5 {
            bus.publish(Arc::new(event("agent.updated", true, false)));
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(3))
        ));
        assert!(slow.recv().await.is_ok());
        assert_eq!(bus.listeners(), 1);
    }

    #[tokio::test]
    async fn an_event_handed_over_twice_goes_out_once() {
        let bus = EventBus::default();
        let mut listener = bus.subscribe();
        let once = Arc::new(event("task.created", false, true));
        assert!(bus.publish(once.clone()));
        assert!(!bus.publish(once.clone()));
        let other = Arc::new(event("task.updated", false, true));
        assert!(bus.publish(other.clone()));
        assert_eq!(listener.recv().await.unwrap().event_id, once.event_id);
        assert_eq!(listener.recv().await.unwrap().event_id, other.event_id);
        assert!(listener.try_recv().is_err());
    }

    #[test]
    fn the_bus_forgets_the_oldest_ids_beyond_its_memory() {
        let mut carried = Carried::default();
        let first = Uuid::now_v7();
        assert!(carried.first_time(first));
        for _ in 0..REMEMBERED {
            assert!(carried.first_time(Uuid::now_v7()));
        }
        assert_eq!(carried.ids.len(), REMEMBERED);
        assert!(carried.first_time(first), "forgotten, so carried again");
    }
}
