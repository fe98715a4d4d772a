//! Verdicts: how they are written and read back for reliability, SQL shared by both backends
//! like the rest of `sql.rs`. Besides the JSON body, each row keeps the few numbers
//! reliability totals (migration 0007), so [`Backend::summarise_verdicts`] adds them up in
//! the database instead of loading an agent's whole history into memory on every verdict.

use super::{Arg, Backend, OnUnique, Sql, StoreResult, Write, micros, query, to_body};
use crate::store::TimeRange;
use crate::verification::{VerdictSummary, Verification};
use sqlx::Row;
use uuid::Uuid;

/// Ranks the pending verdict after every stored one, whatever the clock said; also "no
/// verdict of the opposite outcome" in a streak.
const LATEST: i64 = i64::MAX;

/// The statement that records verdict `v`.
pub(super) fn verification_write(v: &Verification) -> StoreResult<Write> {
    let mut args = vec![
        v.id.into(),
        v.task_id.into(),
        v.agent_id.into(),
        micros(v.created_at).into(),
        Arg::Text(to_body("verifications", v.id, v)?),
    ];
    args.extend(totalled(v));
    Ok(Write::new(
        "INSERT INTO verifications (id, task_id, agent_id, created_us, body, \
         outcome, quality, discrepancies, response_secs, substantive) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        args,
        OnUnique::Conflict,
        format!("record verification {}", v.id),
    ))
}

impl Backend {
    pub(super) async fn latest_verifications(
        &self,
        agent_id: Uuid,
        range: TimeRange,
        limit: i64,
    ) -> StoreResult<Vec<Verification>> {
        let mut sql = Sql::new("SELECT seq, id AS rid, body FROM verifications");
        let conditions = in_range(&mut sql, agent_id, range);
        sql.push_where(&conditions);
        // Newest first so the index stops the scan at `limit`; turned oldest first below.
        let l = sql.arg(limit.max(0));
        sql.push(&format!(" ORDER BY created_us DESC, seq DESC LIMIT {l}"));
        let mut latest: Vec<Verification> = self
            .fetch_items("verifications", &sql.text, sql.args)
            .await?;
        latest.reverse();
        Ok(latest)
    }

    pub(super) async fn summarise_verdicts(
        &self,
        agent_id: Uuid,
        range: TimeRange,
        pending: Option<&Verification>,
    ) -> StoreResult<VerdictSummary> {
        let mut sql = Sql::new(
            "WITH w AS (SELECT outcome, quality, discrepancies, response_secs, substantive, \
             created_us AS at, seq FROM verifications",
        );
        let conditions = in_range(&mut sql, agent_id, range);
        sql.push_where(&conditions);
        if let Some(v) = pending {
            let mut values: Vec<String> = totalled(v).into_iter().map(|a| sql.arg(a)).collect();
            values.push(sql.arg(LATEST));
            values.push(sql.arg(LATEST));
            let types = [
                "TEXT",
                "DOUBLE PRECISION",
                "BIGINT",
                "DOUBLE PRECISION",
                "BIGINT",
                "BIGINT",
                "BIGINT",
            ];
            let casts: Vec<String> = values
                .iter()
                .zip(types)
                .map(|(value, ty)| format!("CAST({value} AS {ty})"))
                .collect();
            sql.push(&format!(" UNION ALL SELECT {}", casts.join(", ")));
        }
        // `pos` 1 is the latest verdict; a streak is the verdicts of one outcome newer than
        // the latest of the opposite one (inconclusive verdicts break nothing). The 95th
        // percentile is by nearest rank: position ceil(0.95·n) in ascending order.
        let streak = |outcome: &str, opposite: &str| {
            format!(
                "(SELECT COUNT(*) FROM ranked WHERE outcome = '{outcome}' AND pos < COALESCE(\
                 (SELECT MIN(pos) FROM ranked WHERE outcome = '{opposite}'), {LATEST}))"
            )
        };
        sql.push(&format!(
            "), ranked AS (SELECT outcome, ROW_NUMBER() OVER (ORDER BY at DESC, seq DESC) AS pos \
             FROM w), \
             times AS (SELECT response_secs AS t, \
             ROW_NUMBER() OVER (ORDER BY response_secs) AS i, COUNT(*) OVER () AS n \
             FROM w WHERE response_secs IS NOT NULL) \
             SELECT \
             COUNT(CASE WHEN outcome = 'verified' THEN 1 END) AS verified, \
             COUNT(CASE WHEN outcome = 'rejected' THEN 1 END) AS rejected, \
             COUNT(CASE WHEN outcome = 'inconclusive' THEN 1 END) AS inconclusive, \
             COALESCE(SUM(quality), 0.0) AS quality_sum, \
             COUNT(CASE WHEN discrepancies > 0 THEN 1 END) AS discrepant, \
             COUNT(CASE WHEN substantive = 0 THEN 1 END) AS empty_evidence, \
             COUNT(response_secs) AS timed, \
             COALESCE(SUM(response_secs), 0.0) AS response_time_sum, \
             (SELECT t FROM times WHERE i = (95 * n + 99) / 100) AS response_time_p95, \
             {} AS rejection_streak, {} AS success_streak \
             FROM w",
            streak("rejected", "verified"),
            streak("verified", "rejected"),
        ));
        let row = query(&sql.text, sql.args)
            .fetch_one(self.reader())
            .await
            .map_err(|e| self.fail(e, format!("total the verdicts of agent {agent_id}")))?;
        let summary = || -> Result<VerdictSummary, sqlx::Error> {
            Ok(VerdictSummary {
                verified: row.try_get("verified")?,
                rejected: row.try_get("rejected")?,
                inconclusive: row.try_get("inconclusive")?,
                quality_sum: row.try_get("quality_sum")?,
                discrepant: row.try_get("discrepant")?,
                empty_evidence: row.try_get("empty_evidence")?,
                timed: row.try_get("timed")?,
                response_time_sum: row.try_get("response_time_sum")?,
                response_time_p95: row
                    .try_get::<Option<f64>, _>("response_time_p95")?
                    .unwrap_or(0.0),
                rejection_streak: row.try_get("rejection_streak")?,
                success_streak: row.try_get("success_streak")?,
            })
        };
        summary().map_err(|e| self.fail(e, "read verdict totals"))
    }
}

/// The columns a verdict's row totals by, in table order.
fn totalled(v: &Verification) -> [Arg; 5] {
    [
        v.outcome.as_str().into(),
        Arg::Real(v.quality_score),
        v.discrepancies.into(),
        Arg::OptReal(v.response_time_secs),
        v.evidence_analysis.substantive_items.into(),
    ]
}

/// `agent_id = …` plus the range's bounds on `created_us`.
fn in_range(sql: &mut Sql, agent_id: Uuid, range: TimeRange) -> Vec<String> {
    let mut conditions = vec![format!("agent_id = {}", sql.arg(agent_id))];
    if let Some(since) = range.since {
        conditions.push(format!("created_us >= {}", sql.arg(micros(since))));
    }
    if let Some(until) = range.until {
        conditions.push(format!("created_us < {}", sql.arg(micros(until))));
    }
    conditions
}
