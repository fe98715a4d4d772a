//! Acceptance criteria and their evaluation against evidence. Ground-truth criteria are
//! checked by the service through downstream servers; here they are only described.

use crate::error::{AresError, AresResult};
use crate::evidence::{EvidenceItem, KINDS};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A machine-checkable acceptance criterion, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Criterion {
    /// The evidence includes at least one substantive item of this kind.
    EvidencePresent {
        /// An evidence kind: diff, test_results, metrics, file, documentation,
        /// api_interaction, command, screenshot or log.
        kind: String,
    },
    /// The submitted test results pass.
    TestsPass {
        /// At least this many tests passed (default 1).
        #[serde(default)]
        min_passed: Option<i64>,
        /// At most this many failed (default 0).
        #[serde(default)]
        max_failed: Option<i64>,
    },
    /// A submitted metric is at most `max`.
    MetricAtMost { name: String, max: f64 },
    /// A submitted metric is at least `min`.
    MetricAtLeast { name: String, min: f64 },
    /// The evidence carries a valid signature of the agent's registered key.
    Signed {},
    /// Ground truth: the file exists (filesystem server).
    FileExists { path: String },
    /// Ground truth: the file contains `pattern` (a substring, or a regex when `regex` is true).
    FileContains {
        path: String,
        pattern: String,
        #[serde(default)]
        regex: bool,
    },
    /// Ground truth: the file's sha256 equals the digest claimed in the evidence.
    FileMatchesEvidence { path: String },
    /// Ground truth: the command exits 0 when the code checker runs it.
    CommandSucceeds { command: String },
    /// Ground truth: the linter reports no problems in the path.
    LintClean { path: String },
    /// Ground truth: the page at `url` shows `text` (Playwright).
    PageContains { url: String, text: String },
}

impl Criterion {
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::EvidencePresent { .. } => "evidence_present",
            Self::TestsPass { .. } => "tests_pass",
            Self::MetricAtMost { .. } => "metric_at_most",
            Self::MetricAtLeast { .. } => "metric_at_least",
            Self::Signed {} => "signed",
            Self::FileExists { .. } => "file_exists",
            Self::FileContains { .. } => "file_contains",
            Self::FileMatchesEvidence { .. } => "file_matches_evidence",
            Self::CommandSucceeds { .. } => "command_succeeds",
            Self::LintClean { .. } => "lint_clean",
            Self::PageContains { .. } => "page_contains",
        }
    }

    /// The downstream role a ground-truth criterion needs, if any.
    pub fn needs_role(&self) -> Option<&'static str> {
        match self {
            Self::FileExists { .. }
            | Self::FileContains { .. }
            | Self::FileMatchesEvidence { .. } => Some("filesystem"),
            Self::CommandSucceeds { .. } | Self::LintClean { .. } => Some("code_checker"),
            Self::PageContains { .. } => Some("playwright"),
            _ => None,
        }
    }
}

pub const MAX_CRITERIA: usize = 50;

/// Checks criteria values (types were checked by decoding), naming the first bad field.
pub fn validate_criteria(criteria: &[Criterion]) -> AresResult<()> {
    if criteria.is_empty() {
        return Err(AresError::invalid(
            "criteria",
            "expected at least one acceptance criterion",
        ));
    }
    if criteria.len() > MAX_CRITERIA {
        return Err(AresError::invalid(
            "criteria",
            format!("expected at most {MAX_CRITERIA} criteria"),
        ));
    }
    for (i, c) in criteria.iter().enumerate() {
        let at = |f: &str| format!("criteria[{i}].{f}");
        let nonempty = |f: &str, v: &str| {
            if v.trim().is_empty() {
                Err(AresError::invalid(at(f), "expected a non-empty string"))
            } else {
                Ok(())
            }
        };
        match c {
            Criterion::EvidencePresent { kind } if !KINDS.contains(&kind.as_str()) => {
                return Err(AresError::invalid(
                    at("kind"),
                    format!("expected one of {} (got {kind:?})", KINDS.join(", ")),
                ));
            }
            Criterion::TestsPass {
                min_passed,
                max_failed,
            } => {
                if min_passed.is_some_and(|n| n < 0) {
                    return Err(AresError::invalid(at("min_passed"), "expected 0 or more"));
                }
                if max_failed.is_some_and(|n| n < 0) {
                    return Err(AresError::invalid(at("max_failed"), "expected 0 or more"));
                }
            }
            Criterion::MetricAtMost { name, max: bound }
            | Criterion::MetricAtLeast { name, min: bound } => {
                nonempty("name", name)?;
                if !bound.is_finite() {
                    return Err(AresError::invalid(at("bound"), "expected a finite number"));
                }
            }
            Criterion::FileExists { path }
            | Criterion::FileMatchesEvidence { path }
            | Criterion::LintClean { path } => nonempty("path", path)?,
            Criterion::FileContains {
                path,
                pattern,
                regex,
            } => {
                nonempty("path", path)?;
                nonempty("pattern", pattern)?;
                if *regex && let Err(e) = regex::Regex::new(pattern) {
                    return Err(AresError::invalid(
                        at("pattern"),
                        format!("expected a valid regular expression: {e}"),
                    ));
                }
            }
            Criterion::CommandSucceeds { command } => nonempty("command", command)?,
            Criterion::PageContains { url, text } => {
                nonempty("text", text)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(AresError::invalid(at("url"), "expected an http(s) URL"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The verdict on one criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CriterionStatus {
    Met,
    Unmet,
    /// Could not be checked (e.g. the downstream server it needs is not configured);
    /// never counted as met.
    Unverifiable,
}

impl CriterionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Met => "met",
            Self::Unmet => "unmet",
            Self::Unverifiable => "unverifiable",
        }
    }
}

/// One criterion's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CriterionResult {
    pub criterion: Criterion,
    pub status: CriterionStatus,
    /// `status == met`, for clients that want a boolean.
    pub met: bool,
    /// What was found, in plain words.
    pub detail: String,
    /// How it was checked: `evidence`, or `server/tool` for a ground-truth check.
    pub checked_via: String,
    /// True when ground truth contradicted what the evidence claimed.
    #[serde(default)]
    pub discrepancy: bool,
}

impl CriterionResult {
    pub fn new(criterion: &Criterion, status: CriterionStatus, detail: impl Into<String>) -> Self {
        Self {
            criterion: criterion.clone(),
            status,
            met: status == CriterionStatus::Met,
            detail: detail.into(),
            checked_via: "evidence".into(),
            discrepancy: false,
        }
    }
}

/// Evaluates a criterion that the evidence alone can decide; `None` for ground-truth ones.
pub fn evaluate(
    criterion: &Criterion,
    items: &[EvidenceItem],
    signed: bool,
) -> Option<CriterionResult> {
    use CriterionStatus::*;
    let r = |status, detail: String| Some(CriterionResult::new(criterion, status, detail));
    match criterion {
        Criterion::EvidencePresent { kind } => {
            let n = items
                .iter()
                .filter(|i| i.kind() == kind && i.is_substantive())
                .count();
            if n > 0 {
                r(Met, format!("{n} substantive `{kind}` item(s) submitted"))
            } else {
                r(Unmet, format!("no substantive `{kind}` evidence submitted"))
            }
        }
        Criterion::TestsPass {
            min_passed,
            max_failed,
        } => {
            let Some((passed, failed)) = test_totals(items) else {
                return r(Unmet, "no test_results evidence submitted".into());
            };
            let (min_passed, max_failed) = (min_passed.unwrap_or(1), max_failed.unwrap_or(0));
            let detail = format!(
                "{passed} passed, {failed} failed (needs at least {min_passed} passed, at most {max_failed} failed)"
            );
            if passed >= min_passed && failed <= max_failed {
                r(Met, detail)
            } else {
                r(Unmet, detail)
            }
        }
        Criterion::MetricAtMost { name, max } => match metric(items, name) {
            Some(v) if v <= *max => r(Met, format!("{name} = {v} ≤ {max}")),
            Some(v) => r(Unmet, format!("{name} = {v} exceeds {max}")),
            None => r(Unmet, format!("metric `{name}` not in the evidence")),
        },
        Criterion::MetricAtLeast { name, min } => match metric(items, name) {
            Some(v) if v >= *min => r(Met, format!("{name} = {v} ≥ {min}")),
            Some(v) => r(Unmet, format!("{name} = {v} is below {min}")),
            None => r(Unmet, format!("metric `{name}` not in the evidence")),
        },
        Criterion::Signed {} => {
            if signed {
                r(Met, "the submission carries a valid signature".into())
            } else {
                r(Unmet, "the submission is not signed".into())
            }
        }
        _ => None,
    }
}

/// Summed passed / failed counts over every `test_results` item, if there are any.
pub fn test_totals(items: &[EvidenceItem]) -> Option<(i64, i64)> {
    let mut found = None;
    for item in items {
        if let EvidenceItem::TestResults { passed, failed, .. } = item {
            let (p, f) = found.unwrap_or((0, 0));
            found = Some((p + passed, f + failed));
        }
    }
    found
}

/// The last value submitted for a metric.
pub fn metric(items: &[EvidenceItem], name: &str) -> Option<f64> {
    items.iter().rev().find_map(|i| match i {
        EvidenceItem::Metrics { values } => values.get(name).copied(),
        _ => None,
    })
}

/// What the evidence looked like, for the verdict and the behaviour monitor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceAnalysis {
    pub items: i64,
    /// Items that say something (non-empty content, non-zero counts).
    pub substantive_items: i64,
    pub kinds: Vec<String>,
    /// Size of the evidence JSON in bytes.
    pub size_bytes: i64,
    pub tests_passed: Option<i64>,
    pub tests_failed: Option<i64>,
    /// Things worth a human's attention.
    pub concerns: Vec<String>,
}

pub fn analyse(items: &[EvidenceItem]) -> EvidenceAnalysis {
    let mut kinds: Vec<String> = items.iter().map(|i| i.kind().to_string()).collect();
    kinds.sort();
    kinds.dedup();
    let substantive = items.iter().filter(|i| i.is_substantive()).count() as i64;
    let totals = test_totals(items);
    let mut concerns = Vec::new();
    if substantive == 0 {
        concerns.push("the evidence is empty: no item says anything".to_string());
    }
    if let Some((_, failed)) = totals
        && failed > 0
    {
        concerns.push(format!("{failed} test(s) failed"));
    }
    EvidenceAnalysis {
        items: items.len() as i64,
        substantive_items: substantive,
        kinds,
        size_bytes: serde_json::to_vec(items).map_or(0, |v| v.len() as i64),
        tests_passed: totals.map(|t| t.0),
        tests_failed: totals.map(|t| t.1),
        concerns,
    }
}

/// The overall verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every criterion met: the task is `verified`.
    Verified,
    /// At least one criterion unmet: the task is `rejected`.
    Rejected,
    /// Nothing unmet, but something could not be checked: the task stays `submitted`.
    Inconclusive,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Verified => "verified",
            Self::Rejected => "rejected",
            Self::Inconclusive => "inconclusive",
        }
    }
}

pub fn outcome(results: &[CriterionResult]) -> Outcome {
    if results.iter().any(|r| r.status == CriterionStatus::Unmet) {
        Outcome::Rejected
    } else if results.iter().all(|r| r.status == CriterionStatus::Met) {
        Outcome::Verified
    } else {
        Outcome::Inconclusive
    }
}

/// Quality in [0, 1]: `0.70·C + 0.15·E + 0.15·T − 0.25·D`, clamped, where C is the share of
/// criteria met, E the share of substantive evidence items, T the test pass ratio (1 when no
/// tests were submitted) and D the share of criteria whose ground truth contradicted the
/// evidence. Criteria dominate because they are what the task asked for.
pub fn quality_score(results: &[CriterionResult], analysis: &EvidenceAnalysis) -> f64 {
    let n = results.len().max(1) as f64;
    let c = results.iter().filter(|r| r.met).count() as f64 / n;
    let d = results.iter().filter(|r| r.discrepancy).count() as f64 / n;
    let e = if analysis.items == 0 {
        0.0
    } else {
        analysis.substantive_items as f64 / analysis.items as f64
    };
    let t = match (analysis.tests_passed, analysis.tests_failed) {
        (Some(p), Some(f)) if p + f > 0 => p as f64 / (p + f) as f64,
        _ => 1.0,
    };
    (0.70 * c + 0.15 * e + 0.15 * t - 0.25 * d).clamp(0.0, 1.0)
}

/// A recorded verification of a task's latest evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Verification {
    pub id: Uuid,
    pub task_id: Uuid,
    pub agent_id: Uuid,
    /// The evidence submission this verdict is about.
    pub evidence_id: Uuid,
    pub success: bool,
    pub outcome: Outcome,
    pub quality_score: f64,
    pub results: Vec<CriterionResult>,
    pub evidence_analysis: EvidenceAnalysis,
    /// How many criteria ground truth contradicted.
    pub discrepancies: i64,
    /// Seconds from assignment to submission.
    pub response_time_secs: Option<f64>,
    /// True once the task was rolled back: the verdict stays in the history but no longer
    /// stands.
    #[serde(default)]
    pub superseded: bool,
    pub created_at: DateTime<Utc>,
}

/// What reliability needs from an agent's verdicts in a time range, totalled by the store
/// (so the cost of a call does not grow with the agent's history). [`VerdictSummary::of`]
/// is the definition; the store's SQL must agree with it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct VerdictSummary {
    pub verified: i64,
    pub rejected: i64,
    pub inconclusive: i64,
    pub quality_sum: f64,
    /// Verdicts where ground truth contradicted at least one claim.
    pub discrepant: i64,
    /// Verdicts on evidence with nothing substantive in it.
    pub empty_evidence: i64,
    /// Verdicts with a response time, and the sum of those times in seconds.
    pub timed: i64,
    pub response_time_sum: f64,
    /// The 95th percentile of the response times by nearest rank; 0 with none.
    pub response_time_p95: f64,
    /// Consecutive latest rejections, and verified verdicts (inconclusive ones skipped).
    pub rejection_streak: i64,
    pub success_streak: i64,
}

impl VerdictSummary {
    /// The summary of these verdicts, oldest first.
    pub fn of(verdicts: &[Verification]) -> Self {
        let count = |keep: &dyn Fn(&Verification) -> bool| {
            verdicts.iter().filter(|v| keep(v)).count() as i64
        };
        let times: Vec<f64> = verdicts
            .iter()
            .filter_map(|v| v.response_time_secs)
            .collect();
        Self {
            verified: count(&|v| v.outcome == Outcome::Verified),
            rejected: count(&|v| v.outcome == Outcome::Rejected),
            inconclusive: count(&|v| v.outcome == Outcome::Inconclusive),
            quality_sum: verdicts.iter().map(|v| v.quality_score).sum(),
            discrepant: count(&|v| v.discrepancies > 0),
            empty_evidence: count(&|v| v.evidence_analysis.substantive_items == 0),
            timed: times.len() as i64,
            response_time_sum: times.iter().sum(),
            response_time_p95: percentile(&times, 95.0),
            rejection_streak: streak(verdicts, Outcome::Rejected) as i64,
            success_streak: streak(verdicts, Outcome::Verified) as i64,
        }
    }

    /// Every verdict, judged or not.
    pub fn total(&self) -> i64 {
        self.verified + self.rejected + self.inconclusive
    }
}

/// Consecutive latest verdicts with this outcome (inconclusive ones are skipped).
pub fn streak(verdicts: &[Verification], outcome: Outcome) -> usize {
    verdicts
        .iter()
        .rev()
        .filter(|v| v.outcome != Outcome::Inconclusive)
        .take_while(|v| v.outcome == outcome)
        .count()
}

/// The `p`-th percentile (0–100) by nearest rank; 0 for no values.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[], 95.0), 0.0);
    }
    use std::collections::BTreeMap;

    fn tests(passed: i64, failed: i64) -> EvidenceItem {
        EvidenceItem::TestResults {
            passed,
            failed,
            skipped: 0,
            output: None,
        }
    }

    #[test]
    fn tests_pass_defaults_to_at_least_one_passed_and_none_failed() {
        let c = Criterion::TestsPass {
            min_passed: None,
            max_failed: None,
        };
        assert!(evaluate(&c, &[tests(3, 0)], false).unwrap().met);
        assert!(!evaluate(&c, &[tests(3, 1)], false).unwrap().met);
        assert!(!evaluate(&c, &[tests(0, 0)], false).unwrap().met);
        assert!(!evaluate(&c, &[], false).unwrap().met);
    }

    #[test]
    fn metrics_compare_against_their_bound() {
        let items = [EvidenceItem::Metrics {
            values: BTreeMap::from([("p95_ms".to_string(), 120.0)]),
        }];
        let at_most = |max| Criterion::MetricAtMost {
            name: "p95_ms".into(),
            max,
        };
        assert!(evaluate(&at_most(150.0), &items, false).unwrap().met);
        assert!(!evaluate(&at_most(100.0), &items, false).unwrap().met);
        let missing = Criterion::MetricAtLeast {
            name: "coverage".into(),
            min: 0.8,
        };
        let r = evaluate(&missing, &items, false).unwrap();
        assert_eq!(r.status, CriterionStatus::Unmet);
        assert!(r.detail.contains("coverage"));
    }

    #[test]
    fn ground_truth_criteria_are_left_to_the_service() {
        let c = Criterion::FileExists {
            path: "src/lib.rs".into(),
        };
        assert!(evaluate(&c, &[], false).is_none());
        assert_eq!(c.needs_role(), Some("filesystem"));
    }

    #[test]
    fn unverifiable_is_never_verified() {
        let c = Criterion::FileExists { path: "x".into() };
        let results = vec![
            CriterionResult::new(&c, CriterionStatus::Met, ""),
            CriterionResult::new(&c, CriterionStatus::Unverifiable, ""),
        ];
        assert_eq!(outcome(&results), Outcome::Inconclusive);
    }

    #[test]
    fn quality_rewards_met_criteria_and_punishes_discrepancies() {
        let c = Criterion::Signed {};
        let analysis = analyse(&[tests(10, 0)]);
        let all_met = vec![CriterionResult::new(&c, CriterionStatus::Met, "")];
        assert!((quality_score(&all_met, &analysis) - 1.0).abs() < 1e-9);
        let mut contradicted = vec![CriterionResult::new(&c, CriterionStatus::Unmet, "")];
        let plain_unmet = quality_score(&contradicted, &analysis);
        contradicted[0].discrepancy = true;
        assert!(quality_score(&contradicted, &analysis) < plain_unmet);
    }

    #[test]
    fn bad_criteria_name_their_field() {
        let err = validate_criteria(&[
            Criterion::Signed {},
            Criterion::EvidencePresent {
                kind: "telepathy".into(),
            },
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("criteria[1].kind"), "{err}");
        assert!(validate_criteria(&[]).is_err());
    }
}
