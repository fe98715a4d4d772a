//! Registering, reading, changing and deregistering agents.

use super::{Ares, page};
use crate::agents::{self as rules, Agent, AgentStatus};
use crate::error::{AresError, AresResult};
use crate::store::{AgentFilter, StoreError, TaskSnapshot, WriteBatch};
use crate::tasks::TaskStatus;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// Unique name of the agent, 1-128 characters.
    pub name: String,
    /// What the agent can do, e.g. ["rust", "code_review"]; tasks require a subset.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Base64 of the agent's 32-byte ed25519 public key. When set, every evidence
    /// submission must be signed with the matching private key.
    #[serde(default)]
    pub public_key: Option<String>,
    /// Free-form configuration object kept with the agent.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub configuration: Option<Value>,
    /// How many open tasks the agent takes at once (1-1000, default 5).
    #[serde(default)]
    pub max_concurrent_tasks: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetAgent {
    /// The agent's id. Give this or `name`.
    #[serde(default)]
    pub agent_id: Option<Uuid>,
    /// The agent's unique name. Give this or `agent_id`.
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListAgents {
    /// Only agents in this status.
    #[serde(default)]
    pub status: Option<AgentStatus>,
    /// Only agents with this capability.
    #[serde(default)]
    pub capability: Option<String>,
    /// Page size, 1-500 (default 50).
    #[serde(default)]
    pub limit: Option<i64>,
    /// `next_cursor` from the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    pub agent_id: Uuid,
    /// Replaces the agent's capabilities.
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
    /// Replaces the agent's configuration object.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Map<String, Value>>")]
    pub configuration: Option<Value>,
    /// Replaces the agent's ed25519 public key (base64 of 32 bytes).
    #[serde(default)]
    pub public_key: Option<String>,
    /// Replaces the agent's concurrency limit (1-1000).
    #[serde(default)]
    pub max_concurrent_tasks: Option<i32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeregisterAgent {
    pub agent_id: Uuid,
    /// Why the agent leaves; kept in its history.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Deregistered {
    pub agent: Agent,
    /// Open tasks returned to `pending` for someone else.
    pub released_tasks: Vec<Uuid>,
}

impl Ares {
    #[tracing::instrument(skip_all, fields(name = %req.name))]
    pub async fn register_agent(&self, req: RegisterAgent) -> AresResult<Agent> {
        let name = rules::validate_name("name", &req.name)?;
        let capabilities = rules::validate_capabilities("capabilities", &req.capabilities)?;
        let public_key = req
            .public_key
            .as_deref()
            .map(|k| rules::validate_public_key("public_key", k))
            .transpose()?;
        let configuration = rules::validate_configuration("configuration", req.configuration)?;
        let max = rules::validate_max_concurrent(
            "max_concurrent_tasks",
            req.max_concurrent_tasks.unwrap_or(5),
        )?;
        let now = self.now();
        let agent = Agent {
            id: Uuid::now_v7(),
            name,
            capabilities,
            public_key,
            configuration,
            max_concurrent_tasks: max,
            status: AgentStatus::Active,
            throttle_limit: None,
            suspended_until: None,
            reliability_score: crate::reliability::score(0, 0, 0.0, 0, 0),
            on_probation: false,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        let batch = WriteBatch {
            agents: vec![agent.clone()],
            ..Default::default()
        };
        match self.commit(batch).await {
            Err(StoreError::Duplicate("agents.name")) => Err(AresError::refused(format!(
                "an agent named {:?} already exists; names are unique",
                agent.name
            ))),
            other => other.map(|()| agent).map_err(Into::into),
        }
    }

    pub async fn get_agent(&self, req: GetAgent) -> AresResult<Agent> {
        match (req.agent_id, req.name) {
            (Some(id), _) => self.agent(id).await,
            (None, Some(name)) => self
                .store
                .agent_by_name(name.trim())
                .await?
                .ok_or_else(|| AresError::not_found("agent", format!("named {name:?}"))),
            (None, None) => Err(AresError::invalid(
                "agent_id",
                "expected `agent_id` or `name`",
            )),
        }
    }

    /// The agent with this id, or a not-found error naming it. Cached: a write path that
    /// changes the agent commits with its version checked, and a conflict empties the entry.
    pub async fn agent(&self, id: Uuid) -> AresResult<Agent> {
        let entry = crate::cache::Entry::Agent(id);
        self.cache
            .get_or_load(entry, self.now(), || async {
                self.store
                    .agent(id)
                    .await?
                    .ok_or_else(|| AresError::not_found("agent", id))
            })
            .await
    }

    pub async fn list_agents(&self, req: ListAgents) -> AresResult<AgentList> {
        if let Some(cap) = &req.capability {
            rules::validate_capability("capability", cap)?;
        }
        let page = page(req.limit, req.cursor.as_deref())?;
        let filter = AgentFilter {
            status: req.status,
            capability: req.capability,
        };
        let listed = self.store.list_agents(&filter, page).await?;
        Ok(AgentList {
            agents: listed.items,
            next_cursor: listed.next_cursor.map(|c| c.to_string()),
        })
    }

    #[tracing::instrument(skip_all, fields(agent_id = %req.agent_id))]
    pub async fn update_agent(&self, req: UpdateAgent) -> AresResult<Agent> {
        let capabilities = req
            .capabilities
            .as_deref()
            .map(|c| rules::validate_capabilities("capabilities", c))
            .transpose()?;
        let public_key = req
            .public_key
            .as_deref()
            .map(|k| rules::validate_public_key("public_key", k))
            .transpose()?;
        let configuration = req
            .configuration
            .clone()
            .map(|c| rules::validate_configuration("configuration", Some(c)))
            .transpose()?;
        let max = req
            .max_concurrent_tasks
            .map(|n| rules::validate_max_concurrent("max_concurrent_tasks", n))
            .transpose()?;
        self.retrying(|| async {
            let mut agent = self.agent(req.agent_id).await?;
            if agent.status == AgentStatus::Deregistered {
                return Err(AresError::refused(format!(
                    "agent {} is deregistered; its record can no longer change",
                    agent.id
                )));
            }
            if let Some(c) = &capabilities {
                agent.capabilities = c.clone();
            }
            if let Some(k) = &public_key {
                agent.public_key = Some(k.clone());
            }
            if let Some(c) = &configuration {
                agent.configuration = c.clone();
            }
            if let Some(m) = max {
                agent.max_concurrent_tasks = m;
            }
            agent.updated_at = self.now();
            agent.version += 1;
            let batch = WriteBatch {
                agents: vec![agent.clone()],
                ..Default::default()
            };
            self.commit(batch).await?;
            Ok(agent)
        })
        .await
    }

    /// Marks the agent deregistered (its history stays) and returns its open tasks to the
    /// pool.
    #[tracing::instrument(skip_all, fields(agent_id = %req.agent_id))]
    pub async fn deregister_agent(&self, req: DeregisterAgent) -> AresResult<Deregistered> {
        self.retrying(|| async {
            let mut agent = self.agent(req.agent_id).await?;
            if agent.status == AgentStatus::Deregistered {
                return Err(AresError::refused(format!(
                    "agent {} is already deregistered",
                    agent.id
                )));
            }
            let now = self.now();
            agent.status = AgentStatus::Deregistered;
            agent.updated_at = now;
            agent.version += 1;
            let mut batch = WriteBatch::default();
            let mut released = Vec::new();
            for mut task in self.store.open_tasks_of(agent.id).await? {
                task.advance(TaskStatus::Pending, now)
                    .or_else(|_| task.advance(TaskStatus::RolledBack, now))?;
                task.version += 1;
                released.push(task.id);
                batch.task_snapshots.push(TaskSnapshot {
                    task_id: task.id,
                    status: task.status,
                    task: task.clone(),
                    reason: format!(
                        "released: agent {} deregistered{}",
                        agent.name,
                        req.reason
                            .as_deref()
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    ),
                    created_at: now,
                });
                batch.tasks.push(task);
            }
            batch.agents.push(agent.clone());
            self.commit(batch).await?;
            Ok(Deregistered {
                agent,
                released_tasks: released,
            })
        })
        .await
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateAgentKey {
    pub agent_id: Uuid,
    /// The new ed25519 public key, base64 of 32 bytes.
    pub new_public_key: String,
    /// A value never used before by this agent.
    pub nonce: String,
    /// When it was signed, RFC 3339, within 5 minutes of now.
    pub timestamp: String,
    /// Base64 ed25519 signature by the agent's CURRENT key over the RFC 8785 canonical JSON
    /// of `{agent_id, new_public_key, nonce, timestamp}`.
    pub signature: String,
}

impl Ares {
    /// Key rotation authorised by the old key (admins can also set a key with
    /// `update_agent`). From then on only the new key verifies new submissions.
    #[tracing::instrument(skip_all, fields(agent_id = %req.agent_id))]
    pub async fn rotate_agent_key(&self, req: RotateAgentKey) -> AresResult<Agent> {
        let new_key = rules::validate_public_key("new_public_key", &req.new_public_key)?;
        self.retrying(|| async {
            let now = self.now();
            let mut agent = self.agent(req.agent_id).await?;
            agent.ensure_available(now)?;
            let Some(old_key) = agent.public_key.clone() else {
                return Err(AresError::refused(format!(
                    "agent {} has no key to rotate; an admin sets the first one with update_agent",
                    agent.name
                )));
            };
            let signed_at = super::parse_time("timestamp", &req.timestamp)?;
            if (now - signed_at).abs() > super::evidence::MAX_CLOCK_SKEW {
                return Err(AresError::invalid(
                    "timestamp",
                    "expected a time within 5 minutes of the server's clock",
                ));
            }
            let message = serde_json_canonicalizer::to_vec(&serde_json::json!({
                "agent_id": req.agent_id,
                "new_public_key": req.new_public_key,
                "nonce": req.nonce,
                "timestamp": req.timestamp,
            }))
            .map_err(|e| AresError::Internal(e.into()))?;
            super::evidence::verify_signature(&old_key, &message, &req.signature)?;
            let scope = format!("nonce:{}", agent.id);
            if req.nonce.is_empty() || req.nonce.len() > 128 {
                return Err(AresError::invalid("nonce", "expected 1-128 characters"));
            }
            if self.store.idempotency(&scope, &req.nonce).await?.is_some() {
                return Err(AresError::invalid(
                    "nonce",
                    "this nonce was already used by this agent (replay refused)",
                ));
            }
            agent.public_key = Some(new_key.clone());
            agent.updated_at = now;
            agent.version += 1;
            let batch = WriteBatch {
                agents: vec![agent.clone()],
                idempotency: vec![crate::store::IdempotencyRecord {
                    scope,
                    key: req.nonce.clone(),
                    fingerprint: String::new(),
                    response: Value::Null,
                    created_at: now,
                }],
                ..Default::default()
            };
            self.commit(batch).await?;
            Ok(agent)
        })
        .await
    }
}
