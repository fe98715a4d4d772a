//! Reading and verifying the audit log, and signing checkpoints of it. The log itself is
//! written by [`Ares::commit`], one entry per change, in the change's own transaction.

use super::Ares;
use crate::audit::{AuditRecord, Broken, ChainWalker, Checkpoint, Classifier};
use crate::error::{AresError, AresResult};
use crate::store::StoreError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Rows read per round trip while walking the log.
const WALK_PAGE: i64 = 1_000;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetAuditLog {
    /// Only entries after this position: absent (or 0) for the start, else the previous
    /// page's `next_after`.
    #[serde(default)]
    pub after: Option<i64>,
    /// Page size, 1-500 (default 100).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// A page of the audit log, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditLogPage {
    pub entries: Vec<AuditRecord>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyAuditLog {
    /// A checkpoint kept elsewhere (from `checkpoint_audit_log` or `ares audit checkpoint`)
    /// to check the log against, besides the ones ARES stored.
    #[serde(default)]
    pub checkpoint: Option<Checkpoint>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckpointAuditLog {}

/// The verdict on the audit log, the evidence chains and the checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditVerification {
    /// True when the audit log, every evidence chain and every checkpoint check out.
    pub intact: bool,
    /// Entries in the audit log.
    pub entries: i64,
    /// The hash of the last intact entry (64 zeros for an empty log).
    pub head_hash: String,
    /// Tasks whose evidence chain was checked.
    pub evidence_chains: i64,
    /// The first audit entry that was edited, removed or reordered, or where the log stops
    /// matching a signed checkpoint.
    pub first_broken: Option<Broken>,
    /// Tasks whose evidence chain does not verify.
    pub broken_evidence: Vec<BrokenEvidence>,
    pub checkpoint: CheckpointReport,
}

/// An evidence chain that does not verify.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BrokenEvidence {
    pub task_id: Uuid,
    /// The first bad link's `chain_index` (absent when the chain could not be read).
    pub index: Option<i64>,
    pub detail: String,
}

/// What the log was checked against.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckpointReport {
    /// ARES's checkpoint public key (base64); stored checkpoints it signed are trusted.
    pub public_key: String,
    /// Trusted stored checkpoints the log was checked against.
    pub checked: i64,
    /// The newest of them.
    pub latest: Option<Checkpoint>,
    /// Stored checkpoints signed by another key (an earlier key): not relied on.
    pub untrusted: i64,
    /// Stored checkpoints that name ARES's key but whose signature does not hold.
    pub forged: i64,
    /// Whether the log matches the checkpoint passed in (absent when none was).
    pub supplied_matches: Option<bool>,
}

impl Ares {
    #[tracing::instrument(skip_all, fields(after = ?req.after, limit = ?req.limit))]
    pub async fn get_audit_log(&self, req: GetAuditLog) -> AresResult<AuditLogPage> {
        let limit = req.limit.unwrap_or(100);
        if !(1..=500).contains(&limit) {
            return Err(AresError::invalid(
                "limit",
                "expected an integer from 1 to 500",
            ));
        }
        let after = req.after.unwrap_or(0);
        if after < 0 {
            return Err(AresError::invalid(
                "after",
                "expected 0 or a position in the log",
            ));
        }
        let mut entries = self.store.audit_log(Some(after), limit + 1).await?;
        let more = entries.len() as i64 > limit;
        entries.truncate(limit as usize);
        let next_after = if more {
            entries.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(AuditLogPage {
            entries,
            next_after,
        })
    }

    /// Signs a checkpoint of the log's current head and stores it; when the newest stored
    /// checkpoint already covers this head under ARES's key, returns that one instead.
    #[tracing::instrument(skip_all)]
    pub async fn checkpoint_audit_log(&self) -> AresResult<Checkpoint> {
        let (length, head_hash) = self.store.audit_head().await?;
        if let Some(latest) = self.store.latest_checkpoint().await?
            && latest.length == length
            && latest.head_hash == head_hash
            && latest.public_key == self.audit_key.public_key()
            && latest.verify_signature().is_ok()
        {
            return Ok(latest);
        }
        let checkpoint = self.audit_key.sign(length, &head_hash, self.now());
        self.store.record_checkpoint(&checkpoint).await?;
        tracing::info!(length, head_hash = %head_hash, "signed an audit checkpoint");
        Ok(checkpoint)
    }

    /// Signs a checkpoint every `every` until `shutdown`, the first right away (pinning
    /// whatever happened before this start), skipping an empty log and one that has not
    /// moved since the last checkpoint.
    pub async fn run_checkpoints(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        if every.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let signed = match self.store.audit_head().await {
                        Ok((0, _)) => Ok(()),
                        Ok(_) => self.checkpoint_audit_log().await.map(|_| ()),
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = signed {
                        tracing::warn!(error = %e, "could not sign an audit checkpoint; retrying next tick");
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Walks the audit log against its chain and the checkpoints, and every task's evidence
    /// chain.
    #[tracing::instrument(skip_all)]
    pub async fn verify_audit_log(&self, req: VerifyAuditLog) -> AresResult<AuditVerification> {
        if let Some(supplied) = &req.checkpoint {
            supplied.verify_signature().map_err(|e| {
                AresError::invalid(
                    "checkpoint",
                    format!("{e:#}; pass a checkpoint as ARES signed it"),
                )
            })?;
        }
        let ours = self.audit_key.public_key();
        let mut trusted = Vec::new();
        let (mut untrusted, mut forged) = (0, 0);
        for checkpoint in self.store.audit_checkpoints().await? {
            match (checkpoint.public_key == ours, checkpoint.verify_signature()) {
                (true, Ok(())) => trusted.push(checkpoint),
                (true, Err(_)) => forged += 1,
                (false, _) => untrusted += 1,
            }
        }
        if forged > 0 {
            tracing::warn!(forged, "stored audit checkpoints with bad signatures");
        }

        let mut walker = ChainWalker::new();
        for c in trusted.iter().chain(req.checkpoint.iter()) {
            walker.want_head_at(c.length);
        }
        let (entries, mut first_broken) = self.walk_audit_log(&mut walker).await?;

        let mut supplied_matches = None;
        if first_broken.is_none() {
            let mut vouched = 0;
            for c in &trusted {
                if let Err(b) = c.check(&walker, vouched) {
                    first_broken = Some(b);
                    break;
                }
                vouched = vouched.max(c.length);
            }
            if let Some(c) = &req.checkpoint {
                let checked = c.check(&walker, 0);
                supplied_matches = Some(checked.is_ok());
                if first_broken.is_none() {
                    first_broken = checked.err();
                }
            }
        }
        let (evidence_chains, broken_evidence) = self.verify_evidence_chains().await?;
        let intact = first_broken.is_none()
            && broken_evidence.is_empty()
            && forged == 0
            && supplied_matches != Some(false);
        if !intact {
            tracing::warn!(
                ?first_broken,
                broken_evidence = broken_evidence.len(),
                forged,
                "the audit log or an evidence chain does not verify"
            );
        }
        Ok(AuditVerification {
            intact,
            entries,
            head_hash: walker.head_hash().to_string(),
            evidence_chains,
            first_broken,
            broken_evidence,
            checkpoint: CheckpointReport {
                public_key: ours,
                checked: trusted.len() as i64,
                latest: trusted.into_iter().max_by_key(|c| (c.length, c.at)),
                untrusted,
                forged,
                supplied_matches,
            },
        })
    }

    /// Streams the log through `walker`; on a break, streams it again to say why. Returns
    /// the number of entries and the first break.
    async fn walk_audit_log(&self, walker: &mut ChainWalker) -> AresResult<(i64, Option<Broken>)> {
        let mut after = 0;
        let mut rows = 0;
        let mut suspect = None;
        loop {
            let page = self.store.audit_log(Some(after), WALK_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            rows += page.len() as i64;
            if suspect.is_none() {
                suspect = page.iter().find_map(|r| walker.push(r).err());
            }
        }
        let Some(suspect) = suspect else {
            return Ok((rows, None));
        };
        let mut classifier = Classifier::new(suspect);
        let mut after = 0;
        loop {
            let page = self.store.audit_log(Some(after), WALK_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            page.iter().for_each(|r| classifier.push(r));
        }
        Ok((rows, Some(classifier.finish())))
    }

    /// Re-derives every task's evidence chain.
    async fn verify_evidence_chains(&self) -> AresResult<(i64, Vec<BrokenEvidence>)> {
        let mut checked = 0;
        let mut broken = Vec::new();
        let mut after = None;
        loop {
            let tasks = self.store.evidence_task_ids(after, WALK_PAGE).await?;
            let Some(last) = tasks.last() else { break };
            after = Some(*last);
            for task_id in tasks {
                checked += 1;
                match self.store.evidence_for_task(task_id).await {
                    Ok(chain) => {
                        if let Err(index) = crate::evidence::verify_chain(&chain) {
                            let id = chain.get(index as usize).map(|e| e.id);
                            broken.push(BrokenEvidence {
                                task_id,
                                index: Some(index),
                                detail: match id {
                                    Some(id) => format!(
                                        "evidence {id} at chain index {index} no longer matches its chain"
                                    ),
                                    None => format!("the chain breaks at index {index}"),
                                },
                            });
                        }
                    }
                    Err(StoreError::Internal(e)) => {
                        tracing::warn!(%task_id, error = %format!("{e:#}"), "unreadable evidence");
                        broken.push(BrokenEvidence {
                            task_id,
                            index: None,
                            detail: "the task's evidence can no longer be read".into(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok((checked, broken))
    }
}
