//! `ares audit verify` and `ares audit checkpoint`: the audit log from the command line, for
//! scripts and for whoever keeps checkpoints somewhere the database's owner cannot reach.

use super::checkpoint::Checkpoint;
use super::key::AuditKeyArgs;
use crate::config::StoreArgs;
use crate::service::Ares;
use crate::service::audit::VerifyAuditLog;
use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit log, its signed checkpoints and every evidence chain; print the
    /// verdict as JSON; exit 0 when all are intact, 1 otherwise.
    Verify(VerifyArgs),
    /// Sign a checkpoint of the audit log's current head (unless the newest already covers
    /// it) and print it as JSON, to keep somewhere else.
    Checkpoint(CheckpointArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub key: AuditKeyArgs,
    /// A checkpoint printed earlier by `ares audit checkpoint`, to check the log against.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub key: AuditKeyArgs,
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Checkpoint(args) => checkpoint(args).await,
    }
}

async fn open(store: &StoreArgs, key: &AuditKeyArgs, create_key: bool) -> anyhow::Result<Ares> {
    let url = store.url()?;
    let key = key.load(&url, create_key)?;
    let store = crate::store::connect(&url).await?;
    Ok(Ares::new(store).with_audit_key(key))
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let checkpoint: Option<Checkpoint> =
        match &args.checkpoint {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the checkpoint {}", path.display()))?;
                Some(serde_json::from_str(&text).with_context(|| {
                    format!("{} does not hold an audit checkpoint", path.display())
                })?)
            }
            None => None,
        };
    let ares = open(&args.store, &args.key, false).await?;
    let report = ares.verify_audit_log(VerifyAuditLog { checkpoint }).await;
    ares.store.close().await;
    let report = report.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.intact {
        eprintln!(
            "audit log intact: {} entries, {} evidence chains, {} checkpoint(s) checked",
            report.entries, report.evidence_chains, report.checkpoint.checked
        );
        return Ok(());
    }
    let mut problems = Vec::new();
    if let Some(b) = &report.first_broken {
        let id = b.id.map(|id| format!(" ({id})")).unwrap_or_default();
        problems.push(format!(
            "entry {}{id} was {}: {}",
            b.index,
            b.reason.as_str(),
            b.detail
        ));
    }
    for e in &report.broken_evidence {
        problems.push(format!("evidence of task {}: {}", e.task_id, e.detail));
    }
    if report.checkpoint.forged > 0 {
        problems.push(format!(
            "{} stored checkpoint(s) carry a signature that does not hold",
            report.checkpoint.forged
        ));
    }
    anyhow::bail!("the audit log is not intact: {}", problems.join("; "))
}

async fn checkpoint(args: CheckpointArgs) -> anyhow::Result<()> {
    let ares = open(&args.store, &args.key, true).await?;
    let checkpoint = ares.checkpoint_audit_log().await;
    ares.store.close().await;
    let checkpoint = checkpoint.map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", serde_json::to_string_pretty(&checkpoint)?);
    Ok(())
}
