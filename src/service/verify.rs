//! Verification: every criterion checked against the evidence and, where it can be, against
//! ground truth; the verdict moves the task, refreshes the agent's score and runs the
//! enforcement policy — all in one commit.

use super::Ares;
use super::enforce::Decision;
use crate::behaviour;
use crate::enforcement::{ActionKind, EnforcementAction, Trigger};
use crate::error::{AresError, AresResult};
use crate::evidence::{Evidence, EvidenceItem};
use crate::reliability::{self, Window};
use crate::store::{TimeRange, WriteBatch};
use crate::tasks::{Task, TaskStatus};
use crate::verification::{
    self as rules, Criterion, CriterionResult, CriterionStatus, Outcome, Verification,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyTask {
    /// A task in state `submitted`.
    pub task_id: Uuid,
}

/// The verdict, with what it changed.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct VerificationReport {
    #[serde(flatten)]
    pub verification: Verification,
    /// The task's state after the verdict.
    pub task_status: TaskStatus,
    /// The agent's reliability score after the verdict.
    pub reliability_score: f64,
    /// Enforcement actions the verdict triggered.
    pub enforcement_actions: Vec<EnforcementAction>,
}

impl Ares {
    #[tracing::instrument(skip_all, fields(task_id = %req.task_id))]
    pub async fn verify_task(&self, req: VerifyTask) -> AresResult<VerificationReport> {
        // Verifications of one task take turns: only one can find it `submitted`, and the
        // rest learn so at once instead of each reading the whole evidence chain first.
        let _turn = self.task_locks.lock(req.task_id).await;
        // Ground-truth checks run once, outside the retry loop: they are slow and
        // side-effect free; only the commit is retried.
        let task = self.task(req.task_id).await?;
        ensure_submitted(&task)?;
        let chain = self.store.evidence_for_task(task.id).await?;
        let current = current_attempt(&task, &chain);
        let latest = current.last().ok_or_else(|| {
            AresError::refused(format!("task {} has no evidence to verify", task.id))
        })?;
        let items: Vec<EvidenceItem> = current.iter().flat_map(|e| e.items.clone()).collect();
        let signed = current.iter().all(|e| e.signature.is_some());
        let total = task.criteria.len() as u32;
        let mut results = Vec::with_capacity(task.criteria.len());
        for (done, criterion) in (1..).zip(&task.criteria) {
            let result = match rules::evaluate(criterion, &items, signed) {
                Some(r) => r,
                None => self.check_ground_truth(criterion, &items).await,
            };
            super::progress::report(done, total + 1, || {
                format!(
                    "criterion {done} of {total} ({}): {}",
                    criterion.type_name(),
                    result.status.as_str()
                )
            });
            results.push(result);
        }
        let analysis = rules::analyse(&items);
        let outcome = rules::outcome(&results);
        let quality = rules::quality_score(&results, &analysis);
        let evidence_id = latest.id;
        let agent_id = latest.agent_id;
        self.retrying(|| {
            let (results, analysis) = (results.clone(), analysis.clone());
            async move {
                let now = self.now();
                let mut task = self.task(req.task_id).await?;
                ensure_submitted(&task)?;
                let mut agent = self.agent(agent_id).await?;
                let verification = Verification {
                    id: Uuid::now_v7(),
                    task_id: task.id,
                    agent_id,
                    evidence_id,
                    success: outcome == Outcome::Verified,
                    outcome,
                    quality_score: quality,
                    discrepancies: results.iter().filter(|r| r.discrepancy).count() as i64,
                    results,
                    evidence_analysis: analysis,
                    response_time_secs: match (task.assigned_at, task.submitted_at) {
                        (Some(a), Some(s)) => {
                            Some((s - a).num_microseconds().unwrap_or(0) as f64 / 1e6)
                        }
                        _ => None,
                    },
                    superseded: false,
                    created_at: now,
                };
                let mut batch = WriteBatch::default();
                match outcome {
                    Outcome::Verified => {
                        task.advance(TaskStatus::Verified, now)?;
                        self.release_dependents(&task, &mut batch, now).await?;
                    }
                    Outcome::Rejected => task.advance(TaskStatus::Rejected, now)?,
                    Outcome::Inconclusive => {}
                }
                task.updated_at = now;
                task.version += 1;
                batch.task_snapshots.push(super::tasks::snapshot(
                    &task,
                    format!("verification {}", outcome.as_str()),
                    now,
                ));
                batch.tasks.push(task.clone());

                // Refresh the agent's reliability with this verdict included: its totals
                // are added up by the store, and only the latest verdicts are read.
                let all = TimeRange::default();
                let totals = self
                    .store
                    .verdict_summary(agent.id, all, Some(&verification))
                    .await?;
                let mut latest = self
                    .store
                    .verifications_for_agent(agent.id, all, behaviour::BASELINE_WINDOW as i64)
                    .await?;
                latest.push(verification.clone());
                let counts = self.store.task_counts(agent.id, None).await?;
                let rel =
                    reliability::compute(agent.id, Window::All, &totals, &latest, counts, now);
                agent.reliability_score = rel.reliability_score;
                agent.updated_at = now;
                agent.version += 1;

                let (rejections, successes) = (
                    totals.rejection_streak as usize,
                    totals.success_streak as usize,
                );
                let metrics = json!({
                    "rejection_streak": rejections,
                    "success_streak": successes,
                    "on_probation": agent.on_probation,
                    "reliability_score": rel.reliability_score,
                    "success_rate": rel.success_rate,
                    "quality_score": quality,
                    "discrepancies": verification.discrepancies,
                    "task_id": task.id,
                });
                let mut actions = Vec::new();
                for (kind, reason) in self.policy.after_verdict(&agent, rejections, successes) {
                    let decision = Decision {
                        kind,
                        reason: format!("{reason}; latest on task {}", task.id),
                        trigger: Trigger::Policy,
                        metrics: metrics.clone(),
                        limit: (kind == ActionKind::Throttle).then_some(self.policy.throttle_limit),
                        until: (kind == ActionKind::Suspend)
                            .then(|| now + self.policy.suspension()),
                    };
                    actions.push(self.decide(&mut agent, decision, &mut batch, now).await?);
                }
                batch.agents.push(agent.clone());
                batch.verifications.push(verification.clone());
                batch.reliability.push(rel.clone());
                batch.actions.extend(actions.iter().cloned());
                self.commit(batch).await?;
                super::progress::report(total + 1, total + 1, || {
                    format!("verdict recorded: {}", outcome.as_str())
                });
                Ok(VerificationReport {
                    verification,
                    task_status: task.status,
                    reliability_score: rel.reliability_score,
                    enforcement_actions: actions,
                })
            }
        })
        .await
    }

    /// Checks a ground-truth criterion through the downstream servers of the role it needs
    /// (see [`crate::downstream`]); without them it is `unverifiable`, never met. Every
    /// downstream call is bounded by its timeout, so this always returns.
    async fn check_ground_truth(
        &self,
        criterion: &Criterion,
        items: &[EvidenceItem],
    ) -> CriterionResult {
        let result = match &self.downstream {
            Some(downstream) => downstream.check(criterion, items).await,
            None => crate::downstream::not_configured(criterion),
        };
        tracing::debug!(
            criterion = criterion.type_name(),
            checked_via = %result.checked_via,
            met = result.status == CriterionStatus::Met,
            discrepancy = result.discrepancy,
            "ground truth checked"
        );
        result
    }
}

fn ensure_submitted(task: &Task) -> AresResult<()> {
    if task.status == TaskStatus::Submitted {
        Ok(())
    } else {
        Err(AresError::refused(format!(
            "task {} is `{}`; only a `submitted` task can be verified",
            task.id,
            task.status.as_str()
        )))
    }
}

/// The evidence of the current attempt: submitted since the task was last assigned.
fn current_attempt<'a>(task: &Task, chain: &'a [Evidence]) -> Vec<&'a Evidence> {
    chain
        .iter()
        .filter(|e| Some(e.agent_id) == task.agent_id)
        .filter(|e| task.assigned_at.is_none_or(|a| e.created_at >= a))
        .collect()
}
