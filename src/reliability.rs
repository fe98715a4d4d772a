//! Reliability scoring: per-agent rates over a time window and the blended score routing and
//! enforcement use. Pure functions over the totals of the agent's recorded verdicts and its
//! latest few.

use crate::behaviour::{self, Anomaly, Baseline};
use crate::verification::{VerdictSummary, Verification};
use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The time window a reliability figure covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Window {
    #[serde(rename = "1h")]
    Hour,
    #[serde(rename = "24h")]
    Day,
    #[serde(rename = "7d")]
    Week,
    #[default]
    #[serde(rename = "all")]
    All,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
            Self::Week => "7d",
            Self::All => "all",
        }
    }

    /// The window's start, or `None` for all time.
    pub fn since(self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Hour => Some(now - Duration::hours(1)),
            Self::Day => Some(now - Duration::hours(24)),
            Self::Week => Some(now - Duration::days(7)),
            Self::All => None,
        }
    }
}

/// How tasks assigned to the agent in the window ended up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCounts {
    /// Tasks assigned to the agent in the window.
    pub assigned: i64,
    /// Of those, how many the agent submitted evidence for.
    pub submitted: i64,
}

/// An agent's reliability over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Reliability {
    pub agent_id: Uuid,
    pub window: Window,
    /// Blended score in [0, 1]; see the README for the formula.
    pub reliability_score: f64,
    /// verified / (verified + rejected); 0 when nothing was judged.
    pub success_rate: f64,
    /// Tasks submitted / tasks assigned in the window; 0 when none were assigned.
    pub completion_rate: f64,
    /// Mean seconds from assignment to submission; 0 with no submissions.
    pub response_time_avg: f64,
    /// 95th percentile of the same.
    pub response_time_p95: f64,
    /// Mean quality of the verdicts; 0 with none.
    pub quality_score: f64,
    /// Share of verdicts where ground truth contradicted the evidence.
    pub discrepancy_rate: f64,
    pub verifications: i64,
    pub verified: i64,
    pub rejected: i64,
    pub inconclusive: i64,
    pub tasks_assigned: i64,
    pub tasks_submitted: i64,
    /// What is normal for this agent: the moving mean and spread its latest work is
    /// compared with.
    pub baseline: Baseline,
    /// Where the latest work departs from the baseline, with the numbers.
    pub anomalies: Vec<Anomaly>,
    /// What to do, in plain words.
    pub recommendations: Vec<String>,
    pub computed_at: DateTime<Utc>,
}

/// z for a 95% interval.
const Z: f64 = 1.96;

/// The centre of the Wilson score interval: the success rate shrunk towards 1/2 by an amount
/// that fades as evidence accumulates, so two tasks cannot swing a score to 0 or 1.
pub fn wilson_centre(successes: i64, trials: i64) -> f64 {
    if trials == 0 {
        return 0.5;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    (p + Z * Z / (2.0 * n)) / (1.0 + Z * Z / n)
}

/// `reliability = 0.5·S + 0.3·Q + 0.2·(1 − D)` where S is the Wilson centre of the success
/// rate, Q the mean quality and D the discrepancy rate, each of Q and D shrunk towards a prior
/// (0.5 and 0) by two pseudo-verdicts.
pub fn score(verified: i64, judged: i64, quality_sum: f64, discrepant: i64, verdicts: i64) -> f64 {
    let s = wilson_centre(verified, judged);
    let q = (quality_sum + 0.5 * 2.0) / (verdicts as f64 + 2.0);
    let d = discrepant as f64 / (verdicts as f64 + 2.0);
    (0.5 * s + 0.3 * q + 0.2 * (1.0 - d)).clamp(0.0, 1.0)
}

/// Computes an agent's reliability over a window from the totals of its verdicts there and
/// its latest verdicts (oldest first; the behaviour baseline needs no more than
/// [`behaviour::BASELINE_WINDOW`] + 1 of them).
pub fn compute(
    agent_id: Uuid,
    window: Window,
    summary: &VerdictSummary,
    latest: &[Verification],
    tasks: TaskCounts,
    now: DateTime<Utc>,
) -> Reliability {
    let s = summary;
    let judged = s.verified + s.rejected;
    let n = s.total();
    let ratio = |a: i64, b: i64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let anomalies = behaviour::anomalies(latest, s);
    let mut recommendations: Vec<String> =
        anomalies.iter().map(|a| a.recommendation.clone()).collect();
    if n == 0 {
        recommendations.push(
            "no verified work yet: give the agent a small task with ground-truth criteria".into(),
        );
    }
    Reliability {
        agent_id,
        window,
        reliability_score: score(s.verified, judged, s.quality_sum, s.discrepant, n),
        success_rate: ratio(s.verified, judged),
        completion_rate: ratio(tasks.submitted, tasks.assigned).min(1.0),
        response_time_avg: if s.timed == 0 {
            0.0
        } else {
            s.response_time_sum / s.timed as f64
        },
        response_time_p95: s.response_time_p95,
        quality_score: if n == 0 {
            0.0
        } else {
            s.quality_sum / n as f64
        },
        discrepancy_rate: ratio(s.discrepant, n),
        verifications: n,
        verified: s.verified,
        rejected: s.rejected,
        inconclusive: s.inconclusive,
        tasks_assigned: tasks.assigned,
        tasks_submitted: tasks.submitted,
        baseline: behaviour::baseline(latest, s),
        anomalies,
        recommendations,
        computed_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn two_tasks_do_not_swing_the_score_to_an_extreme() {
        let two_good = score(2, 2, 2.0, 0, 2);
        let two_bad = score(0, 2, 0.0, 0, 2);
        assert!(two_good < 0.85, "{two_good}");
        assert!(two_bad > 0.2, "{two_bad}");
        assert!(two_good > two_bad);
    }

    #[test]
    fn more_evidence_moves_the_score_further() {
        assert!(score(50, 50, 50.0, 0, 50) > score(2, 2, 2.0, 0, 2));
        assert!(score(0, 50, 0.0, 0, 50) < score(0, 2, 0.0, 0, 2));
    }

    proptest! {
        #[test]
        fn the_score_stays_in_the_unit_interval(
            verified in 0i64..1000, rejected in 0i64..1000, disc in 0i64..1000, q in 0.0f64..=1.0
        ) {
            let judged = verified + rejected;
            let s = score(verified, judged, q * judged as f64, disc.min(judged), judged);
            prop_assert!((0.0..=1.0).contains(&s));
        }

        #[test]
        fn one_more_success_never_lowers_the_success_term(s in 0i64..500, f in 0i64..500) {
            prop_assert!(wilson_centre(s + 1, s + f + 1) >= wilson_centre(s, s + f) - 1e-12);
        }
    }
}
