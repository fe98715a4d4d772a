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
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub metrics: Value,
    /// For escalation: where each open task went, `{moves: [{task_id, from, to}]}`; otherwise
    /// the agent's throttle limit and status afterwards.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub details: Value,
    /// When a suspension ends on its own.
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Tunable thresholds of the enforcement ladder. Every field has a default; a policy file
/// (`--policy FILE`, JSON) sets only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Consecutive rejections that earn a warning.
    pub warn_after: usize,
    /// Consecutive rejections that throttle.
    pub throttle_after: usize,
    /// Consecutive rejections that suspend (and escalate the agent's open tasks).
    pub suspend_after: usize,
    /// The concurrency limit while throttled or on probation.
    pub throttle_limit: i32,
    /// How long a policy suspension lasts, in minutes.
    pub suspension_minutes: i64,
    /// Consecutive verified tasks that end probation.
    pub probation_successes: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            warn_after: 1,
            throttle_after: 2,
            suspend_after: 3,
            throttle_limit: 1,
            suspension_minutes: 30,
            probation_successes: 3,
        }
    }
}

impl Policy {
    /// Reads a policy file, naming the bad field when it does not parse.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let policy: Policy = serde_path_to_error::deserialize(de)
            .map_err(|e| anyhow::anyhow!("policy field `{}`: {}", e.path(), e.inner()))?;
        policy.validate()?;
        Ok(policy)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            1 <= self.warn_after
                && self.warn_after <= self.throttle_after
                && self.throttle_after <= self.suspend_after,
            "policy: expected 1 <= warn_after <= throttle_after <= suspend_after"
        );
        anyhow::ensure!(
            self.throttle_limit >= 1,
            "policy: throttle_limit must be at least 1"
        );
        anyhow::ensure!(
            self.suspension_minutes >= 1,
            "policy: suspension_minutes must be at least 1"
        );
        anyhow::ensure!(
            self.probation_successes >= 1,
            "policy: probation_successes must be at least 1"
        );
        Ok(())
    }

    pub fn suspension(&self) -> Duration {
        Duration::minutes(self.suspension_minutes)
    }

    /// The actions a verdict earns, with the reason for each, given the agent's streaks
    /// of rejected and verified verdicts.
    pub fn after_verdict(
        &self,
        agent: &Agent,
        rejections: usize,
        successes: usize,
    ) -> Vec<(ActionKind, String)> {
        if agent.status != AgentStatus::Active {
            return Vec::new();
        }
        let failing = format!("{rejections} consecutive rejected verification(s)");
        if agent.on_probation {
            if rejections >= 1 {
                let why = format!("{failing} while on probation");
                return vec![
                    (ActionKind::Suspend, why.clone()),
                    (ActionKind::Escalate, why),
                ];
            }
            if successes >= self.probation_successes {
                return vec![(
                    ActionKind::Reinstate,
                    format!(
                        "{successes} consecutive verified tasks on probation: earned its way back"
                    ),
                )];
            }
            return Vec::new();
        }
        if rejections >= self.suspend_after {
            vec![
                (ActionKind::Suspend, failing.clone()),
                (ActionKind::Escalate, failing),
            ]
        } else if rejections >= self.throttle_after {
            if agent.throttle_limit.is_some() {
                Vec::new()
            } else {
                vec![(ActionKind::Throttle, failing)]
            }
        } else if rejections >= self.warn_after {
            vec![(ActionKind::Warning, failing)]
        } else {
            Vec::new()
        }
    }

    /// Ends a suspension whose time is up: the agent is active again, on probation and
    /// throttled until it earns its way back. Returns whether anything changed.
    pub fn lapse(&self, agent: &mut Agent, now: DateTime<Utc>) -> bool {
        let lapsed = agent.status == AgentStatus::Suspended
            && agent.suspended_until.is_some_and(|until| until <= now);
        if lapsed {
            agent.status = AgentStatus::Active;
            agent.suspended_until = None;
            agent.on_probation = true;
            agent.throttle_limit = Some(self.throttle_limit);
            agent.updated_at = now;
        }
        lapsed
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
            agent.on_probation = false;
        }
        ActionKind::Reinstate => {
            agent.status = AgentStatus::Active;
            agent.suspended_until = None;
            agent.throttle_limit = None;
            agent.on_probation = false;
        }
    }
    agent.updated_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            max_concurrent_tasks: 4,
            ..Agent::for_test("a")
        }
    }

    fn kinds(actions: Vec<(ActionKind, String)>) -> Vec<ActionKind> {
        actions.into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn the_ladder_climbs_warning_throttle_suspend() {
        let p = Policy::default();
        let a = agent();
        assert_eq!(kinds(p.after_verdict(&a, 0, 4)), vec![]);
        assert_eq!(kinds(p.after_verdict(&a, 1, 0)), vec![ActionKind::Warning]);
        assert_eq!(kinds(p.after_verdict(&a, 2, 0)), vec![ActionKind::Throttle]);
        assert_eq!(
            kinds(p.after_verdict(&a, 3, 0)),
            vec![ActionKind::Suspend, ActionKind::Escalate]
        );
    }

    #[test]
    fn a_lapsed_suspension_returns_on_probation_until_earned_back() {
        let p = Policy::default();
        let now = Utc::now();
        let mut a = agent();
        apply(&mut a, ActionKind::Suspend, None, Some(now), now);
        assert!(!p.lapse(&mut a, now - Duration::seconds(1)), "not yet");
        assert!(p.lapse(&mut a, now));
        assert_eq!(
            (a.status, a.on_probation, a.throttle_limit),
            (AgentStatus::Active, true, Some(1))
        );
        assert_eq!(kinds(p.after_verdict(&a, 0, 2)), vec![]);
        assert_eq!(
            kinds(p.after_verdict(&a, 0, 3)),
            vec![ActionKind::Reinstate]
        );
        assert_eq!(
            kinds(p.after_verdict(&a, 1, 0)),
            vec![ActionKind::Suspend, ActionKind::Escalate]
        );
    }

    #[test]
    fn a_policy_file_sets_only_what_it_changes_and_names_bad_fields() {
        let p = Policy::from_json(r#"{"suspend_after": 5}"#).unwrap();
        assert_eq!((p.suspend_after, p.warn_after), (5, 1));
        let err = Policy::from_json(r#"{"suspend_after": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("suspend_after"), "{err}");
        assert!(Policy::from_json(r#"{"warn_after": 4}"#).is_err());
        assert!(Policy::from_json(r#"{"colour": 1}"#).is_err());
    }

    proptest::proptest! {
        #[test]
        fn the_ladder_never_skips_a_rung_and_never_acts_on_inactive_agents(
            rejections in 0usize..10, successes in 0usize..10, probation: bool, suspended: bool,
        ) {
            let p = Policy::default();
            let mut a = agent();
            a.on_probation = probation;
            if suspended { a.status = AgentStatus::Suspended; }
            let actions = kinds(p.after_verdict(&a, rejections, successes));
            if suspended { proptest::prop_assert!(actions.is_empty()); }
            if actions.contains(&ActionKind::Suspend) {
                proptest::prop_assert!(rejections >= p.suspend_after || (probation && rejections >= 1));
                proptest::prop_assert!(actions.contains(&ActionKind::Escalate));
            }
            if !probation && rejections < p.warn_after { proptest::prop_assert!(actions.is_empty()); }
        }
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
