//! The dashboard's data: one snapshot of everything the page shows, and an agent's
//! reliability over time. Both are read-only and built from existing store reads.

use super::live::Live;
use super::{Refusal, query};
use crate::agents::{Agent, AgentStatus};
use crate::enforcement::EnforcementAction;
use crate::error::AresError;
use crate::events::Event;
use crate::reliability::Window;
use crate::service::health::Health;
use crate::store::{ActionFilter, AgentFilter, Page, TaskFilter};
use crate::tasks::{Task, TaskStatus};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// The most agents the page lists.
const AGENTS: i64 = 500;
/// The most recent tasks the page lists.
const TASKS: i64 = 200;
/// The most recent enforcement actions in the feed.
const ACTIONS: i64 = 100;
/// The most recent events in the activity list.
const EVENTS: i64 = 50;
/// Trend points when the caller does not say.
const TREND_POINTS: i64 = 200;
const TREND_POINTS_MAX: i64 = 2000;

/// Everything the page shows, as of `generated_at`.
#[derive(Debug, Serialize)]
pub struct Dashboard {
    pub generated_at: DateTime<Utc>,
    /// In registration order.
    pub agents: Vec<AgentRow>,
    /// More agents exist than are listed.
    pub agents_truncated: bool,
    /// Newest first.
    pub tasks: Vec<TaskRow>,
    /// Newest first.
    pub actions: Vec<EnforcementAction>,
    pub health: Health,
    /// Newest first, each with its position in the stored stream.
    pub events: Vec<EventRow>,
}

/// An agent as the page lists it.
#[derive(Debug, Serialize)]
pub struct AgentRow {
    pub id: Uuid,
    pub name: String,
    pub status: AgentStatus,
    /// May take work now (a lapsed suspension counts as over).
    pub available: bool,
    pub reliability_score: f64,
    pub capabilities: Vec<String>,
    pub max_concurrent_tasks: i32,
    pub throttle_limit: Option<i32>,
    /// The concurrency limit assignment honours right now.
    pub effective_limit: i32,
    pub suspended_until: Option<DateTime<Utc>>,
    pub on_probation: bool,
    /// Assigned, in progress or submitted.
    pub open_tasks: i64,
    pub updated_at: DateTime<Utc>,
}

/// A task as the page lists it (its criteria and evidence stay behind `get_task`).
#[derive(Debug, Serialize)]
pub struct TaskRow {
    pub id: Uuid,
    pub description: String,
    pub status: TaskStatus,
    pub agent_id: Option<Uuid>,
    pub priority: i32,
    pub deadline: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct EventRow {
    pub seq: i64,
    #[serde(flatten)]
    pub event: Event,
}

fn agent_row(agent: Agent, open_tasks: i64, now: DateTime<Utc>) -> AgentRow {
    AgentRow {
        available: agent.is_available(now),
        effective_limit: agent.effective_limit(),
        id: agent.id,
        name: agent.name,
        status: agent.status,
        reliability_score: agent.reliability_score,
        capabilities: agent.capabilities,
        max_concurrent_tasks: agent.max_concurrent_tasks,
        throttle_limit: agent.throttle_limit,
        suspended_until: agent.suspended_until,
        on_probation: agent.on_probation,
        open_tasks,
        updated_at: agent.updated_at,
    }
}

fn task_row(task: Task) -> TaskRow {
    TaskRow {
        id: task.id,
        description: task.description,
        status: task.status,
        agent_id: task.agent_id,
        priority: task.priority,
        deadline: task.deadline,
        attempts: task.attempts,
        created_at: task.created_at,
        updated_at: task.updated_at,
    }
}

/// `GET /api/dashboard`
#[tracing::instrument(skip_all)]
pub async fn dashboard(State(live): State<Live>) -> Result<Json<Dashboard>, Refusal> {
    let store = &live.ares.store;
    let first = |limit| Page { after: None, limit };
    let (all_agents, all_tasks, all_actions) = (
        AgentFilter::default(),
        TaskFilter::default(),
        ActionFilter::default(),
    );
    let (agents, tasks, actions, events, open, health) = tokio::join!(
        store.list_agents(&all_agents, first(AGENTS)),
        store.list_tasks(&all_tasks, first(TASKS)),
        store.list_actions(&all_actions, first(ACTIONS)),
        store.latest_events(EVENTS),
        store.open_task_counts(None),
        live.ares.health(),
    );
    let (agents, open) = (agents?, open?);
    let now = live.ares.now();
    let mut events = events?;
    events.reverse();
    Ok(Json(Dashboard {
        generated_at: now,
        agents_truncated: agents.next_cursor.is_some(),
        agents: agents
            .items
            .into_iter()
            .map(|a| {
                let count = open.get(&a.id).copied().unwrap_or(0);
                agent_row(a, count, now)
            })
            .collect(),
        tasks: tasks?.items.into_iter().map(task_row).collect(),
        actions: actions?.items,
        health,
        events: events
            .into_iter()
            .map(|(seq, event)| EventRow { seq, event })
            .collect(),
    }))
}

/// An agent's reliability after each verdict.
#[derive(Debug, Serialize)]
pub struct Trend {
    pub agent_id: Uuid,
    pub agent_name: String,
    /// Oldest first.
    pub points: Vec<TrendPoint>,
}

#[derive(Debug, Serialize)]
pub struct TrendPoint {
    pub at: DateTime<Utc>,
    pub reliability_score: f64,
    pub success_rate: f64,
    pub quality_score: f64,
    pub verifications: i64,
}

/// `GET /api/agents/{id}/trend?since=…&limit=…`
pub async fn trend(
    State(live): State<Live>,
    Path(id): Path<String>,
    params: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Trend>, Refusal> {
    let params = query(params, &["since", "limit"])?;
    let agent_id = Uuid::parse_str(&id).map_err(|_| {
        Refusal::bad_parameter("id", &format!("expected an agent id (a UUID), got {id:?}"))
    })?;
    let since = match params.get("since") {
        None => DateTime::<Utc>::UNIX_EPOCH,
        Some(value) => crate::service::parse_time("since", value)?,
    };
    let limit = match params.get("limit").map(|l| l.parse::<i64>()) {
        None => TREND_POINTS,
        Some(Ok(l)) if (1..=TREND_POINTS_MAX).contains(&l) => l,
        Some(_) => {
            return Err(Refusal::bad_parameter(
                "limit",
                &format!("expected an integer from 1 to {TREND_POINTS_MAX}"),
            ));
        }
    };
    Ok(Json(trend_of(&live, agent_id, since, limit).await?))
}

#[tracing::instrument(skip(live))]
async fn trend_of(
    live: &Live,
    agent_id: Uuid,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Trend, AresError> {
    let agent = live
        .ares
        .store
        .agent(agent_id)
        .await?
        .ok_or_else(|| AresError::not_found("agent", agent_id))?;
    let history = live
        .ares
        .store
        .reliability_history(agent_id, Window::All, since, limit)
        .await?;
    Ok(Trend {
        agent_id,
        agent_name: agent.name,
        points: history
            .into_iter()
            .map(|r| TrendPoint {
                at: r.computed_at,
                reliability_score: r.reliability_score,
                success_rate: r.success_rate,
                quality_score: r.quality_score,
                verifications: r.verifications,
            })
            .collect(),
    })
}
