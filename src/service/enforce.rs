//! Enforcement actions, manual and automatic, through one path: [`Ares::decide`] applies an
//! action to the agent, escalates its work when asked, and records why.

use super::{Ares, page, parse_optional_time};
use crate::agents::{Agent, AgentStatus};
use crate::enforcement::{self, ActionKind, EnforcementAction, Trigger};
use crate::error::{AresError, AresResult};
use crate::store::{ActionFilter, WriteBatch};
use crate::tasks::TaskStatus;
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Enforce {
    pub agent_id: Uuid,
    /// warning, throttle, suspend, escalate or reinstate.
    pub action: ActionKind,
    /// Why; recorded with the action.
    pub reason: String,
    /// For `suspend`: minutes until the suspension ends by itself (default 30; 0 means
    /// until reinstated).
    #[serde(default)]
    pub duration_minutes: Option<i64>,
    /// For `throttle`: the concurrent-task limit while throttled (default half the agent's
    /// limit, at least 1).
    #[serde(default)]
    pub limit: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Enforced {
    pub action: EnforcementAction,
    /// The agent after the action.
    pub agent: Agent,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListEnforcementActions {
    /// Only actions on this agent.
    #[serde(default)]
    pub agent_id: Option<Uuid>,
    /// Only this kind of action.
    #[serde(default)]
    pub action: Option<ActionKind>,
    /// Only actions at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only actions before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
    /// Page size, 1-500 (default 50).
    #[serde(default)]
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ActionList {
    /// Newest first.
    pub actions: Vec<EnforcementAction>,
    pub next_cursor: Option<String>,
}

/// An action to take, with its parameters and the reasons behind it.
pub(crate) struct Decision {
    pub kind: ActionKind,
    pub reason: String,
    pub trigger: Trigger,
    pub metrics: Value,
    pub limit: Option<i32>,
    pub until: Option<DateTime<Utc>>,
}

impl Ares {
    #[tracing::instrument(skip_all, fields(agent_id = %req.agent_id, action = req.action.as_str()))]
    pub async fn enforce(&self, req: Enforce) -> AresResult<Enforced> {
        let reason = req.reason.trim().to_string();
        if reason.is_empty() || reason.len() > 2000 {
            return Err(AresError::invalid(
                "reason",
                "expected a reason of 1-2000 characters",
            ));
        }
        if let Some(m) = req.duration_minutes
            && !(0..=525_600).contains(&m)
        {
            return Err(AresError::invalid(
                "duration_minutes",
                "expected 0 to 525600 minutes",
            ));
        }
        if let Some(l) = req.limit
            && !(1..=1000).contains(&l)
        {
            return Err(AresError::invalid(
                "limit",
                "expected an integer from 1 to 1000",
            ));
        }
        self.retrying(|| async {
            let now = self.now();
            let mut agent = self.agent(req.agent_id).await?;
            if agent.status == AgentStatus::Deregistered {
                return Err(AresError::refused(format!(
                    "agent {} is deregistered",
                    agent.id
                )));
            }
            let until = match (req.action, req.duration_minutes.unwrap_or(30)) {
                (ActionKind::Suspend, 0) => None,
                (ActionKind::Suspend, m) => Some(now + Duration::minutes(m)),
                _ => None,
            };
            let decision = Decision {
                kind: req.action,
                reason: reason.clone(),
                trigger: Trigger::Manual,
                metrics: json!({ "reliability_score": agent.reliability_score }),
                limit: req.limit,
                until,
            };
            let mut batch = WriteBatch::default();
            let action = self.decide(&mut agent, decision, &mut batch, now).await?;
            agent.version += 1;
            batch.agents.push(agent.clone());
            batch.actions.push(action.clone());
            self.commit(batch).await?;
            Ok(Enforced { action, agent })
        })
        .await
    }

    /// Applies a decision to `agent` (the caller commits it) and returns the action record.
    /// Escalation moves the agent's open tasks into `batch`.
    pub(crate) async fn decide(
        &self,
        agent: &mut Agent,
        d: Decision,
        batch: &mut WriteBatch,
        now: DateTime<Utc>,
    ) -> AresResult<EnforcementAction> {
        enforcement::apply(agent, d.kind, d.limit, d.until, now);
        let details = if d.kind == ActionKind::Escalate {
            self.escalate(agent, batch, now).await?
        } else {
            json!({ "throttle_limit": agent.throttle_limit, "status": agent.status.as_str() })
        };
        Ok(EnforcementAction {
            id: Uuid::now_v7(),
            agent_id: agent.id,
            action: d.kind,
            reason: d.reason,
            triggered_by: d.trigger,
            metrics: d.metrics,
            details,
            expires_at: d.until,
            created_at: now,
        })
    }

    /// Moves the agent's unfinished tasks to the best capable backup; tasks no one can take
    /// go back to `pending`. Returns `{moves: [{task_id, from, to}]}`.
    pub(crate) async fn escalate(
        &self,
        agent: &Agent,
        batch: &mut WriteBatch,
        now: DateTime<Utc>,
    ) -> AresResult<Value> {
        let mut moves = Vec::new();
        let mut load = self.store.open_task_counts(None).await?;
        for mut task in self.store.open_tasks_of(agent.id).await? {
            if task.status == TaskStatus::Submitted {
                continue; // its evidence is in; the verdict decides
            }
            let candidates = self
                .store
                .capable_agents(&task.required_capabilities)
                .await?;
            let backup = crate::routing::choose(
                &candidates,
                &task.required_capabilities,
                &load,
                &[agent.id],
                now,
            )
            .cloned();
            let to = match &backup {
                Some(b) => {
                    task.agent_id = Some(b.id);
                    task.advance(TaskStatus::Assigned, now)?;
                    *load.entry(b.id).or_default() += 1;
                    Some(b.id)
                }
                None => {
                    task.advance(TaskStatus::Pending, now)?;
                    None
                }
            };
            task.version += 1;
            let reason = match &backup {
                Some(b) => format!("escalated from {} to {}", agent.name, b.name),
                None => format!(
                    "escalated from {}; no capable backup, back to pending",
                    agent.name
                ),
            };
            batch
                .task_snapshots
                .push(super::tasks::snapshot(&task, reason, now));
            moves.push(json!({ "task_id": task.id, "from": agent.id, "to": to }));
            batch.tasks.push(task);
        }
        Ok(json!({ "moves": moves }))
    }

    pub async fn list_enforcement_actions(
        &self,
        req: ListEnforcementActions,
    ) -> AresResult<ActionList> {
        let page = page(req.limit, req.cursor.as_deref())?;
        let filter = ActionFilter {
            agent_id: req.agent_id,
            action: req.action,
            since: parse_optional_time("since", req.since.as_deref())?,
            until: parse_optional_time("until", req.until.as_deref())?,
        };
        let listed = self.store.list_actions(&filter, page).await?;
        Ok(ActionList {
            actions: listed.items,
            next_cursor: listed.next_cursor.map(|c| c.to_string()),
        })
    }
}
