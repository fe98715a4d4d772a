//! Reliability on demand and the reports built from it.

use super::{Ares, page, parse_optional_time};
use crate::agents::AgentStatus;
use crate::behaviour;
use crate::cache::Entry;
use crate::error::{AresError, AresResult};
use crate::reliability::{self, Reliability, TaskCounts, Window};
use crate::reports::{self, Format, ReportKind};
use crate::store::{ActionFilter, AgentFilter, Page, TimeRange, WriteBatch};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetReliability {
    pub agent_id: Uuid,
    /// 1h, 24h, 7d or all (default all).
    #[serde(default)]
    pub window: Option<Window>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetReport {
    /// `reliability` (per agent) or `enforcement` (actions taken).
    pub report: ReportKind,
    /// json, csv or markdown (default json).
    #[serde(default)]
    pub format: Option<Format>,
    /// Only data at or after this time (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// Only data before this time (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
    /// Only this agent.
    #[serde(default)]
    pub agent_id: Option<Uuid>,
}

/// A rendered report.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    pub report: ReportKind,
    pub format: Format,
    pub generated_at: DateTime<Utc>,
    /// Rows in the report.
    pub rows: i64,
    /// The report in the requested format.
    pub content: String,
}

/// The most agents a reliability report covers.
const REPORT_AGENTS: i64 = 500;

impl Ares {
    #[tracing::instrument(skip_all, fields(agent_id = %req.agent_id))]
    pub async fn get_reliability(&self, req: GetReliability) -> AresResult<Reliability> {
        let window = req.window.unwrap_or_default();
        let entry = Entry::Reliability(req.agent_id, window);
        // Computing totals the agent's whole verdict history in the store: the cached
        // figure is served until a write touching the agent's work empties it. Only a fresh computation is
        // recorded as a snapshot, so repeated reads add no rows.
        self.cache
            .get_or_load(entry, self.now(), || async {
                let agent = self.agent(req.agent_id).await?;
                let now = self.now();
                let range = TimeRange::since(window.since(now));
                let counts = self.task_counts(agent.id, window).await?;
                let rel = self.reliability_in(agent.id, window, range, counts).await?;
                let batch = WriteBatch {
                    reliability: vec![rel.clone()],
                    ..Default::default()
                };
                self.commit(batch).await?;
                Ok(rel)
            })
            .await
    }

    /// Tasks assigned to and submitted by the agent in the window, cached.
    async fn task_counts(&self, agent_id: Uuid, window: Window) -> AresResult<TaskCounts> {
        let entry = Entry::TaskCounts(agent_id, window);
        self.cache
            .get_or_load(entry, self.now(), || async {
                Ok(self
                    .store
                    .task_counts(agent_id, window.since(self.now()))
                    .await?)
            })
            .await
    }

    /// The agent's reliability from its verdicts in `range` and these task counts.
    async fn reliability_in(
        &self,
        agent_id: Uuid,
        window: Window,
        range: TimeRange,
        counts: TaskCounts,
    ) -> AresResult<Reliability> {
        let totals = self.store.verdict_summary(agent_id, range, None).await?;
        let latest = self
            .store
            .verifications_for_agent(agent_id, range, behaviour::BASELINE_WINDOW as i64 + 1)
            .await?;
        Ok(reliability::compute(
            agent_id,
            window,
            &totals,
            &latest,
            counts,
            self.now(),
        ))
    }

    #[tracing::instrument(skip_all)]
    pub async fn get_report(&self, req: GetReport) -> AresResult<Report> {
        let since = parse_optional_time("since", req.since.as_deref())?;
        let until = parse_optional_time("until", req.until.as_deref())?;
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(AresError::invalid("until", "expected a time after `since`"));
        }
        let format = req.format.unwrap_or(Format::Json);
        let table = match req.report {
            ReportKind::Reliability => {
                let agents = match req.agent_id {
                    Some(id) => vec![self.agent(id).await?],
                    None => {
                        self.store
                            .list_agents(
                                &AgentFilter::default(),
                                Page {
                                    after: None,
                                    limit: REPORT_AGENTS,
                                },
                            )
                            .await?
                            .items
                    }
                };
                let mut rows = Vec::new();
                for agent in agents
                    .iter()
                    .filter(|a| a.status != AgentStatus::Deregistered || req.agent_id.is_some())
                {
                    let counts = self.store.task_counts(agent.id, since).await?;
                    let range = TimeRange { since, until };
                    let rel = self
                        .reliability_in(agent.id, Window::All, range, counts)
                        .await?;
                    rows.push((agent.clone(), rel));
                }
                reports::reliability_table(&rows)
            }
            ReportKind::Enforcement => {
                let filter = ActionFilter {
                    agent_id: req.agent_id,
                    action: None,
                    since,
                    until,
                };
                let actions = self
                    .store
                    .list_actions(&filter, page(Some(500), None)?)
                    .await?
                    .items;
                reports::enforcement_table(&actions)
            }
        };
        Ok(Report {
            report: req.report,
            format,
            generated_at: self.now(),
            rows: table.rows.len() as i64,
            content: table.render(format),
        })
    }
}
