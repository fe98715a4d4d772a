//! The metrics' view of the event bus: one task per service turns each committed change
//! into counter increments and gauge values, naming agents by name.

use super::Metrics;
use crate::events::Event;
use crate::service::Ares;
use crate::store::{AgentFilter, Page, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::broadcast::{Receiver, error::RecvError};
use uuid::Uuid;

/// Task states that end a piece of work. A rolled-back task may be worked on again, and then
/// counts again when it completes.
const COMPLETED: [&str; 5] = ["verified", "rejected", "failed", "cancelled", "rolled_back"];

/// Starts following `ares`'s events, once per service however many transports call it.
/// Subscribes before seeding the reliability gauge from the store, so no change made in
/// between is missed. Ends when the service's event bus is dropped.
pub fn watch(ares: &Arc<Ares>) {
    if ares.metrics.watching.swap(true, Ordering::SeqCst) {
        return;
    }
    let events = ares.events.subscribe();
    let metrics = ares.metrics.clone();
    let instance = ares.instance.clone();
    let names = AgentNames {
        store: ares.store.clone(),
        known: HashMap::new(),
    };
    tokio::spawn(follow(metrics, names, events, instance));
}

/// Counts this instance's own events only: another instance's arrive through Redis for its
/// subscribers, and are counted by that instance (sums over instances stay right). Scores
/// are gauges, so everyone's updates apply.
async fn follow(
    metrics: Arc<Metrics>,
    mut names: AgentNames,
    mut events: Receiver<Arc<Event>>,
    instance: String,
) {
    names.seed(&metrics).await;
    loop {
        match events.recv().await {
            Ok(event) => {
                let agent = match event.agent_id {
                    Some(id) => names.name(id, &event).await,
                    None => "unassigned".to_string(),
                };
                if event.metadata.instance == instance {
                    metrics.count(&event, &agent);
                } else if event.event_type.starts_with("agent.") {
                    metrics.agent_changed(&agent, &event.data);
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "metrics fell behind the event bus; counts are short"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

impl Metrics {
    /// What one event changes; `agent` names the event's agent.
    pub fn count(&self, event: &Event, agent: &str) {
        self.events.with_label_values(&[&event.event_type]).inc();
        let data = &event.data;
        let (family, kind) = event
            .event_type
            .split_once('.')
            .unwrap_or((&event.event_type, ""));
        match family {
            "agent" => self.agent_changed(agent, data),
            "task" => {
                if let Some(status) = text(data, "status").filter(|s| COMPLETED.contains(s)) {
                    self.tasks_completed
                        .with_label_values(&[agent, status])
                        .inc();
                }
            }
            "verification" => {
                let outcome = text(data, "outcome").unwrap_or("unknown");
                self.verifications.with_label_values(&[outcome]).inc();
                let found = data["discrepancies"].as_u64().unwrap_or(0);
                self.discrepancies.inc_by(found);
            }
            "enforcement" => self.enforcement.with_label_values(&[kind]).inc(),
            _ => {}
        }
    }

    /// Keeps the reliability gauge at the agent's current score; a deregistered agent's
    /// series goes away.
    fn agent_changed(&self, agent: &str, data: &Value) {
        if text(data, "status") == Some("deregistered") {
            let _ = self.reliability.remove_label_values(&[agent]);
        } else if let Some(score) = data["reliability_score"].as_f64() {
            self.reliability.with_label_values(&[agent]).set(score);
        }
    }
}

fn text<'a>(data: &'a Value, field: &str) -> Option<&'a str> {
    data.get(field).and_then(Value::as_str)
}

/// Agent ids to names, learnt from agent events and, for an agent not seen yet, the store.
struct AgentNames {
    store: Arc<dyn Store>,
    known: HashMap<Uuid, String>,
}

impl AgentNames {
    /// Sets every registered agent's reliability gauge and learns its name.
    async fn seed(&mut self, metrics: &Metrics) {
        let mut after = None;
        loop {
            let page = Page { after, limit: 500 };
            let listed = match self.store.list_agents(&AgentFilter::default(), page).await {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics: cannot read agents to seed scores");
                    return;
                }
            };
            for agent in listed.items {
                if agent.status != crate::agents::AgentStatus::Deregistered {
                    metrics
                        .reliability
                        .with_label_values(&[&agent.name])
                        .set(agent.reliability_score);
                }
                self.known.insert(agent.id, agent.name);
            }
            match listed.next_cursor {
                Some(cursor) => after = Some(cursor),
                None => return,
            }
        }
    }

    async fn name(&mut self, id: Uuid, event: &Event) -> String {
        if event.event_type.starts_with("agent.")
            && let Some(name) = text(&event.data, "name")
        {
            self.known.insert(id, name.to_string());
        }
        if let Some(name) = self.known.get(&id) {
            return name.clone();
        }
        match self.store.agent(id).await {
            Ok(Some(agent)) => {
                self.known.insert(id, agent.name.clone());
                agent.name
            }
            // Never the id itself: one series per unknown id would be unbounded.
            Ok(None) | Err(_) => "unknown".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventMetadata;
    use serde_json::json;

    fn event(event_type: &str, data: Value) -> Event {
        Event {
            event_id: Uuid::now_v7(),
            event_type: event_type.into(),
            timestamp: chrono::Utc::now(),
            agent_id: Some(Uuid::now_v7()),
            task_id: None,
            data,
            metadata: EventMetadata {
                correlation_id: Uuid::now_v7(),
                source: "test".into(),
                instance: "test".into(),
            },
        }
    }

    #[test]
    fn only_tasks_reaching_an_end_state_count_as_completed() {
        let metrics = Metrics::new();
        for status in [
            "assigned",
            "submitted",
            "verified",
            "rolled_back",
            "blocked",
        ] {
            metrics.count(&event("task.updated", json!({ "status": status })), "ann");
        }
        let completed = |status: &str| {
            metrics
                .tasks_completed
                .with_label_values(&["ann", status])
                .get()
        };
        assert_eq!(completed("verified"), 1);
        assert_eq!(completed("rolled_back"), 1);
        assert_eq!(completed("submitted"), 0);
        assert_eq!(metrics.events.with_label_values(&["task.updated"]).get(), 5);
    }

    #[test]
    fn verdicts_count_their_outcome_and_discrepancies() {
        let metrics = Metrics::new();
        let verdict = |outcome, found| {
            event(
                "verification.completed",
                json!({ "outcome": outcome, "discrepancies": found }),
            )
        };
        metrics.count(&verdict("rejected", 2), "ann");
        metrics.count(&verdict("verified", 0), "ann");
        metrics.count(&verdict("rejected", 1), "bob");
        assert_eq!(
            metrics.verifications.with_label_values(&["rejected"]).get(),
            2
        );
        assert_eq!(
            metrics.verifications.with_label_values(&["verified"]).get(),
            1
        );
        assert_eq!(metrics.discrepancies.get(), 3);
    }

    #[test]
    fn enforcement_counts_by_action() {
        let metrics = Metrics::new();
        metrics.count(&event("enforcement.suspend", json!({})), "ann");
        metrics.count(&event("enforcement.suspend", json!({})), "bob");
        metrics.count(&event("enforcement.warning", json!({})), "bob");
        assert_eq!(metrics.enforcement.with_label_values(&["suspend"]).get(), 2);
        assert_eq!(metrics.enforcement.with_label_values(&["warning"]).get(), 1);
    }

    #[test]
    fn the_score_follows_the_agent_and_leaves_with_it() {
        let metrics = Metrics::new();
        let agent = |status, score| {
            event(
                "agent.updated",
                json!({ "name": "ann", "status": status, "reliability_score": score }),
            )
        };
        metrics.count(&agent("active", 0.5), "ann");
        metrics.count(&agent("suspended", 0.25), "ann");
        assert_eq!(metrics.reliability.with_label_values(&["ann"]).get(), 0.25);
        metrics.count(&agent("deregistered", 0.25), "ann");
        let families = metrics.registry.gather();
        assert!(
            families
                .iter()
                .all(|f| f.name() != "ares_agent_reliability_score"),
            "a deregistered agent has no series left"
        );
    }
}
