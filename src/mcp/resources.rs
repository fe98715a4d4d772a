//! Live MCP resources: what ARES knows, readable as JSON and subscribable.
//!
//! Each resource is served by the tool that answers the same question, under the same
//! access rules (an agent key reads only its own agent and tasks), so a resource never
//! shows more than the tools would. Changes reach subscribers from the event bus: through
//! `resources/subscribe` on handshake-era sessions and through `subscriptions/listen` on
//! per-request (2026-07-28) clients.

use super::access;
use crate::auth::Caller;
use crate::events::Event;
use crate::service::Ares;
use rmcp::model::{
    ErrorCode, ErrorData, JsonObject, ReadResourceResult, Resource, ResourceContents,
    ResourceTemplate,
};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const JSON: &str = "application/json";
/// The MCP error code for a resource that does not exist.
const RESOURCE_NOT_FOUND: ErrorCode = ErrorCode(-32002);

/// A resource ARES serves, parsed from its URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uri {
    Agents,
    Agent(Uuid),
    Task(Uuid),
    EnforcementActions,
    SystemMetrics,
    ReliabilityReport,
    Events,
}

impl Uri {
    pub fn parse(uri: &str) -> Result<Self, ErrorData> {
        let id = |rest: &str, what: &str| {
            Uuid::parse_str(rest).map_err(|_| {
                ErrorData::invalid_params(
                    format!("uri: expected ares://{what}/{{id}} with a UUID id (got {uri:?})"),
                    Some(json!({ "field": "uri" })),
                )
            })
        };
        Ok(match uri {
            "ares://agents" => Self::Agents,
            "ares://enforcement/actions" => Self::EnforcementActions,
            "ares://system/metrics" => Self::SystemMetrics,
            "ares://reports/reliability" => Self::ReliabilityReport,
            "ares://events" => Self::Events,
            _ => {
                if let Some(rest) = uri.strip_prefix("ares://agents/") {
                    Self::Agent(id(rest, "agents")?)
                } else if let Some(rest) = uri.strip_prefix("ares://tasks/") {
                    Self::Task(id(rest, "tasks")?)
                } else {
                    return Err(ErrorData::new(
                        RESOURCE_NOT_FOUND,
                        format!(
                            "no resource {:?}; ARES serves {} and the templates {}",
                            truncate(uri),
                            FIXED.map(|(u, ..)| u).join(", "),
                            TEMPLATES.map(|(u, ..)| u).join(", ")
                        ),
                        Some(json!({ "uri": truncate(uri) })),
                    ));
                }
            }
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// The resources with fixed URIs: uri, name, description.
const FIXED: [(&str, &str, &str); 5] = [
    (
        "ares://agents",
        "agents",
        "Every agent with its status, limits and reliability score.",
    ),
    (
        "ares://enforcement/actions",
        "enforcement-actions",
        "The latest enforcement actions, newest first, each with its reason and numbers.",
    ),
    (
        "ares://system/metrics",
        "system-metrics",
        "Health of ARES and its dependencies, with counts of agents and open tasks.",
    ),
    (
        "ares://reports/reliability",
        "reliability-report",
        "The reliability report: every agent's score, rates and response times.",
    ),
    (
        "ares://events",
        "events",
        "The latest events (event_type, timestamp, agent_id, data, metadata.correlation_id).",
    ),
];

/// The resource templates: uri template, name, description.
const TEMPLATES: [(&str, &str, &str); 2] = [
    (
        "ares://agents/{id}",
        "agent",
        "One agent with its reliability over all time: scores, baselines, anomalies.",
    ),
    (
        "ares://tasks/{id}",
        "task",
        "One task with its evidence chain, verification history and snapshots.",
    ),
];

pub fn list() -> Vec<Resource> {
    FIXED
        .iter()
        .map(|(uri, name, description)| {
            Resource::new(*uri, *name)
                .with_description(*description)
                .with_mime_type(JSON)
        })
        .collect()
}

pub fn templates() -> Vec<ResourceTemplate> {
    TEMPLATES
        .iter()
        .map(|(uri, name, description)| {
            ResourceTemplate::new(*uri, *name)
                .with_description(*description)
                .with_mime_type(JSON)
        })
        .collect()
}

/// Reads `uri` as `caller` would see it through the tools.
pub async fn read(
    ares: &Ares,
    caller: &Caller,
    uri: &str,
) -> Result<ReadResourceResult, ErrorData> {
    let body = match Uri::parse(uri)? {
        Uri::Agents => tool(ares, caller, "list_agents", json!({ "limit": 500 })).await?,
        Uri::Agent(id) => {
            let args = json!({ "agent_id": id });
            let agent = tool(ares, caller, "get_agent", args.clone()).await?;
            let reliability = tool(ares, caller, "get_reliability", args).await?;
            json!({ "agent": agent, "reliability": reliability })
        }
        Uri::Task(id) => tool(ares, caller, "get_task", json!({ "task_id": id })).await?,
        Uri::EnforcementActions => {
            tool(
                ares,
                caller,
                "list_enforcement_actions",
                json!({ "limit": 100 }),
            )
            .await?
        }
        Uri::SystemMetrics => system_metrics(ares, caller).await?,
        Uri::ReliabilityReport => {
            tool(
                ares,
                caller,
                "get_report",
                json!({ "report": "reliability" }),
            )
            .await?
        }
        Uri::Events => events(ares, caller).await?,
    };
    let text = serde_json::to_string_pretty(&body)
        .map_err(|e| ErrorData::internal_error(format!("could not encode {uri}: {e}"), None))?;
    Ok(ReadResourceResult::new(vec![
        ResourceContents::TextResourceContents {
            uri: uri.to_string(),
            mime_type: Some(JSON.into()),
            text,
            meta: None,
        },
    ]))
}

/// Runs `name` for `caller` and returns its structured answer; a refusal or a missing
/// record is an error naming it.
async fn tool(ares: &Ares, caller: &Caller, name: &str, args: Value) -> Result<Value, ErrorData> {
    let Value::Object(mut args) = args else {
        unreachable!("resource arguments are objects")
    };
    access::check(ares, caller, name, &mut args)
        .await
        .map_err(|refusal| ErrorData::invalid_request(refusal, None))?;
    let result = super::tools::call(ares, name, Some(args)).await?;
    if result.is_error == Some(true) {
        return Err(refusal(&result));
    }
    Ok(result.structured_content.unwrap_or(Value::Null))
}

/// A tool's refusal as a resource error: a missing record is "resource not found".
fn refusal(result: &rmcp::model::CallToolResult) -> ErrorData {
    let message = result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ");
    let code = if message.contains(" not found: ") {
        RESOURCE_NOT_FOUND
    } else {
        ErrorCode::INVALID_REQUEST
    };
    ErrorData::new(code, message, None)
}

async fn system_metrics(ares: &Ares, caller: &Caller) -> Result<Value, ErrorData> {
    let health = tool(ares, caller, "health", json!({})).await?;
    Ok(json!({
        "health": health,
        "store_pool": ares.store.pool_usage(),
        "event_listeners": ares.events.listeners(),
    }))
}

async fn events(ares: &Ares, caller: &Caller) -> Result<Value, ErrorData> {
    // Events describe every agent: the right to list enforcement actions (narrowed to its
    // own agent for an agent key) is the right to read them.
    let mut args = JsonObject::new();
    access::check(ares, caller, "list_enforcement_actions", &mut args)
        .await
        .map_err(|refusal| ErrorData::invalid_request(refusal, None))?;
    let own = args
        .get("agent_id")
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok());
    let latest =
        ares.store
            .latest_events(200)
            .await
            .map_err(|e| match super::errors::to_mcp(e.into()) {
                Ok(result) => refusal(&result),
                Err(error) => error,
            })?;
    let events: Vec<Event> = latest
        .into_iter()
        .map(|(_, e)| e)
        .filter(|e| own.is_none() || e.agent_id == own)
        .rev()
        .take(100)
        .collect();
    Ok(json!({ "events": events }))
}

/// One session's resource subscriptions (`resources/subscribe`), and the task that tells
/// the client when one of them changes. The task stops when the session ends.
#[derive(Debug, Default)]
pub struct Subscriptions {
    uris: Mutex<HashSet<String>>,
    forwarding: Mutex<Option<CancellationToken>>,
    /// Receivers opened for `subscriptions/listen` requests about to be acknowledged.
    listening: Mutex<Vec<tokio::sync::broadcast::Receiver<Arc<Event>>>>,
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        if let Some(stop) = self.forwarding.lock().map(|mut f| f.take()).ok().flatten() {
            stop.cancel();
        }
    }
}

impl Subscriptions {
    pub fn add(self: &Arc<Self>, ares: &Ares, uri: String, peer: rmcp::Peer<rmcp::RoleServer>) {
        self.uris.lock().expect("subscriptions lock").insert(uri);
        let mut forwarding = self.forwarding.lock().expect("subscriptions lock");
        if forwarding.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        *forwarding = Some(stop.clone());
        // The task holds only a weak reference: the session's end drops the set and stops it.
        let subscriptions = Arc::downgrade(self);
        let events = ares.events.subscribe();
        tokio::spawn(async move {
            let subscribed = || -> Option<Vec<String>> {
                let subscriptions = subscriptions.upgrade()?;
                let uris = subscriptions.uris.lock().ok()?;
                Some(uris.iter().cloned().collect())
            };
            forward(events, stop, subscribed, |uri| {
                let peer = peer.clone();
                async move {
                    peer.notify_resource_updated(
                        rmcp::model::ResourceUpdatedNotificationParam::new(uri),
                    )
                    .await
                    .is_ok()
                }
            })
            .await;
        });
    }

    /// Starts receiving events for a `subscriptions/listen` request before it is
    /// acknowledged; [`Self::take_listening`] hands the receiver to its `listen`.
    pub fn listening(&self, ares: &Ares) {
        self.listening
            .lock()
            .expect("subscriptions lock")
            .push(ares.events.subscribe());
    }

    /// The receiver [`Self::listening`] opened (a fresh one should there be none). Listens
    /// acknowledged at the same moment may swap receivers; each was opened before either
    /// acknowledgment, so neither misses a change.
    pub fn take_listening(&self, ares: &Ares) -> tokio::sync::broadcast::Receiver<Arc<Event>> {
        self.listening
            .lock()
            .expect("subscriptions lock")
            .pop()
            .unwrap_or_else(|| ares.events.subscribe())
    }

    pub fn remove(&self, uri: &str) -> bool {
        self.uris.lock().expect("subscriptions lock").remove(uri)
    }
}

/// Tells `notify` about every subscribed resource the events change, until `stop` fires,
/// `subscribed` says the subscriber is gone (None) or a notification cannot be delivered.
/// Events that arrive together are coalesced: each changed resource is told once; after
/// missed events (a slow subscriber), every subscribed resource is told.
pub async fn forward<S, N, F>(
    mut events: tokio::sync::broadcast::Receiver<Arc<Event>>,
    stop: CancellationToken,
    subscribed: S,
    notify: N,
) where
    S: Fn() -> Option<Vec<String>>,
    N: Fn(String) -> F,
    F: std::future::Future<Output = bool>,
{
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            received = events.recv() => received,
        };
        let mut changed = BTreeSet::new();
        let mut lagged = false;
        match first {
            Ok(event) => changed.extend(event.resources()),
            Err(RecvError::Lagged(_)) => lagged = true,
            Err(RecvError::Closed) => return,
        }
        loop {
            match events.try_recv() {
                Ok(event) => changed.extend(event.resources()),
                Err(TryRecvError::Lagged(_)) => lagged = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Closed) => return,
            }
        }
        let Some(uris) = subscribed() else { return };
        for uri in uris {
            if (lagged || changed.contains(&uri)) && !notify(uri).await {
                return;
            }
        }
    }
}
