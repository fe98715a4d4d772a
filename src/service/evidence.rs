//! Submitting evidence: who may submit, the signature check with replay protection, and the
//! append to the task's evidence chain.

use super::{Ares, parse_time};
use crate::error::{AresError, AresResult};
use crate::evidence::{self, Evidence, EvidenceItem, GENESIS};
use crate::store::{IdempotencyRecord, WriteBatch};
use crate::tasks::TaskStatus;
use base64::Engine;
use chrono::Duration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// How far a signed submission's timestamp may be from ARES's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitEvidence {
    pub task_id: Uuid,
    /// The agent the task is assigned to.
    pub agent_id: Uuid,
    /// What the agent did: items tagged by `kind` (diff, test_results, metrics, file,
    /// documentation, api_interaction, command, screenshot, log).
    pub evidence: Vec<EvidenceItem>,
    /// For signed submissions: a value never used before by this agent.
    #[serde(default)]
    pub nonce: Option<String>,
    /// For signed submissions: when it was signed, RFC 3339, within 5 minutes of now.
    #[serde(default)]
    pub timestamp: Option<String>,
    /// Base64 ed25519 signature over the RFC 8785 canonical JSON of
    /// `{agent_id, task_id, evidence, nonce, timestamp}`. Required when the agent has a
    /// public key.
    #[serde(default)]
    pub signature: Option<String>,
    /// Makes retries safe: a retry with the same key and request returns the first receipt.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The `evidence` argument exactly as sent, which is what the agent signed.
    #[serde(skip)]
    #[schemars(skip)]
    pub raw_evidence: Option<serde_json::Value>,
}

/// What ARES recorded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Receipt {
    pub evidence: Evidence,
    /// The task's state now (`submitted`).
    pub task_status: TaskStatus,
    /// Whether a signature was checked and held.
    pub signature_verified: bool,
}

/// The bytes an agent signs: RFC 8785 canonical JSON of the submission's identity.
pub fn signed_message(req: &SubmitEvidence) -> Vec<u8> {
    let evidence = match &req.raw_evidence {
        Some(raw) => raw.clone(),
        None => json!(req.evidence),
    };
    let body = json!({
        "agent_id": req.agent_id,
        "task_id": req.task_id,
        "evidence": evidence,
        "nonce": req.nonce,
        "timestamp": req.timestamp,
    });
    serde_json_canonicalizer::to_vec(&body).expect("JSON values serialize")
}

/// Strict ed25519 verification of `signature` (base64) by `public_key` (base64).
pub fn verify_signature(public_key: &str, message: &[u8], signature: &str) -> AresResult<()> {
    let engine = base64::engine::general_purpose::STANDARD;
    let key: [u8; 32] = engine
        .decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| AresError::Internal(anyhow::anyhow!("stored public key is malformed")))?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|e| AresError::Internal(e.into()))?;
    let sig: [u8; 64] = engine
        .decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            AresError::invalid(
                "signature",
                "expected base64 of a 64-byte ed25519 signature",
            )
        })?;
    key.verify_strict(message, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| {
            AresError::invalid(
                "signature",
                "the signature does not verify against the agent's public key",
            )
        })
}

impl Ares {
    #[tracing::instrument(skip_all, fields(task_id = %req.task_id, agent_id = %req.agent_id))]
    pub async fn submit_evidence(&self, req: SubmitEvidence) -> AresResult<Receipt> {
        evidence::validate_items(&req.evidence)?;
        let scope = format!("submit_evidence:{}", req.agent_id);
        let _turn = self.task_locks.lock(req.task_id).await;
        self.idempotent(&scope, req.idempotency_key.as_deref(), &req, || async {
            let now = self.now();
            // The task and its chain's last link in one read: a submission costs the same
            // however long the chain is.
            let (mut task, last) = self
                .store
                .task_with_last_evidence(req.task_id)
                .await?
                .ok_or_else(|| AresError::not_found("task", req.task_id))?;
            let agent = self.agent(req.agent_id).await?;
            agent.ensure_available(now)?;
            super::tasks::ensure_holder(&task, &agent)?;
            let mut batch = WriteBatch::default();
            let signature_verified = match &agent.public_key {
                Some(key) => {
                    self.check_signed(&req, key, &mut batch).await?;
                    true
                }
                None if req.signature.is_some() => {
                    return Err(AresError::invalid(
                        "signature",
                        format!(
                            "agent {} has no registered public key; register one with update_agent to sign evidence",
                            agent.name
                        ),
                    ));
                }
                None if self.require_signatures => {
                    return Err(AresError::invalid(
                        "signature",
                        format!(
                            "this server requires signed evidence and agent {} has no public key; register one with update_agent",
                            agent.name
                        ),
                    ));
                }
                None => false,
            };
            task.advance(TaskStatus::Submitted, now)?;
            task.version += 1;
            let (prev, index) = match last {
                Some(e) => (e.chain_digest, e.chain_index + 1),
                None => (GENESIS.to_string(), 0),
            };
            let id = Uuid::now_v7();
            let content = evidence::content_digest(&req.evidence);
            let record = Evidence {
                id,
                task_id: task.id,
                agent_id: agent.id,
                items: req.evidence.clone(),
                chain_digest: evidence::chain_digest(&prev, &content, id, agent.id, index),
                content_digest: content,
                chain_index: index,
                prev_digest: prev,
                signature: req.signature.clone(),
                idempotency_key: req.idempotency_key.clone(),
                created_at: now,
            };
            batch.evidence.push(record.clone());
            batch
                .task_snapshots
                .push(super::tasks::snapshot(&task, "evidence submitted", now));
            batch.tasks.push(task.clone());
            Ok((
                Receipt {
                    evidence: record,
                    task_status: task.status,
                    signature_verified,
                },
                batch,
            ))
        })
        .await
    }

    /// Checks a signed submission and reserves its nonce in `batch`.
    async fn check_signed(
        &self,
        req: &SubmitEvidence,
        key: &str,
        batch: &mut WriteBatch,
    ) -> AresResult<()> {
        let (Some(nonce), Some(timestamp), Some(signature)) =
            (&req.nonce, &req.timestamp, &req.signature)
        else {
            let missing = [
                ("signature", req.signature.is_none()),
                ("nonce", req.nonce.is_none()),
                ("timestamp", req.timestamp.is_none()),
            ]
            .into_iter()
            .find(|(_, m)| *m)
            .map_or("signature", |(f, _)| f);
            return Err(AresError::invalid(
                missing,
                "this agent has a public key: submissions must carry signature, nonce and timestamp",
            ));
        };
        if nonce.is_empty() || nonce.len() > 128 {
            return Err(AresError::invalid("nonce", "expected 1-128 characters"));
        }
        let signed_at = parse_time("timestamp", timestamp)?;
        let now = self.now();
        if (now - signed_at).abs() > MAX_CLOCK_SKEW {
            return Err(AresError::invalid(
                "timestamp",
                format!(
                    "expected a time within 5 minutes of the server's clock ({})",
                    now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            ));
        }
        verify_signature(key, &signed_message(req), signature)?;
        let scope = format!("nonce:{}", req.agent_id);
        if self.store.idempotency(&scope, nonce).await?.is_some() {
            return Err(AresError::invalid(
                "nonce",
                "this nonce was already used by this agent (replay refused)",
            ));
        }
        batch.idempotency.push(IdempotencyRecord {
            scope,
            key: nonce.clone(),
            fingerprint: String::new(),
            response: serde_json::Value::Null,
            created_at: now,
        });
        Ok(())
    }
}
