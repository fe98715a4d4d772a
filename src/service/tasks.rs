//! Creating, assigning (by name or by routing), reading and rolling back tasks.

use super::{Ares, page, parse_optional_time};
use crate::agents::Agent;
use crate::error::{AresError, AresResult};
use crate::evidence::Evidence;
use crate::store::{TaskFilter, TaskSnapshot, WriteBatch};
use crate::tasks::{Task, TaskStatus};
use crate::verification::{Criterion, Verification, validate_criteria};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// What is to be done, in plain words.
    pub description: String,
    /// Capabilities an agent needs to take the task.
    #[serde(default)]
    pub required_capabilities: Vec<String>,
    /// Machine-checkable acceptance criteria; the task verifies only when every one is met.
    pub criteria: Vec<Criterion>,
    /// Assign straight to this agent.
    #[serde(default)]
    pub agent_id: Option<Uuid>,
    /// 0 (lowest) to 10 (highest), default 5.
    #[serde(default)]
    pub priority: Option<i32>,
    /// When the work is due, RFC 3339 (e.g. 2026-01-31T12:00:00Z).
    #[serde(default)]
    pub deadline: Option<String>,
    /// Ids of tasks that must verify before this one can be assigned.
    #[serde(default)]
    pub depends_on: Vec<Uuid>,
    /// Makes retries safe: a retry with the same key and request returns the first task.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTask {
    pub task_id: Uuid,
    /// The agent to assign; omit to route to the best capable agent automatically.
    #[serde(default)]
    pub agent_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    pub task_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartTask {
    pub task_id: Uuid,
    /// The agent the task is assigned to.
    pub agent_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTasks {
    /// Only tasks in this state.
    #[serde(default)]
    pub status: Option<TaskStatus>,
    /// Only tasks assigned to this agent.
    #[serde(default)]
    pub agent_id: Option<Uuid>,
    /// Page size, 1-500 (default 50).
    #[serde(default)]
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskList {
    pub tasks: Vec<Task>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A task with its evidence chain and verification history.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: Task,
    pub evidence: Vec<Evidence>,
    pub verifications: Vec<Verification>,
    /// The task's state at each transition, oldest first.
    pub history: Vec<TaskSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackTask {
    pub task_id: Uuid,
    /// Why the task's work is being undone.
    pub reason: String,
}

/// A dependent task that a rollback moved.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Moved {
    pub task_id: Uuid,
    pub from: TaskStatus,
    pub to: TaskStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RolledBack {
    pub task: Task,
    /// When the snapshot the task was restored to was taken.
    pub restored_from: DateTime<Utc>,
    /// Dependent tasks blocked until it verifies again.
    pub dependents: Vec<Moved>,
}

/// Records the task's state after a transition.
pub(crate) fn snapshot(task: &Task, reason: impl Into<String>, now: DateTime<Utc>) -> TaskSnapshot {
    TaskSnapshot {
        task_id: task.id,
        status: task.status,
        task: task.clone(),
        reason: reason.into(),
        created_at: now,
    }
}

impl Ares {
    #[tracing::instrument(skip_all)]
    pub async fn create_task(&self, req: CreateTask) -> AresResult<Task> {
        let description = req.description.trim().to_string();
        if description.is_empty() || description.len() > 16 * 1024 {
            return Err(AresError::invalid(
                "description",
                "expected a non-empty description of at most 16 KiB",
            ));
        }
        let caps = crate::agents::validate_capabilities(
            "required_capabilities",
            &req.required_capabilities,
        )?;
        validate_criteria(&req.criteria)?;
        let priority = req.priority.unwrap_or(5);
        if !(0..=10).contains(&priority) {
            return Err(AresError::invalid(
                "priority",
                format!("expected an integer from 0 to 10 (got {priority})"),
            ));
        }
        let deadline = parse_optional_time("deadline", req.deadline.as_deref())?;
        if req.depends_on.len() > 100 {
            return Err(AresError::invalid(
                "depends_on",
                "expected at most 100 task ids",
            ));
        }
        let scope = "create_task";
        self.idempotent(scope, req.idempotency_key.as_deref(), &req, || async {
            let now = self.now();
            let deps = self.store.tasks(&req.depends_on).await?;
            if let Some(missing) = req
                .depends_on
                .iter()
                .find(|id| !deps.iter().any(|t| t.id == **id))
            {
                return Err(AresError::not_found("task", missing));
            }
            let blocked = deps.iter().any(|d| dependency_failed(d.status));
            let mut task = Task {
                id: Uuid::now_v7(),
                description: description.clone(),
                required_capabilities: caps.clone(),
                criteria: req.criteria.clone(),
                agent_id: None,
                priority,
                deadline,
                depends_on: dedup(&req.depends_on),
                status: if blocked {
                    TaskStatus::Blocked
                } else {
                    TaskStatus::Pending
                },
                idempotency_key: req.idempotency_key.clone(),
                created_at: now,
                updated_at: now,
                assigned_at: None,
                submitted_at: None,
                completed_at: None,
                attempts: 0,
                superseded_verifications: Vec::new(),
                version: 1,
            };
            let mut batch = WriteBatch::default();
            batch.task_snapshots.push(snapshot(&task, "created", now));
            if let Some(agent_id) = req.agent_id {
                let agent = self.agent(agent_id).await?;
                self.check_assignable(&task, &deps, &agent, now).await?;
                task.agent_id = Some(agent.id);
                task.advance(TaskStatus::Assigned, now)?;
                batch.task_snapshots.push(snapshot(
                    &task,
                    format!("assigned to {}", agent.name),
                    now,
                ));
            }
            batch.tasks.push(task.clone());
            Ok((task, batch))
        })
        .await
    }

    /// The task with this id, or a not-found error naming it.
    pub async fn task(&self, id: Uuid) -> AresResult<Task> {
        self.store
            .task(id)
            .await?
            .ok_or_else(|| AresError::not_found("task", id))
    }

    #[tracing::instrument(skip_all, fields(task_id = %req.task_id))]
    pub async fn assign_task(&self, req: AssignTask) -> AresResult<Task> {
        self.retrying(|| async {
            let now = self.now();
            let mut task = self.task(req.task_id).await?;
            // Refuse illegal transitions before looking for an agent.
            task.status.transition(TaskStatus::Assigned)?;
            let deps = self.store.tasks(&task.depends_on).await?;
            let agent = match req.agent_id {
                Some(id) => {
                    let agent = self.agent(id).await?;
                    self.check_assignable(&task, &deps, &agent, now).await?;
                    agent
                }
                None => {
                    check_dependencies(&task, &deps)?;
                    self.route(&task, &[], now).await?.ok_or_else(|| {
                        AresError::refused(format!(
                            "no active agent with capabilities [{}] has free capacity for task {}",
                            task.required_capabilities.join(", "),
                            task.id
                        ))
                    })?
                }
            };
            task.agent_id = Some(agent.id);
            task.advance(TaskStatus::Assigned, now)?;
            task.version += 1;
            let batch = WriteBatch {
                task_snapshots: vec![snapshot(&task, format!("assigned to {}", agent.name), now)],
                tasks: vec![task.clone()],
                ..Default::default()
            };
            self.commit(batch).await?;
            Ok(task)
        })
        .await
    }

    /// The best agent for the task, excluding some, by the routing rule.
    pub(crate) async fn route(
        &self,
        task: &Task,
        exclude: &[Uuid],
        now: DateTime<Utc>,
    ) -> AresResult<Option<Agent>> {
        let candidates = self
            .store
            .capable_agents(&task.required_capabilities)
            .await?;
        let ids: Vec<Uuid> = candidates.iter().map(|a| a.id).collect();
        let load = self.store.open_task_counts(Some(&ids)).await?;
        Ok(crate::routing::choose(
            &candidates,
            &task.required_capabilities,
            &load,
            exclude,
            now,
        )
        .cloned())
    }

    /// Refuses an assignment the agent cannot take, saying why.
    async fn check_assignable(
        &self,
        task: &Task,
        deps: &[Task],
        agent: &Agent,
        now: DateTime<Utc>,
    ) -> AresResult<()> {
        check_dependencies(task, deps)?;
        agent.ensure_available(now)?;
        let missing: Vec<&str> = task
            .required_capabilities
            .iter()
            .filter(|c| !agent.capabilities.contains(c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(AresError::refused(format!(
                "agent {} lacks required capabilities: {}",
                agent.name,
                missing.join(", ")
            )));
        }
        let load = self.store.open_task_counts(Some(&[agent.id])).await?;
        let open = load.get(&agent.id).copied().unwrap_or(0);
        let already_holds = task.agent_id == Some(agent.id) && task.status.is_open();
        if !already_holds && open >= i64::from(agent.effective_limit()) {
            return Err(AresError::refused(format!(
                "agent {} is at its limit of {} concurrent task(s){}",
                agent.name,
                agent.effective_limit(),
                if agent.throttle_limit.is_some() {
                    " (throttled)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(task_id = %req.task_id, agent_id = %req.agent_id))]
    pub async fn start_task(&self, req: StartTask) -> AresResult<Task> {
        self.retrying(|| async {
            let now = self.now();
            let mut task = self.task(req.task_id).await?;
            let agent = self.agent(req.agent_id).await?;
            agent.ensure_available(now)?;
            ensure_holder(&task, &agent)?;
            task.advance(TaskStatus::InProgress, now)?;
            task.version += 1;
            let batch = WriteBatch {
                task_snapshots: vec![snapshot(&task, "started", now)],
                tasks: vec![task.clone()],
                ..Default::default()
            };
            self.commit(batch).await?;
            Ok(task)
        })
        .await
    }

    pub async fn get_task(&self, req: TaskRef) -> AresResult<TaskDetail> {
        let task = self.task(req.task_id).await?;
        let (evidence, mut verifications, history) = tokio::try_join!(
            self.store.evidence_for_task(task.id),
            self.store.verifications_for_task(task.id),
            self.store.task_snapshots(task.id),
        )?;
        for v in &mut verifications {
            v.superseded = task.superseded_verifications.contains(&v.id);
        }
        Ok(TaskDetail {
            task,
            evidence,
            verifications,
            history,
        })
    }

    pub async fn list_tasks(&self, req: ListTasks) -> AresResult<TaskList> {
        let page = page(req.limit, req.cursor.as_deref())?;
        let filter = TaskFilter {
            status: req.status,
            agent_id: req.agent_id,
        };
        let listed = self.store.list_tasks(&filter, page).await?;
        Ok(TaskList {
            tasks: listed.items,
            next_cursor: listed.next_cursor.map(|c| c.to_string()),
        })
    }

    /// Undoes a task's work: the task returns to its last good snapshot (as it was before
    /// it was handed out) in state `rolled_back`, ready to be retried; its verifications are
    /// marked superseded (evidence is never deleted). Open or pending tasks that depend on it
    /// become `blocked` until it verifies again, so one bad result does not cascade.
    #[tracing::instrument(skip_all, fields(task_id = %req.task_id))]
    pub async fn rollback_task(&self, req: RollbackTask) -> AresResult<RolledBack> {
        let reason = req.reason.trim().to_string();
        if reason.is_empty() {
            return Err(AresError::invalid("reason", "expected a non-empty reason"));
        }
        self.retrying(|| async {
            let now = self.now();
            let task = self.task(req.task_id).await?;
            let (mut restored, restored_from) = self.restore(&task, now).await?;
            let verdicts = self.store.verifications_for_task(task.id).await?;
            restored.superseded_verifications = verdicts.iter().map(|v| v.id).collect();
            let mut batch = WriteBatch::default();
            batch
                .task_snapshots
                .push(snapshot(&restored, format!("rolled back: {reason}"), now));
            batch.tasks.push(restored.clone());
            let mut dependents = Vec::new();
            for mut dep in self.store.dependents_of(task.id).await? {
                let from = dep.status;
                if !(from == TaskStatus::Pending || from.is_open()) {
                    continue;
                }
                let holder = dep.agent_id;
                dep.advance(TaskStatus::Blocked, now)?;
                dep.version += 1;
                let why = match holder {
                    Some(agent) => format!(
                        "blocked: dependency {} rolled back; released from agent {agent}",
                        task.id
                    ),
                    None => format!("blocked: dependency {} rolled back", task.id),
                };
                batch.task_snapshots.push(snapshot(&dep, why, now));
                dependents.push(Moved {
                    task_id: dep.id,
                    from,
                    to: dep.status,
                });
                batch.tasks.push(dep);
            }
            self.commit(batch).await?;
            Ok(RolledBack {
                task: restored,
                restored_from,
                dependents,
            })
        })
        .await
    }

    /// Tasks blocked on `verified` whose dependencies are now all verified, moved back to
    /// `pending` (into `batch`).
    pub(crate) async fn release_dependents(
        &self,
        verified: &Task,
        batch: &mut WriteBatch,
        now: DateTime<Utc>,
    ) -> AresResult<()> {
        for mut dep in self.store.dependents_of(verified.id).await? {
            if dep.status != TaskStatus::Blocked {
                continue;
            }
            let others: Vec<Uuid> = dep
                .depends_on
                .iter()
                .copied()
                .filter(|id| *id != verified.id)
                .collect();
            let ready = self
                .store
                .tasks(&others)
                .await?
                .iter()
                .all(|t| t.status == TaskStatus::Verified);
            if ready {
                dep.advance(TaskStatus::Pending, now)?;
                dep.version += 1;
                batch.task_snapshots.push(snapshot(
                    &dep,
                    format!("released: dependency {} verified", verified.id),
                    now,
                ));
                batch.tasks.push(dep);
            }
        }
        Ok(())
    }

    /// The task restored to its last snapshot taken before it was handed out, in state
    /// `rolled_back` (the transition is checked).
    async fn restore(&self, task: &Task, now: DateTime<Utc>) -> AresResult<(Task, DateTime<Utc>)> {
        task.status.transition(TaskStatus::RolledBack)?;
        let snapshots = self.store.task_snapshots(task.id).await?;
        let good = snapshots
            .iter()
            .rev()
            .find(|s| matches!(s.status, TaskStatus::Pending | TaskStatus::RolledBack))
            .ok_or_else(|| {
                AresError::refused(format!("task {} has no snapshot to restore", task.id))
            })?;
        let mut restored = good.task.clone();
        restored.status = task.status;
        restored.attempts = task.attempts;
        restored.superseded_verifications = task.superseded_verifications.clone();
        restored.version = task.version;
        restored.advance(TaskStatus::RolledBack, now)?;
        restored.version += 1;
        Ok((restored, good.created_at))
    }
}

/// Refuses work on a task by an agent that does not hold it.
pub(crate) fn ensure_holder(task: &Task, agent: &Agent) -> AresResult<()> {
    match task.agent_id {
        Some(holder) if holder == agent.id => Ok(()),
        Some(holder) => Err(AresError::refused(format!(
            "task {} is assigned to agent {holder}, not to {} ({})",
            task.id, agent.name, agent.id
        ))),
        None => Err(AresError::refused(format!(
            "task {} is `{}` and not assigned to any agent",
            task.id,
            task.status.as_str()
        ))),
    }
}

fn dependency_failed(status: TaskStatus) -> bool {
    matches!(status, TaskStatus::Failed | TaskStatus::Cancelled)
}

fn check_dependencies(task: &Task, deps: &[Task]) -> AresResult<()> {
    match deps.iter().find(|d| d.status != TaskStatus::Verified) {
        Some(d) => Err(AresError::refused(format!(
            "task {} depends on task {}, which is `{}`; it can be assigned once that task is verified",
            task.id,
            d.id,
            d.status.as_str()
        ))),
        None => Ok(()),
    }
}

fn dedup(ids: &[Uuid]) -> Vec<Uuid> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    out
}
