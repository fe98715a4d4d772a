//! The behaviour monitor: each agent's own baseline (moving mean and spread of response
//! time, quality and evidence size; streaks) and the anomalies where its latest work departs
//! from it. Pure functions over the agent's latest verdicts, oldest first, and the totals of
//! its verdicts in the window ([`VerdictSummary`]).

use crate::verification::{VerdictSummary, Verification};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How many recent verdicts the baseline covers (a moving window).
pub const BASELINE_WINDOW: usize = 50;
/// Fewer prior verdicts than this and departures are not judged (too little to compare).
pub const MIN_SAMPLES: usize = 5;

/// Mean and spread of one measure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spread {
    pub mean: f64,
    pub stddev: f64,
    pub samples: i64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        Self {
            mean,
            stddev: var.sqrt(),
            samples: values.len() as i64,
        }
    }
}

/// What is normal for this agent, from its verdicts before the latest one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Baseline {
    /// Seconds from assignment to submission.
    pub response_time: Spread,
    pub quality: Spread,
    /// Evidence size in bytes.
    pub evidence_size: Spread,
    /// Consecutive rejections up to now.
    pub rejection_streak: i64,
    /// Consecutive verified verdicts up to now.
    pub success_streak: i64,
}

/// A behaviour that departs from what is expected of the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Anomaly {
    /// `rejection_streak`, `slowdown`, `quality_drop`, `thin_evidence`, `empty_evidence`
    /// or `contradicted_evidence`.
    pub kind: String,
    /// `low`, `medium` or `high`.
    pub severity: String,
    /// What was seen, in words.
    pub detail: String,
    /// The numbers behind it: observed value, baseline mean and spread, threshold.
    #[schemars(with = "serde_json::Map<String, serde_json::Value>")]
    pub numbers: serde_json::Value,
    /// What to do about it, in plain words.
    pub recommendation: String,
}

/// The baseline over the verdicts before the latest one; streaks come from the totals.
pub fn baseline(latest: &[Verification], totals: &VerdictSummary) -> Baseline {
    let prior = prior(latest);
    let times: Vec<f64> = prior.iter().filter_map(|v| v.response_time_secs).collect();
    let quality: Vec<f64> = prior.iter().map(|v| v.quality_score).collect();
    let sizes: Vec<f64> = prior
        .iter()
        .map(|v| v.evidence_analysis.size_bytes as f64)
        .collect();
    Baseline {
        response_time: Spread::of(&times),
        quality: Spread::of(&quality),
        evidence_size: Spread::of(&sizes),
        rejection_streak: totals.rejection_streak,
        success_streak: totals.success_streak,
    }
}

fn prior(verdicts: &[Verification]) -> &[Verification] {
    let end = verdicts.len().saturating_sub(1);
    &verdicts[end.saturating_sub(BASELINE_WINDOW)..end]
}

/// Departures of the latest verdict from the agent's own baseline (`latest` holds its
/// latest verdicts, oldest first), plus streaks and claims ground truth contradicted over
/// the whole window (`totals`).
pub fn anomalies(verdicts: &[Verification], totals: &VerdictSummary) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let Some(latest) = verdicts.last() else {
        return out;
    };
    let base = baseline(verdicts, totals);
    let streak = base.rejection_streak;
    if streak >= 3 {
        out.push(Anomaly {
            kind: "rejection_streak".into(),
            severity: if streak >= 5 { "high" } else { "medium" }.into(),
            detail: format!("the last {streak} verifications were rejected"),
            numbers: serde_json::json!({ "streak": streak }),
            recommendation:
                "review the agent's recent work before giving it more; the policy suspends it at its threshold"
                    .into(),
        });
    }
    let prior_count = verdicts.len() - 1;
    if prior_count >= MIN_SAMPLES {
        if let Some(t) = latest.response_time_secs {
            let s = base.response_time;
            let threshold = s.mean + 3.0 * s.stddev.max(s.mean * 0.1);
            if s.samples as usize >= MIN_SAMPLES && t > threshold && t > 2.0 * s.mean {
                out.push(Anomaly {
                    kind: "slowdown".into(),
                    severity: if t > 5.0 * s.mean { "high" } else { "medium" }.into(),
                    detail: format!(
                        "took {t:.1} s from assignment to submission; it usually takes {:.1} s (± {:.1})",
                        s.mean, s.stddev
                    ),
                    numbers: serde_json::json!({ "observed": t, "mean": s.mean, "stddev": s.stddev, "threshold": threshold }),
                    recommendation: "check whether the agent is stuck or overloaded; lower its concurrency if it persists".into(),
                });
            }
        }
        let q = base.quality;
        let threshold = q.mean - 3.0 * q.stddev.max(0.05);
        if latest.quality_score < threshold && latest.quality_score < q.mean - 0.2 {
            out.push(Anomaly {
                kind: "quality_drop".into(),
                severity: "medium".into(),
                detail: format!(
                    "quality {:.2} against its usual {:.2} (± {:.2})",
                    latest.quality_score, q.mean, q.stddev
                ),
                numbers: serde_json::json!({ "observed": latest.quality_score, "mean": q.mean, "stddev": q.stddev, "threshold": threshold }),
                recommendation: "inspect the latest submission; a sudden drop often means a changed environment or prompt".into(),
            });
        }
        let size = latest.evidence_analysis.size_bytes as f64;
        let e = base.evidence_size;
        if e.mean > 0.0 && size < 0.2 * e.mean {
            out.push(Anomaly {
                kind: "thin_evidence".into(),
                severity: "low".into(),
                detail: format!("submitted {size:.0} bytes of evidence; it usually submits {:.0}", e.mean),
                numbers: serde_json::json!({ "observed": size, "mean": e.mean, "stddev": e.stddev }),
                recommendation: "ask for the usual evidence (tests, diffs, files) before accepting the claim".into(),
            });
        }
    }
    let (empty, of) = (totals.empty_evidence, totals.total());
    if empty > 0 {
        out.push(Anomaly {
            kind: "empty_evidence".into(),
            severity: "medium".into(),
            detail: format!("{empty} submission(s) claimed done with empty evidence"),
            numbers: serde_json::json!({ "count": empty, "of": of }),
            recommendation: "ask the agent to submit test results, diffs or files with each claim"
                .into(),
        });
    }
    let contradicted = totals.discrepant;
    if contradicted > 0 {
        out.push(Anomaly {
            kind: "contradicted_evidence".into(),
            severity: "high".into(),
            detail: format!(
                "ground truth contradicted the agent's evidence in {contradicted} of {of} verifications"
            ),
            numbers: serde_json::json!({ "count": contradicted, "of": of }),
            recommendation: "treat this agent's claims as unreliable: require ground-truth criteria on its tasks".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verification::{EvidenceAnalysis, Outcome, streak};
    use chrono::Utc;
    use uuid::Uuid;

    fn verdict(outcome: Outcome, secs: f64, quality: f64, size: i64) -> Verification {
        Verification {
            id: Uuid::new_v4(),
            task_id: Uuid::nil(),
            agent_id: Uuid::nil(),
            evidence_id: Uuid::nil(),
            success: outcome == Outcome::Verified,
            outcome,
            quality_score: quality,
            results: vec![],
            evidence_analysis: EvidenceAnalysis {
                items: 1,
                substantive_items: 1,
                size_bytes: size,
                ..Default::default()
            },
            discrepancies: 0,
            response_time_secs: Some(secs),
            superseded: false,
            created_at: Utc::now(),
        }
    }

    fn anomalies_in(verdicts: &[Verification]) -> Vec<Anomaly> {
        anomalies(verdicts, &VerdictSummary::of(verdicts))
    }

    fn steady(n: usize) -> Vec<Verification> {
        (0..n)
            .map(|i| verdict(Outcome::Verified, 60.0 + (i % 3) as f64, 0.95, 1000))
            .collect()
    }

    #[test]
    fn a_steady_agent_has_no_anomalies() {
        assert!(anomalies_in(&steady(20)).is_empty());
    }

    #[test]
    fn a_sudden_slowdown_is_flagged_with_its_numbers() {
        let mut v = steady(20);
        v.push(verdict(Outcome::Verified, 600.0, 0.95, 1000));
        let a = anomalies_in(&v);
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a[0].kind, "slowdown");
        assert_eq!(a[0].severity, "high");
        assert_eq!(a[0].numbers["observed"], 600.0);
    }

    #[test]
    fn a_quality_drop_and_thin_evidence_are_flagged() {
        let mut v = steady(20);
        v.push(verdict(Outcome::Verified, 61.0, 0.4, 50));
        let kinds: Vec<String> = anomalies_in(&v).into_iter().map(|a| a.kind).collect();
        assert_eq!(kinds, ["quality_drop", "thin_evidence"]);
    }

    #[test]
    fn a_new_agent_is_not_judged_against_too_little_history() {
        let v = vec![
            verdict(Outcome::Verified, 1.0, 1.0, 100),
            verdict(Outcome::Verified, 900.0, 0.1, 1),
        ];
        assert!(anomalies_in(&v).is_empty());
    }

    #[test]
    fn streaks_skip_inconclusive_verdicts() {
        let v = vec![
            verdict(Outcome::Verified, 1.0, 1.0, 1),
            verdict(Outcome::Rejected, 1.0, 0.2, 1),
            verdict(Outcome::Inconclusive, 1.0, 0.5, 1),
            verdict(Outcome::Rejected, 1.0, 0.2, 1),
        ];
        assert_eq!(streak(&v, Outcome::Rejected), 2);
        assert_eq!(streak(&v, Outcome::Verified), 0);
    }
}
