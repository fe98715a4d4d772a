//! The sweeper, run on a timer: ends lapsed suspensions (the agent returns on probation),
//! moves work off suspended agents, and reassigns tasks whose agent missed the deadline.

use super::Ares;
use super::enforce::Decision;
use crate::agents::{Agent, AgentStatus};
use crate::enforcement::{ActionKind, Trigger};
use crate::error::AresResult;
use crate::store::{AgentFilter, Page, WriteBatch};
use crate::tasks::{Task, TaskStatus};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SweepReport {
    /// Agents whose suspension ended; they are back on probation.
    pub probation: Vec<Uuid>,
    /// Tasks moved off suspended agents.
    pub escalated: Vec<Uuid>,
    /// Tasks whose deadline passed, with where they went (`null`: back to pending).
    pub overdue: Vec<(Uuid, Option<Uuid>)>,
}

const PAGE: i64 = 200;

/// How long the retention sweep keeps what only serves history: events (the live feeds'
/// backlog) and reliability snapshots (the trend charts). Evidence, verdicts, enforcement
/// actions, task snapshots and the audit log are never pruned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub events: chrono::Duration,
    pub snapshots: chrono::Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events: chrono::Duration::days(30),
            snapshots: chrono::Duration::days(90),
        }
    }
}

/// What one retention sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pruned {
    pub events: u64,
    pub snapshots: u64,
}

impl Ares {
    /// Deletes events and reliability snapshots older than the retention windows.
    #[tracing::instrument(skip_all)]
    pub async fn prune_history(&self) -> AresResult<Pruned> {
        let now = self.now();
        let (events, snapshots) = self
            .store
            .prune(now - self.retention.events, now - self.retention.snapshots)
            .await?;
        if events + snapshots > 0 {
            tracing::info!(events, snapshots, "retention sweep pruned history");
        }
        Ok(Pruned { events, snapshots })
    }

    /// One pass of the timer's work. Each agent and task is committed on its own, so one
    /// conflict does not hold up the rest; the next sweep picks up anything missed.
    #[tracing::instrument(skip_all)]
    pub async fn sweep(&self) -> AresResult<SweepReport> {
        let mut report = SweepReport::default();
        for agent in self.suspended_agents().await? {
            let done = self.sweep_agent(agent.id).await?;
            report.probation.extend(done.probation);
            report.escalated.extend(done.escalated);
        }
        for task in self.overdue_tasks().await? {
            if let Some(to) = self.reassign_overdue(task.id).await? {
                report.overdue.push((task.id, to));
            }
        }
        if report != SweepReport::default() {
            tracing::info!(
                probation = report.probation.len(),
                escalated = report.escalated.len(),
                overdue = report.overdue.len(),
                "sweep"
            );
        }
        Ok(report)
    }

    async fn suspended_agents(&self) -> AresResult<Vec<Agent>> {
        let filter = AgentFilter {
            status: Some(AgentStatus::Suspended),
            capability: None,
        };
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_agents(&filter, Page { after, limit: PAGE })
                .await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Tasks whose holder missed the deadline. Only a holder that had the task before its
    /// deadline missed it: a task handed on after the deadline is not moved every sweep.
    async fn overdue_tasks(&self) -> AresResult<Vec<Task>> {
        let now = self.now();
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .overdue_tasks(now, Page { after, limit: PAGE })
                .await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// A lapsed suspension ends on probation; a standing one has its open work moved.
    async fn sweep_agent(&self, id: Uuid) -> AresResult<SweepReport> {
        self.retrying(|| async {
            let mut report = SweepReport::default();
            let now = self.now();
            let mut agent = self.agent(id).await?;
            let mut batch = WriteBatch::default();
            let decision = if self.policy.lapse(&mut agent, now) {
                report.probation.push(agent.id);
                Decision {
                    kind: ActionKind::Reinstate,
                    reason: format!(
                        "suspension ended; on probation, limited to {} task(s), until {} verified tasks in a row",
                        self.policy.throttle_limit, self.policy.probation_successes
                    ),
                    trigger: Trigger::Policy,
                    metrics: json!({ "on_probation": true, "throttle_limit": self.policy.throttle_limit }),
                    limit: None,
                    until: None,
                }
            } else if agent.status == AgentStatus::Suspended
                && self.store.open_tasks_of(agent.id).await?.iter().any(|t| t.status != TaskStatus::Submitted)
            {
                Decision {
                    kind: ActionKind::Escalate,
                    reason: "suspended: its open tasks move to a capable backup".into(),
                    trigger: Trigger::Policy,
                    metrics: json!({ "status": "suspended" }),
                    limit: None,
                    until: None,
                }
            } else {
                return Ok(report);
            };
            // Reinstating on probation keeps the throttle `lapse` set.
            let action = if decision.kind == ActionKind::Reinstate {
                crate::enforcement::EnforcementAction {
                    id: Uuid::now_v7(),
                    agent_id: agent.id,
                    action: decision.kind,
                    reason: decision.reason,
                    triggered_by: decision.trigger,
                    metrics: decision.metrics,
                    details: json!({ "on_probation": true, "throttle_limit": agent.throttle_limit }),
                    expires_at: None,
                    created_at: now,
                }
            } else {
                let action = self.decide(&mut agent, decision, &mut batch, now).await?;
                report.escalated.extend(batch.tasks.iter().map(|t| t.id));
                action
            };
            agent.version += 1;
            batch.agents.push(agent);
            batch.actions.push(action);
            self.commit(batch).await?;
            Ok(report)
        })
        .await
    }

    /// Moves an overdue task to another capable agent, or back to pending.
    /// Returns where the task went (`Some(None)`: back to pending), or `None` if it no
    /// longer needed moving.
    async fn reassign_overdue(&self, id: Uuid) -> AresResult<Option<Option<Uuid>>> {
        self.retrying(|| async {
            let now: DateTime<Utc> = self.now();
            let mut task = self.task(id).await?;
            if !matches!(task.status, TaskStatus::Assigned | TaskStatus::InProgress) {
                return Ok(None);
            }
            let late = task.agent_id;
            let exclude: Vec<Uuid> = late.into_iter().collect();
            let backup = self.route(&task, &exclude, now).await?;
            let reason = match (&backup, late) {
                (Some(b), Some(l)) => {
                    format!("deadline missed by agent {l}; reassigned to {}", b.name)
                }
                (Some(b), None) => format!("deadline missed; reassigned to {}", b.name),
                (None, _) => "deadline missed; no capable agent free, back to pending".to_string(),
            };
            match &backup {
                Some(b) => {
                    task.agent_id = Some(b.id);
                    task.advance(TaskStatus::Assigned, now)?;
                }
                None => task.advance(TaskStatus::Pending, now)?,
            }
            task.version += 1;
            let batch = WriteBatch {
                task_snapshots: vec![super::tasks::snapshot(&task, reason, now)],
                tasks: vec![task],
                ..Default::default()
            };
            self.commit(batch).await?;
            Ok(Some(backup.map(|b| b.id)))
        })
        .await
    }
}
