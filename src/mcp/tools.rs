//! The tool table: name, description, input type, output type and the service operation
//! behind each tool, declared once. Schemas come from the types (their `///` docs are the
//! descriptions agents read).

use super::{errors, summaries::Summary, wire};
use crate::service::{
    Ares, agents::*, enforce::*, evidence::*, health::*, keys::*, reliability::*, tasks::*,
    verify::*,
};
use rmcp::handler::server::common::{schema_for_output, schema_for_type};
use rmcp::model::{CallToolResult, ContentBlock, ErrorData, JsonObject, Tool, ToolAnnotations};
use serde::Serialize;

/// Turns an operation's answer into a tool result: structured content plus a one-line summary.
fn respond<T: Serialize + Summary>(
    answer: crate::AresResult<T>,
) -> Result<CallToolResult, ErrorData> {
    match answer {
        Ok(out) => {
            let value = serde_json::to_value(&out).map_err(|e| {
                ErrorData::internal_error(format!("could not encode the answer: {e}"), None)
            })?;
            let mut result = CallToolResult::success(vec![ContentBlock::text(out.summary())]);
            result.structured_content = Some(value);
            Ok(result)
        }
        Err(e) => errors::to_mcp(e),
    }
}

macro_rules! tools {
    ($( $name:literal, $read_only:literal, $input:ty => $output:ty, $desc:literal, |$ares:ident, $p:ident $(, $raw:ident)?| $call:expr ;)*) => {
        /// Every tool ARES offers, with input and output schemas (in their portable spelling).
        pub fn list() -> Vec<Tool> {
            vec![$(
                Tool::new($name, $desc, super::portable::schema(schema_for_type::<$input>()))
                    .with_raw_output_schema(super::portable::schema(schema_for_output::<$output>()))
                    .with_annotations(annotations($read_only)),
            )*]
        }

        /// Decodes a tool's arguments without running it: what the fuzz target and the
        /// bad-input property tests exercise.
        pub fn decode_only(name: &str, args: &serde_json::Value) -> Result<(), ErrorData> {
            match name {
                $( $name => wire::decode::<$input>(args).map(|_| ()), )*
                other => Err(ErrorData::invalid_params(format!("unknown tool `{}`", other.chars().take(100).collect::<String>()), None)),
            }
        }

        /// Decodes the arguments and runs the named tool.
        pub async fn call(ares: &Ares, name: &str, args: Option<JsonObject>) -> Result<CallToolResult, ErrorData> {
            let args = serde_json::Value::Object(args.unwrap_or_default());
            match name {
                $( $name => {
                    #[allow(unused_mut)]
                    let mut $p: $input = wire::decode(&args)?;
                    let $ares = ares;
                    $( let $raw = &args; )?
                    // Boxed: unboxed, this future would be as large as the largest tool's
                    // (~9.5 KB) for every call, and be copied each time it moves.
                    respond::<$output>(Box::pin($call).await)
                } )*
                other => Err(ErrorData::invalid_params(
                    format!("unknown tool `{}`; tools/list names the tools ARES offers", other.chars().take(100).collect::<String>()),
                    None,
                )),
            }
        }
    };
}

fn annotations(read_only: bool) -> ToolAnnotations {
    let mut a = ToolAnnotations::new();
    a.read_only_hint = Some(read_only);
    a.destructive_hint = Some(false);
    a.open_world_hint = Some(false);
    a
}

async fn ok<T>(t: T) -> crate::AresResult<T> {
    Ok(t)
}

tools! {
    "register_agent", false, RegisterAgent => crate::agents::Agent,
        "Register an agent: a unique name, its capabilities, optionally an ed25519 public key for signed evidence, a configuration object and its concurrent-task limit. Returns the agent with status `active`.",
        |a, p| a.register_agent(p);
    "get_agent", true, GetAgent => crate::agents::Agent,
        "Get one agent by `agent_id` or by `name`.",
        |a, p| a.get_agent(p);
    "list_agents", true, ListAgents => AgentList,
        "List agents, optionally filtered by status and capability, a page at a time (pass `next_cursor` back as `cursor`).",
        |a, p| a.list_agents(p);
    "update_agent", false, UpdateAgent => crate::agents::Agent,
        "Change an agent's capabilities, configuration, public key or concurrent-task limit.",
        |a, p| a.update_agent(p);
    "rotate_agent_key", false, RotateAgentKey => crate::agents::Agent,
        "Rotate an agent's ed25519 key, authorised by a signature of its current key over {agent_id, new_public_key, nonce, timestamp}. Afterwards only the new key verifies new evidence.",
        |a, p| a.rotate_agent_key(p);
    "deregister_agent", false, DeregisterAgent => Deregistered,
        "Deregister an agent. Its history stays; its open tasks return to `pending`.",
        |a, p| a.deregister_agent(p);
    "create_task", false, CreateTask => crate::tasks::Task,
        "Create a task with a description, required capabilities and machine-checkable acceptance `criteria` (objects tagged by `type`: evidence_present, tests_pass, metric_at_most, metric_at_least, signed, file_exists, file_contains, file_matches_evidence, command_succeeds, lint_clean, page_contains). Optionally assign it straight to an agent, set priority, deadline and dependencies. Safe to retry with an `idempotency_key`.",
        |a, p| a.create_task(p);
    "assign_task", false, AssignTask => crate::tasks::Task,
        "Assign a task to the named agent, or, with no `agent_id`, to the best agent: has every required capability, is active and under its limit, least loaded, most reliable.",
        |a, p| a.assign_task(p);
    "start_task", false, StartTask => crate::tasks::Task,
        "The assigned agent marks the task `in_progress` (optional; evidence may be submitted straight from `assigned`).",
        |a, p| a.start_task(p);
    "get_task", true, TaskRef => TaskDetail,
        "Get one task with its evidence chain, verification history and state history.",
        |a, p| a.get_task(p);
    "list_tasks", true, ListTasks => TaskList,
        "List tasks, newest first, optionally filtered by status and agent, a page at a time.",
        |a, p| a.list_tasks(p);
    "submit_evidence", false, SubmitEvidence => Receipt,
        "Submit evidence for a task assigned to the agent: items tagged by `kind` (diff, test_results, metrics, file, documentation, api_interaction, command, screenshot, log). Agents with a public key must sign (nonce, timestamp, signature). Records the evidence with its digest and place in the task's hash chain; the task becomes `submitted`. Safe to retry with an `idempotency_key`.",
        |a, p, raw| {
            // Signatures cover the evidence exactly as the agent sent it.
            p.raw_evidence = raw.get("evidence").cloned();
            a.submit_evidence(p)
        };
    "verify_task", false, VerifyTask => VerificationReport,
        "Verify a submitted task: every criterion is checked against the evidence and, for ground-truth criteria, against the real files, commands and pages through downstream MCP servers. Returns `success`, `quality_score`, per-criterion `status`/`detail`/`checked_via`, the evidence analysis and any enforcement actions the verdict triggered.",
        |a, p| a.verify_task(p);
    "get_reliability", true, GetReliability => crate::reliability::Reliability,
        "An agent's reliability over a window (1h, 24h, 7d, all): reliability_score, success_rate, completion_rate, response_time_avg, quality_score, discrepancy_rate, counts, anomalies and recommendations.",
        |a, p| a.get_reliability(p);
    "enforce", false, Enforce => Enforced,
        "Take a manual enforcement action on an agent — warning, throttle, suspend, escalate or reinstate — with a reason.",
        |a, p| a.enforce(p);
    "list_enforcement_actions", true, ListEnforcementActions => ActionList,
        "Enforcement history, newest first, filtered by agent, action and time, with the reason and the numbers behind each action.",
        |a, p| a.list_enforcement_actions(p);
    "rollback_task", false, RollbackTask => RolledBack,
        "Roll a task back to its last good snapshot (state `rolled_back`, ready to be retried); its verifications are marked superseded, evidence is kept, and tasks that depend on it become `blocked` until it verifies again.",
        |a, p| a.rollback_task(p);
    "get_report", true, GetReport => Report,
        "A `reliability` or `enforcement` report over a time range, as JSON, CSV or Markdown.",
        |a, p| a.get_report(p);
    "health", true, HealthCheck => Health,
        "ARES's health: the store and each downstream server, with status and latency.",
        |a, _p| ok(a.health().await);
    "get_audit_log", true, crate::service::audit::GetAuditLog => crate::service::audit::AuditLogPage,
        "The tamper-evident audit log, oldest first, a page at a time (pass `next_after` back as `after`): every change ARES committed — who (key, role, agent), which tool, the sha256 of its arguments, outcome, the agents and tasks touched, when — each entry hash-chained to the one before.",
        |a, p| a.get_audit_log(p);
    "verify_audit_log", true, crate::service::audit::VerifyAuditLog => crate::service::audit::AuditVerification,
        "Walk the audit log's hash chain, check it against the checkpoints ARES signed (and, optionally, one you kept), and re-derive every task's evidence chain. Returns `intact`, the entry count, `first_broken` {index, id, reason: edited, removed, reordered or rewritten} and any broken evidence chains.",
        |a, p| a.verify_audit_log(p);
    "checkpoint_audit_log", false, crate::service::audit::CheckpointAuditLog => crate::audit::Checkpoint,
        "Sign a checkpoint of the audit log now — its length and head hash, with ARES's ed25519 key — and return it. Keep it somewhere else: a later `verify_audit_log` with it detects a rewritten log.",
        |a, _p| a.checkpoint_audit_log();
    "create_api_key", false, CreateApiKey => CreatedApiKey,
        "Admin only: mint an API key for the admin, agent (bound to one agent) or observer role. The key is shown once; ARES keeps only its hash.",
        |a, p| a.create_api_key(p);
    "list_api_keys", true, ListApiKeys => ApiKeyList,
        "Admin only: every API key with its role, agent and whether it is revoked (never the secret).",
        |a, p| a.list_api_keys(p);
    "revoke_api_key", false, RevokeApiKey => crate::auth::ApiKey,
        "Admin only: revoke an API key; requests with it are refused from then on.",
        |a, p| a.revoke_api_key(p);
}

#[cfg(test)]
mod tests {
    /// Each tool's future is boxed, so the dispatch future does not take the size of the
    /// largest tool's (9.5 KB before) and every call does not copy that much as it moves.
    #[tokio::test]
    async fn the_dispatch_future_stays_small() {
        let store = crate::store::connect("sqlite::memory:").await.unwrap();
        let ares = crate::service::Ares::new(store);
        let call = super::call(&ares, "submit_evidence", None);
        let size = std::mem::size_of_val(&call);
        assert!(size <= 1024, "tools::call's future is {size} bytes");
    }
}
