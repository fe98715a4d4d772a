//! Minting, listing and revoking API keys (admin only; the MCP layer checks that).

use super::Ares;
use crate::auth::{self, ApiKey, Role};
use crate::error::{AresError, AresResult};
use crate::store::WriteBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// admin, agent or observer.
    pub role: Role,
    /// For the `agent` role: the agent the key acts as (required then, refused otherwise).
    #[serde(default)]
    pub agent_id: Option<Uuid>,
    /// A label for people, e.g. "ci-runner".
    #[serde(default)]
    pub name: Option<String>,
}

/// A new key. `key` is shown this once; ARES keeps only a hash of it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// The bearer token: `Authorization: Bearer <key>`.
    pub key: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListApiKeys {}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ApiKeyList {
    pub keys: Vec<ApiKey>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeApiKey {
    /// The key's id (the part after `ares_`, before the second `_`).
    pub key_id: String,
}

/// A key as shown to people: everything but the secret's hash.
fn public(mut key: ApiKey) -> ApiKey {
    key.secret_hash.clear();
    key
}

impl Ares {
    #[tracing::instrument(skip_all, fields(role = req.role.as_str()))]
    pub async fn create_api_key(&self, req: CreateApiKey) -> AresResult<CreatedApiKey> {
        match (req.role, req.agent_id) {
            (Role::Agent, None) => {
                return Err(AresError::invalid(
                    "agent_id",
                    "the agent role needs the agent the key acts as",
                ));
            }
            (Role::Agent, Some(id)) => {
                self.agent(id).await?;
            }
            (_, Some(_)) => {
                return Err(AresError::invalid(
                    "agent_id",
                    "only agent keys are bound to an agent",
                ));
            }
            (_, None) => {}
        }
        if let Some(name) = &req.name {
            crate::agents::validate_name("name", name)?;
        }
        let minted = auth::mint(req.role, req.agent_id, req.name.clone(), self.now());
        let batch = WriteBatch {
            api_keys: vec![minted.key.clone()],
            ..Default::default()
        };
        self.commit(batch).await?;
        Ok(CreatedApiKey {
            api_key: public(minted.key),
            key: minted.secret_text,
        })
    }

    pub async fn list_api_keys(&self, _req: ListApiKeys) -> AresResult<ApiKeyList> {
        let keys = self.store.list_api_keys().await?;
        Ok(ApiKeyList {
            keys: keys.into_iter().map(public).collect(),
        })
    }

    #[tracing::instrument(skip_all, fields(key_id = %req.key_id))]
    pub async fn revoke_api_key(&self, req: RevokeApiKey) -> AresResult<ApiKey> {
        let mut key = self
            .store
            .api_key(&req.key_id)
            .await?
            .ok_or_else(|| AresError::not_found("API key", &req.key_id))?;
        if key.is_revoked() {
            return Err(AresError::refused(format!(
                "API key {} is already revoked",
                key.id
            )));
        }
        key.revoked_at = Some(self.now());
        let batch = WriteBatch {
            api_keys: vec![key.clone()],
            ..Default::default()
        };
        self.commit(batch).await?;
        self.key_cache.forget(&key.id);
        Ok(public(key))
    }
}
