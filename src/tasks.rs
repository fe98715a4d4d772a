//! Tasks and their state machine — the one place that says which transitions exist.

use crate::error::{AresError, AresResult};
use crate::verification::Criterion;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Assigned,
    InProgress,
    Submitted,
    Verified,
    Rejected,
    Failed,
    Cancelled,
    /// Waiting on a dependency that failed, was cancelled or was rolled back; released to
    /// `pending` when the dependency verifies again.
    Blocked,
    RolledBack,
}

use TaskStatus::*;

impl TaskStatus {
    pub const ALL: [TaskStatus; 10] = [
        Pending, Assigned, InProgress, Submitted, Verified, Rejected, Failed, Cancelled, Blocked,
        RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            Assigned => "assigned",
            InProgress => "in_progress",
            Submitted => "submitted",
            Verified => "verified",
            Rejected => "rejected",
            Failed => "failed",
            Cancelled => "cancelled",
            Blocked => "blocked",
            RolledBack => "rolled_back",
        }
    }

    /// States in which a task occupies its agent (counted against its concurrency limit).
    pub const OPEN: [TaskStatus; 3] = [Assigned, InProgress, Submitted];

    pub fn is_open(self) -> bool {
        Self::OPEN.contains(&self)
    }

    /// States a task leaves only by rollback (or never, once cancelled).
    pub fn is_final(self) -> bool {
        matches!(self, Verified | Cancelled)
    }

    /// Whether the state machine allows `self → to`.
    pub fn can_become(self, to: TaskStatus) -> bool {
        matches!(
            (self, to),
            (Pending, Assigned)
                | (Pending, Blocked)
                | (Pending, Cancelled)
                | (Blocked, Pending)
                | (Blocked, Cancelled)
                | (Assigned, InProgress)
                | (Assigned, Submitted)
                | (Assigned, Assigned)
                | (Assigned, Pending)
                | (Assigned, Failed)
                | (Assigned, Cancelled)
                | (InProgress, Submitted)
                | (InProgress, Assigned)
                | (InProgress, Failed)
                | (InProgress, Cancelled)
                | (Submitted, Submitted)
                | (Submitted, Verified)
                | (Submitted, Rejected)
                | (Rejected, Assigned)
                | (Rejected, Submitted)
                | (Rejected, RolledBack)
                | (Failed, RolledBack)
                | (Failed, Assigned)
                | (Verified, RolledBack)
                | (Submitted, RolledBack)
                | (Assigned, RolledBack)
                | (InProgress, RolledBack)
                | (Blocked, RolledBack)
                | (RolledBack, Assigned)
                | (RolledBack, Cancelled)
                | (Assigned, Blocked)
                | (InProgress, Blocked)
                | (Submitted, Blocked)
        )
    }

    /// The transition, or a refusal that names the current state and what it allows.
    pub fn transition(self, to: TaskStatus) -> AresResult<TaskStatus> {
        if self.can_become(to) {
            return Ok(to);
        }
        let allowed: Vec<&str> = Self::ALL
            .iter()
            .filter(|s| self.can_become(**s))
            .map(|s| s.as_str())
            .collect();
        Err(AresError::refused(format!(
            "task is `{}`; it cannot become `{}` (from `{}` it can become: {})",
            self.as_str(),
            to.as_str(),
            self.as_str(),
            if allowed.is_empty() {
                "nothing".to_string()
            } else {
                allowed.join(", ")
            }
        )))
    }
}

/// A unit of work with machine-checkable acceptance criteria.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    pub id: Uuid,
    pub description: String,
    pub required_capabilities: Vec<String>,
    /// What must hold for the task to count as done.
    pub criteria: Vec<Criterion>,
    /// The agent working on it, once assigned.
    pub agent_id: Option<Uuid>,
    /// 0 (lowest) to 10 (highest).
    pub priority: i32,
    pub deadline: Option<DateTime<Utc>>,
    /// Tasks that must verify before this one may be assigned.
    pub depends_on: Vec<Uuid>,
    pub status: TaskStatus,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    /// How many times this task has been handed to an agent.
    pub attempts: i32,
    /// Verifications that no longer stand because the task was rolled back.
    #[serde(default)]
    pub superseded_verifications: Vec<Uuid>,
    /// Optimistic-concurrency version; bumps on every write.
    pub version: i64,
}

impl Task {
    /// Moves the task to `to` at `now`, keeping the timestamps that go with each state.
    pub fn advance(&mut self, to: TaskStatus, now: DateTime<Utc>) -> AresResult<()> {
        self.status = self.status.transition(to)?;
        self.updated_at = now;
        match to {
            Assigned => {
                self.assigned_at = Some(now);
                self.submitted_at = None;
                self.completed_at = None;
                self.attempts += 1;
            }
            Submitted => self.submitted_at = Some(now),
            Verified | Rejected | Failed | Cancelled => self.completed_at = Some(now),
            Pending | RolledBack | Blocked => {
                self.agent_id = None;
                self.assigned_at = None;
                self.submitted_at = None;
                self.completed_at = None;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_happy_path_is_allowed() {
        let path = [Pending, Assigned, InProgress, Submitted, Verified];
        for pair in path.windows(2) {
            assert!(
                pair[0].can_become(pair[1]),
                "{:?} -> {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn an_illegal_transition_names_the_current_state() {
        let err = Pending.transition(Verified).unwrap_err().to_string();
        assert!(err.contains("task is `pending`"), "{err}");
        assert!(err.contains("cannot become `verified`"), "{err}");
        assert!(err.contains("assigned"), "{err}");
    }

    #[test]
    fn verified_work_only_leaves_by_rollback() {
        for to in TaskStatus::ALL {
            assert_eq!(Verified.can_become(to), to == RolledBack, "{to:?}");
        }
    }

    #[test]
    fn cancelled_is_terminal_and_rolled_back_work_can_be_retried() {
        for to in TaskStatus::ALL {
            assert!(!Cancelled.can_become(to));
        }
        assert!(RolledBack.can_become(Assigned));
        assert!(!RolledBack.can_become(Verified));
    }

    fn status() -> impl Strategy<Value = TaskStatus> {
        proptest::sample::select(TaskStatus::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn transition_agrees_with_can_become(from in status(), to in status()) {
            prop_assert_eq!(from.transition(to).is_ok(), from.can_become(to));
        }

        #[test]
        fn any_walk_keeps_a_verified_task_verified_until_rollback(
            steps in proptest::collection::vec(status(), 0..30)
        ) {
            let mut s = Pending;
            for to in steps {
                let before = s;
                if let Ok(next) = s.transition(to) { s = next; }
                if before == Verified { prop_assert!(s == Verified || s == RolledBack); }
            }
        }
    }
}
