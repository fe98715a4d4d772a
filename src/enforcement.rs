//! Enforcement: the actions ARES takes against an agent, what each does to the agent's
//! record, and the default policy ladder that chooses them after a verdict.

use crate::agents::{Agent, AgentStatus};
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The kinds of enforcement action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Recorded and published; changes nothing else.
    Warning,
    /// Lowers the agent's concurrent-task limit.
    Throttle,
    /// Refuses the agent's work until the suspension ends or it is reinstated.
    Suspend,
    /// Moves the agent's open tasks to a capable backup agent.
    Escalate,
    /// Lifts suspension and throttling.
    Reinstate,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Throttle => "throttle",
            Self::Suspend => "suspend",
            Self::Escalate => "escalate",
            Self::Reinstate => "reinstate",
        }
    }
}

/// Who decided on an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Manual,
    Policy,
}

/// A recorded enforcement action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EnforcementAction {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub action: ActionKind,
    pub reason: String,
    pub triggered_by: Trigger,
    /// The numbers behind the decision (scores, streaks, limits).
    pub metrics: Value,
    /// For escalation: where each open task went, `[{task_id, from, to}]`.
    pub details: Value,
    /// When a suspension ends on its own.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Tunable thresholds of the default ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// Consecutive rejections that earn a warning.
    pub warn_after: usize,
    /// Consecutive rejections that throttle.
    pub throttle_after: usize,
    /// Consecutive rejections that suspend (and escalate the agent's open tasks).
    pub suspend_after: usize,
    /// The concurrency limit while throttled.
    pub throttle_limit: i32,
    /// How long a policy suspension lasts.
    pub suspension: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            warn_after: 1,
            throttle_after: 2,
            suspend_after: 3,
            throttle_limit: 1,
            suspension: Duration::minutes(30),
        }
    }
}

impl Policy {
    /// The actions a verdict earns, given the agent's current rejection streak.
    pub fn after_verdict(&self, agent: &Agent, streak: usize) -> Vec<ActionKind> {
        if agent.status != AgentStatus::Active {
            return Vec::new();
        }
        if streak >= self.suspend_after {
            vec![ActionKind::Suspend, ActionKind::Escalate]
        } else if streak >= self.throttle_after {
            if agent.throttle_limit.is_some() {
                Vec::new()
            } else {
                vec![ActionKind::Throttle]
            }
        } else if streak >= self.warn_after {
            vec![ActionKind::Warning]
        } else {
            Vec::new()
        }
    }
}

/// Applies an action's effect to the agent record. `limit` and `until` are the throttle
/// limit and suspension end the action carries.
pub fn apply(
    agent: &mut Agent,
    action: ActionKind,
    limit: Option<i32>,
    until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    match action {
        ActionKind::Warning | ActionKind::Escalate => {}
        ActionKind::Throttle => {
            agent.throttle_limit = Some(limit.unwrap_or((agent.max_concurrent_tasks / 2).max(1)));
        }
        ActionKind::Suspend => {
            agent.status = AgentStatus::Suspended;
            agent.suspended_until = until;
        }
        ActionKind::Reinstate => {
            agent.status = AgentStatus::Active;
            agent.suspended_until = None;
            agent.throttle_limit = None;
        }
    }
    agent.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agent() -> Agent {
        let now = Utc::now();
        Agent {
            id: Uuid::new_v4(),
            name: "a".into(),
            capabilities: vec![],
            public_key: None,
            configuration: json!({}),
            max_concurrent_tasks: 4,
            status: AgentStatus::Active,
            throttle_limit: None,
            suspended_until: None,
            reliability_score: 0.5,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }

    #[test]
    fn the_ladder_climbs_warning_throttle_suspend() {
        let p = Policy::default();
        let a = agent();
        assert_eq!(p.after_verdict(&a, 0), vec![]);
        assert_eq!(p.after_verdict(&a, 1), vec![ActionKind::Warning]);
        assert_eq!(p.after_verdict(&a, 2), vec![ActionKind::Throttle]);
        assert_eq!(
            p.after_verdict(&a, 3),
            vec![ActionKind::Suspend, ActionKind::Escalate]
        );
    }

    #[test]
    fn reinstating_lifts_suspension_and_throttle() {
        let now = Utc::now();
        let mut a = agent();
        apply(&mut a, ActionKind::Throttle, None, None, now);
        assert_eq!(a.throttle_limit, Some(2));
        apply(&mut a, ActionKind::Suspend, None, Some(now), now);
        assert_eq!(a.status, AgentStatus::Suspended);
        apply(&mut a, ActionKind::Reinstate, None, None, now);
        assert_eq!((a.status, a.throttle_limit), (AgentStatus::Active, None));
    }
}
