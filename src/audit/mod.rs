//! The tamper-evident audit log: every change — who made it (key, role, agent), with which
//! tool and arguments (their digest), when — is appended in the same transaction as the
//! change, each entry hash-chained to the one before; ARES signs checkpoints of the chain's
//! head so that even a wholesale rewrite by a database superuser shows.
//!
//! - [`chain`]: entries, their hash, and the walk that names the first entry edited, removed
//!   or reordered (pure).
//! - [`checkpoint`]: ARES's signing key and signed `{length, head_hash, at}` checkpoints.
//! - [`context`]: the call being served, carried to `Ares::commit` in a task-local.
//! - [`key`]: where the signing key comes from.
//! - [`cli`]: `ares audit verify` and `ares audit checkpoint`.
//!
//! The database refuses UPDATE, DELETE (and, on PostgreSQL, TRUNCATE) of the log by
//! trigger; the chain and the checkpoints catch what someone able to drop the triggers does.

pub mod chain;
pub mod checkpoint;
pub mod cli;
pub mod context;
pub mod key;

pub use chain::{
    Actor, AuditBody, AuditDraft, AuditRecord, BreakReason, Broken, ChainWalker, Classifier,
    GENESIS, args_digest, verify_chain,
};
pub use checkpoint::{AuditKey, Checkpoint};
pub use context::CallContext;
