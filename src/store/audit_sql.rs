//! The audit log's SQL, shared by both backends like the rest of `sql.rs`: appending
//! entries at the head of the chain inside a commit, reading them back, and checkpoints.
//!
//! Each backend also defines `AUDIT_LOCK`: the statement that makes concurrent commits take
//! turns at the head of the chain (PostgreSQL: a transaction-level advisory lock; SQLite
//! needs none, it has a single writer).

use super::super::{AUDIT_LOCK, ONE_TRIP};
use super::{
    Arg, BACKEND, Backend, Db, OnUnique, StoreError, StoreResult, Tx, Write, from_micros, micros,
};
use crate::audit::{AuditBody, AuditDraft, AuditRecord, Checkpoint, GENESIS};
use anyhow::Context;
use sqlx::Row;
use uuid::Uuid;

/// The last entry of the audit chain: its position and hash.
pub(super) struct ChainHead {
    seq: i64,
    prev: String,
}

/// The most rows one read returns.
const MAX_ROWS: i64 = 10_000;

/// The statements that give each draft the next position after `head` and chain it on;
/// they run inside the commit's transaction, so the entries land with the change or not at
/// all. `head` moves on past them.
///
/// `head` is where the transaction left the chain, read with [`Backend::lock_audit_head`]
/// or [`Backend::write_and_lock_head`] before the first entry. Later batches of the same all-or-nothing transaction chain on
/// from it without a round trip; a caller that may roll part of the transaction back (a
/// savepoint) must read it afresh for each part.
pub(super) fn audit_writes(
    drafts: &[AuditDraft],
    head: &mut Option<ChainHead>,
    writes: &mut Vec<Write>,
) -> StoreResult<()> {
    if drafts.is_empty() {
        return Ok(());
    }
    let Some(ChainHead { seq, prev }) = head.as_mut() else {
        return Err(StoreError::Internal(anyhow::anyhow!(
            "{BACKEND}: audit entries written before the head of the chain was read"
        )));
    };
    for draft in drafts {
        *seq += 1;
        let record = AuditRecord::seal(draft.clone(), *seq, prev);
        let body = serde_json::to_string(&record.body())
            .with_context(|| format!("{BACKEND}: encoding audit entry {}", record.id))
            .map_err(StoreError::Internal)?;
        writes.push(Write::new(
            "INSERT INTO audit_log (seq, id, at_us, body, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                Arg::Int(*seq),
                record.id.into(),
                micros(record.at).into(),
                body.into(),
                record.prev_hash.as_str().into(),
                record.hash.as_str().into(),
            ],
            OnUnique::Conflict,
            format!("append audit entry {} at {seq}", record.id),
        ));
        *prev = record.hash;
    }
    Ok(())
}

/// The head of the chain: its last entry.
const HEAD: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

impl Backend {
    /// Runs `writes`, then takes this transaction's turn at the head of the chain and reads
    /// it. Where the backend needs no lock and sends a batch in one trip (SQLite), the read
    /// goes in the same trip as the writes.
    pub(super) async fn write_and_lock_head(
        &self,
        tx: &mut Tx,
        mut writes: Vec<Write>,
    ) -> StoreResult<ChainHead> {
        if AUDIT_LOCK.is_some() || !ONE_TRIP || writes.is_empty() {
            self.run_writes(tx, writes).await?;
            return self.lock_audit_head(tx).await;
        }
        writes.push(Write::new(
            HEAD,
            vec![],
            OnUnique::Conflict,
            "read the head of the audit log".into(),
        ));
        let head = self.run_trip(tx, writes).await?;
        self.chain_head(head)
    }

    /// Takes this transaction's turn at the head of the chain and reads it.
    pub(super) async fn lock_audit_head(&self, tx: &mut Tx) -> StoreResult<ChainHead> {
        if let Some(lock) = AUDIT_LOCK {
            sqlx::query(lock)
                .execute(&mut **tx)
                .await
                .map_err(|e| self.fail(e, "lock the head of the audit log"))?;
        }
        let head = sqlx::query(HEAD)
            .fetch_optional(&mut **tx)
            .await
            .map_err(|e| self.fail(e, "read the head of the audit log"))?;
        self.chain_head(head)
    }

    /// The head [`HEAD`] read: the genesis when the log is empty.
    fn chain_head(&self, row: Option<<Db as sqlx::Database>::Row>) -> StoreResult<ChainHead> {
        let Some(row) = row else {
            return Ok(ChainHead {
                seq: 0,
                prev: GENESIS.to_string(),
            });
        };
        Ok(ChainHead {
            seq: row
                .try_get("seq")
                .map_err(|e| self.fail(e, "read the audit head"))?,
            prev: row
                .try_get("hash")
                .map_err(|e| self.fail(e, "read the audit head"))?,
        })
    }

    pub(super) async fn read_audit_log(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT seq, id, at_us, body, prev_hash, hash FROM audit_log \
             WHERE seq > $1 ORDER BY seq ASC LIMIT $2",
        )
        .bind(after.unwrap_or(i64::MIN))
        .bind(limit.clamp(1, MAX_ROWS))
        .fetch_all(self.reader())
        .await
        .map_err(|e| self.fail(e, "read the audit log"))?;
        rows.iter()
            .map(|row| {
                let columns =
                    || -> Result<(i64, String, i64, String, String, String), sqlx::Error> {
                        Ok((
                            row.try_get("seq")?,
                            row.try_get("id")?,
                            row.try_get("at_us")?,
                            row.try_get("body")?,
                            row.try_get("prev_hash")?,
                            row.try_get("hash")?,
                        ))
                    };
                let (seq, id, at_us, body, prev_hash, hash) =
                    columns().map_err(|e| self.fail(e, "read an audit log row"))?;
                Ok(decode_entry(seq, &id, at_us, &body, prev_hash, hash))
            })
            .collect()
    }

    pub(super) async fn read_audit_head(&self) -> StoreResult<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(self.reader())
            .await
            .map_err(|e| self.fail(e, "read the head of the audit log"))?;
        match row {
            None => Ok((0, GENESIS.to_string())),
            Some(row) => {
                let head = || -> Result<(i64, String), sqlx::Error> {
                    Ok((row.try_get("seq")?, row.try_get("hash")?))
                };
                head().map_err(|e| self.fail(e, "read the audit head"))
            }
        }
    }

    pub(super) async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        let body = serde_json::to_string(checkpoint)
            .context("encoding an audit checkpoint")
            .map_err(StoreError::Internal)?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (length, head_hash, at_us, body) VALUES ($1, $2, $3, $4)",
        )
        .bind(checkpoint.length)
        .bind(checkpoint.head_hash.as_str())
        .bind(micros(checkpoint.at))
        .bind(body)
        .execute(self.writer())
        .await
        .map(|_| ())
        .map_err(|e| self.fail(e, "store an audit checkpoint"))
    }

    /// Every checkpoint oldest first, or with `latest_only` just the newest.
    pub(super) async fn read_checkpoints(&self, latest_only: bool) -> StoreResult<Vec<Checkpoint>> {
        let sql = if latest_only {
            "SELECT seq, body FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
        } else {
            "SELECT seq, body FROM audit_checkpoints ORDER BY seq ASC"
        };
        let rows = sqlx::query(sql)
            .fetch_all(self.reader())
            .await
            .map_err(|e| self.fail(e, "read the audit checkpoints"))?;
        rows.iter()
            .map(|row| {
                let columns = || -> Result<(i64, String), sqlx::Error> {
                    Ok((row.try_get("seq")?, row.try_get("body")?))
                };
                let (seq, body) =
                    columns().map_err(|e| self.fail(e, "read an audit checkpoint row"))?;
                serde_json::from_str(&body)
                    .with_context(|| format!("{BACKEND}: decoding audit checkpoint {seq}"))
                    .map_err(StoreError::Internal)
            })
            .collect()
    }

    pub(super) async fn read_evidence_task_ids(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let rows = sqlx::query(
            "SELECT DISTINCT task_id FROM evidence WHERE task_id > $1 ORDER BY task_id ASC LIMIT $2",
        )
        .bind(after.map(|id| id.to_string()).unwrap_or_default())
        .bind(limit.clamp(1, MAX_ROWS))
        .fetch_all(self.reader())
        .await
        .map_err(|e| self.fail(e, "list the tasks that have evidence"))?;
        rows.iter()
            .map(|row| {
                let id: String = row
                    .try_get("task_id")
                    .map_err(|e| self.fail(e, "read a task id"))?;
                super::parse_uuid("evidence", "task_id", &id)
            })
            .collect()
    }
}

/// An entry from its columns. A body that no longer decodes still comes back, as an entry
/// whose hash cannot match, so that verification names it instead of failing.
fn decode_entry(
    seq: i64,
    id: &str,
    at_us: i64,
    body: &str,
    prev_hash: String,
    hash: String,
) -> AuditRecord {
    let id = Uuid::parse_str(id).unwrap_or_else(|_| Uuid::nil());
    let body: AuditBody = serde_json::from_str(body).unwrap_or_else(|e| {
        tracing::warn!(backend = BACKEND, seq, error = %e, "unreadable audit log row");
        AuditBody {
            actor: crate::audit::Actor {
                key_id: None,
                role: String::new(),
                agent_id: None,
                label: String::new(),
            },
            tool: String::new(),
            args_digest: String::new(),
            outcome: "unreadable".into(),
            agent_ids: Vec::new(),
            task_ids: Vec::new(),
        }
    });
    AuditRecord::from_parts(seq, id, from_micros(at_us), body, prev_hash, hash)
}
