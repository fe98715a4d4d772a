//! Who is calling which tool, carried from the MCP layer to `Ares::commit` in a task-local,
//! so that no service signature has to change to pass it along.

use super::chain::{Actor, AuditDraft, args_digest};
use crate::store::WriteBatch;
use chrono::{DateTime, Utc};
use std::future::Future;
use uuid::Uuid;

tokio::task_local! {
    static CALL: CallContext;
}

/// The call being served: recorded with every change it commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    pub actor: Actor,
    pub tool: String,
    /// Hex sha256 of the canonical JSON of the arguments.
    pub args_digest: String,
}

impl CallContext {
    /// A tool call; `args` absent counts as `{}`.
    pub fn for_call(actor: Actor, tool: &str, args: Option<&rmcp::model::JsonObject>) -> Self {
        let digest = match args {
            Some(args) => {
                let json = serde_json_canonicalizer::to_vec(args).unwrap_or_default();
                hex::encode(<sha2::Sha256 as sha2::Digest>::digest(json))
            }
            None => args_digest(&serde_json::json!({})),
        };
        Self {
            actor,
            tool: tool.to_string(),
            args_digest: digest,
        }
    }

    /// ARES's own work (a timer, a start-up task), named by `what`.
    pub fn system(what: &str) -> Self {
        Self {
            actor: Actor::system(),
            tool: what.to_string(),
            args_digest: args_digest(&serde_json::json!({})),
        }
    }
}

/// Runs `f` as part of the call `context` describes.
pub async fn scope<F: Future>(context: CallContext, f: F) -> F::Output {
    CALL.scope(context, f).await
}

/// The call being served, if any.
pub fn current() -> Option<CallContext> {
    CALL.try_with(Clone::clone).ok()
}

/// The audit entry for `batch`: none when it changes nothing but reliability snapshots
/// (which reads leave behind). Work outside any call is recorded as `system`/`internal`.
pub fn draft(batch: &mut WriteBatch, at: DateTime<Utc>) -> Option<AuditDraft> {
    // Whatever else a batch may come to carry counts as a change: only the snapshots (and
    // entries already drafted) are set aside for the test.
    let reliability = std::mem::take(&mut batch.reliability);
    let drafted = std::mem::take(&mut batch.audit);
    let changes = !batch.is_empty();
    batch.reliability = reliability;
    batch.audit = drafted;
    if !changes {
        return None;
    }
    let call = current().unwrap_or_else(|| CallContext::system("internal"));
    let mut agent_ids = Vec::new();
    let mut task_ids = Vec::new();
    let mut agent = |id: Uuid| {
        if !agent_ids.contains(&id) {
            agent_ids.push(id);
        }
    };
    batch.agents.iter().for_each(|a| agent(a.id));
    batch
        .tasks
        .iter()
        .filter_map(|t| t.agent_id)
        .for_each(&mut agent);
    batch.evidence.iter().for_each(|e| agent(e.agent_id));
    batch.verifications.iter().for_each(|v| agent(v.agent_id));
    batch.actions.iter().for_each(|a| agent(a.agent_id));
    batch
        .api_keys
        .iter()
        .filter_map(|k| k.agent_id)
        .for_each(&mut agent);
    let mut task = |id: Uuid| {
        if !task_ids.contains(&id) {
            task_ids.push(id);
        }
    };
    batch.tasks.iter().for_each(|t| task(t.id));
    batch.evidence.iter().for_each(|e| task(e.task_id));
    batch.verifications.iter().for_each(|v| task(v.task_id));
    batch.task_snapshots.iter().for_each(|s| task(s.task_id));
    Some(AuditDraft {
        id: Uuid::now_v7(),
        at,
        actor: call.actor,
        tool: call.tool,
        args_digest: call.args_digest,
        outcome: "ok".into(),
        agent_ids,
        task_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_call_in_scope_is_the_one_recorded() {
        assert_eq!(current(), None);
        let call = CallContext::for_call(Actor::local(), "enforce", None);
        let seen = scope(call.clone(), async { current() }).await;
        assert_eq!(seen, Some(call));
        assert_eq!(current(), None);
    }

    #[test]
    fn arguments_are_digested_canonically() {
        let a: rmcp::model::JsonObject = serde_json::from_str(r#"{"b":1,"a":[2]}"#).unwrap();
        let b: rmcp::model::JsonObject = serde_json::from_str(r#"{"a":[2],"b":1}"#).unwrap();
        let digest = |o| CallContext::for_call(Actor::local(), "t", Some(o)).args_digest;
        assert_eq!(digest(&a), digest(&b));
        assert_eq!(
            CallContext::for_call(Actor::local(), "t", None).args_digest,
            args_digest(&serde_json::json!({}))
        );
    }

    #[test]
    fn reliability_snapshots_alone_leave_no_entry() {
        let mut batch = WriteBatch {
            reliability: vec![crate::reliability::compute(
                Uuid::nil(),
                Default::default(),
                &Default::default(),
                &[],
                Default::default(),
                Utc::now(),
            )],
            ..Default::default()
        };
        assert_eq!(draft(&mut batch, Utc::now()), None);
        assert_eq!(
            batch.reliability.len(),
            1,
            "the snapshot stays in the batch"
        );
        assert_eq!(draft(&mut WriteBatch::default(), Utc::now()), None);
    }

    #[test]
    fn a_new_api_key_alone_is_a_change() {
        let minted = crate::auth::mint(crate::auth::Role::Observer, None, None, Utc::now());
        let mut batch = WriteBatch {
            api_keys: vec![minted.key],
            ..Default::default()
        };
        let entry = draft(&mut batch, Utc::now()).expect("key changes are audited");
        assert_eq!(entry.actor, Actor::system());
        assert_eq!(entry.tool, "internal");
    }
}
