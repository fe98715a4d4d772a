//! Routing: which agent gets a task when none is named.

use crate::agents::Agent;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use uuid::Uuid;

/// The best candidate: has every required capability, is available, is under its effective
/// limit; then the least loaded, then the most reliable, then the oldest (a stable tie-break).
pub fn choose<'a>(
    candidates: &'a [Agent],
    required: &[String],
    load: &HashMap<Uuid, i64>,
    exclude: &[Uuid],
    now: DateTime<Utc>,
) -> Option<&'a Agent> {
    candidates
        .iter()
        .filter(|a| !exclude.contains(&a.id))
        .filter(|a| a.is_available(now) && a.has_capabilities(required))
        .filter(|a| load.get(&a.id).copied().unwrap_or(0) < i64::from(a.effective_limit()))
        .min_by(|a, b| {
            let la = load.get(&a.id).copied().unwrap_or(0);
            let lb = load.get(&b.id).copied().unwrap_or(0);
            la.cmp(&lb)
                .then(b.reliability_score.total_cmp(&a.reliability_score))
                .then(a.created_at.cmp(&b.created_at))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::AgentStatus;
    use serde_json::json;

    fn agent(name: &str, caps: &[&str], score: f64) -> Agent {
        let now = Utc::now();
        Agent {
            id: Uuid::new_v4(),
            name: name.into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            public_key: None,
            configuration: json!({}),
            max_concurrent_tasks: 2,
            status: AgentStatus::Active,
            throttle_limit: None,
            suspended_until: None,
            reliability_score: score,
            on_probation: false,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn prefers_least_loaded_then_most_reliable() {
        let a = agent("a", &["rust"], 0.9);
        let b = agent("b", &["rust"], 0.6);
        let c = agent("c", &["rust"], 0.7);
        let load = HashMap::from([(a.id, 1)]);
        let agents = [a, b, c];
        let required = ["rust".to_string()];
        let chosen = choose(&agents, &required, &load, &[], Utc::now()).unwrap();
        assert_eq!(chosen.name, "c");
    }

    #[test]
    fn skips_missing_capabilities_full_and_suspended_agents() {
        let mut suspended = agent("s", &["rust"], 0.9);
        suspended.status = AgentStatus::Suspended;
        let full = agent("f", &["rust"], 0.9);
        let wrong = agent("w", &["python"], 0.9);
        let load = HashMap::from([(full.id, 2)]);
        let agents = [suspended, full, wrong];
        assert!(choose(&agents, &["rust".into()], &load, &[], Utc::now()).is_none());
    }

    #[test]
    fn throttling_lowers_the_limit_routing_honours() {
        let mut a = agent("a", &[], 0.9);
        a.throttle_limit = Some(1);
        let load = HashMap::from([(a.id, 1)]);
        let agents = [a];
        assert!(choose(&agents, &[], &load, &[], Utc::now()).is_none());
    }
}
