//! Prompts that teach an agent to use ARES well: what evidence a task's criteria need and how
//! to sign it, what an agent's reliability figures mean, and how to write checkable criteria.
//! Each reads ARES under the caller's rights, exactly as the tools would.

use super::{access, wire};
use crate::auth::Caller;
use crate::error::AresError;
use crate::service::Ares;
use crate::verification::Criterion;
use rmcp::model::{
    ErrorData, GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Role,
};
use serde_json::{Value, json};
use std::fmt::Write;
use uuid::Uuid;

/// A prompt's arguments: name, description, required.
type Arguments = &'static [(&'static str, &'static str, bool)];

/// The prompts: name, description, arguments.
const PROMPTS: [(&str, &str, Arguments); 3] = [
    (
        "submit_complete_evidence",
        "Walks an agent through submitting complete, signed evidence for a task: which evidence each acceptance criterion needs, how to sign, and the submit_evidence call to make.",
        &[("task_id", "The task to submit evidence for (its id).", true)],
    ),
    (
        "explain_reliability",
        "Explains an agent's reliability figures, anomalies and enforcement standing, and what would improve them.",
        &[
            ("agent_id", "The agent to explain (its id).", true),
            ("window", "1h, 24h, 7d or all (default all).", false),
        ],
    ),
    (
        "plan_task_criteria",
        "Helps write machine-checkable acceptance criteria for a new task, given what this ARES can check.",
        &[(
            "description",
            "What the task should achieve, in words.",
            true,
        )],
    ),
];

pub fn list() -> Vec<Prompt> {
    PROMPTS
        .iter()
        .map(|(name, description, args)| {
            let arguments = args
                .iter()
                .map(|(n, d, required)| {
                    PromptArgument::new(*n)
                        .with_description(*d)
                        .with_required(*required)
                })
                .collect();
            Prompt::new(*name, Some(*description), Some(arguments))
        })
        .collect()
}

/// The argument names of a prompt ARES offers.
pub fn arguments(prompt: &str) -> Option<Vec<&'static str>> {
    PROMPTS
        .iter()
        .find(|(name, ..)| *name == prompt)
        .map(|(_, _, args)| args.iter().map(|(n, ..)| *n).collect())
}

/// Renders the named prompt for `caller`.
pub async fn get(
    ares: &Ares,
    caller: &Caller,
    name: &str,
    arguments: Option<JsonObject>,
) -> Result<GetPromptResult, ErrorData> {
    let args = arguments.unwrap_or_default();
    let (description, text) = match name {
        "submit_complete_evidence" => {
            let task_id = uuid_arg(&args, "task_id")?;
            submit_complete_evidence(ares, caller, task_id).await?
        }
        "explain_reliability" => {
            let agent_id = uuid_arg(&args, "agent_id")?;
            let window = optional_text(&args, "window")?;
            explain_reliability(ares, caller, agent_id, window).await?
        }
        "plan_task_criteria" => {
            let description = text_arg(&args, "description")?;
            plan_task_criteria(ares, description)
        }
        other => {
            let shown: String = other.chars().take(100).collect();
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown prompt `{shown}`; ARES offers {}",
                    PROMPTS.map(|(n, ..)| n).join(", ")
                ),
                Some(json!({ "field": "name" })),
            ));
        }
    };
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(description),
    )
}

fn text_arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a str, ErrorData> {
    match optional_text(args, name)? {
        Some(text) => Ok(text),
        None => Err(wire::invalid(name, "required argument is missing")),
    }
}

fn optional_text<'a>(args: &'a JsonObject, name: &str) -> Result<Option<&'a str>, ErrorData> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim())),
        Some(_) => Err(wire::invalid(name, "expected a string")),
    }
}

fn uuid_arg(args: &JsonObject, name: &str) -> Result<Uuid, ErrorData> {
    Uuid::parse_str(text_arg(args, name)?)
        .map_err(|_| wire::invalid(name, "expected a UUID (completion/complete suggests ids)"))
}

/// Refuses what the caller's key may not read, as the tool `tool` would.
async fn may_read(ares: &Ares, caller: &Caller, tool: &str, args: Value) -> Result<(), ErrorData> {
    let Value::Object(mut args) = args else {
        unreachable!("prompt reads take objects")
    };
    access::check(ares, caller, tool, &mut args)
        .await
        .map_err(|refusal| ErrorData::invalid_request(refusal, None))
}

/// A service error, attributed to the prompt argument it is about.
fn about(argument: &str) -> impl Fn(AresError) -> ErrorData + '_ {
    move |error| match error {
        AresError::Invalid { field, message } => wire::invalid(&field, &message),
        AresError::NotFound { .. } => wire::invalid(argument, &error.to_string()),
        other => {
            tracing::warn!(error = %other, "prompt could not read ARES");
            ErrorData::internal_error("ARES could not be read; retry shortly", None)
        }
    }
}

/// The agent, with a missing one reported against `argument`.
async fn agent(ares: &Ares, id: Uuid, argument: &str) -> Result<crate::agents::Agent, ErrorData> {
    let request = crate::service::agents::GetAgent {
        agent_id: Some(id),
        name: None,
    };
    ares.get_agent(request).await.map_err(about(argument))
}

async fn submit_complete_evidence(
    ares: &Ares,
    caller: &Caller,
    task_id: Uuid,
) -> Result<(String, String), ErrorData> {
    may_read(ares, caller, "get_task", json!({ "task_id": task_id })).await?;
    let task = ares.task(task_id).await.map_err(about("task_id"))?;
    let mut text = format!(
        "You are submitting evidence for ARES task {} — \"{}\" (status `{}`).\n",
        task.id,
        task.description,
        task.status.as_str()
    );
    let Some(agent_id) = task.agent_id else {
        text.push_str(
            "\nThe task is not assigned to any agent yet: call `assign_task` first. Only the \
             assigned agent may submit evidence.\n",
        );
        return Ok(("The task is not assigned yet".into(), text));
    };
    if !matches!(
        task.status.as_str(),
        "assigned" | "in_progress" | "submitted" | "rejected"
    ) {
        let _ = writeln!(
            text,
            "\nEvidence is accepted while a task is `assigned`, `in_progress`, `submitted` (more \
             evidence) or `rejected` (a new attempt); this one is `{}`, so a submission would be \
             refused. get_task shows its history.",
            task.status.as_str()
        );
    }
    let agent = agent(ares, agent_id, "task_id").await?;
    text.push_str(
        "\nARES checks every acceptance criterion against your evidence and, where it can, against \
         ground truth (the real files, commands and pages). Claims that ground truth contradicts \
         count against you as discrepancies. Put everything in one `submit_evidence` call:\n\n",
    );
    let mut skeleton = Vec::new();
    for (i, criterion) in task.criteria.iter().enumerate() {
        let (need, item) = evidence_for(criterion);
        let _ = writeln!(text, "{}. `{}` — {need}", i + 1, describe(criterion));
        if let Some(item) = item
            && !skeleton.contains(&item)
        {
            skeleton.push(item);
        }
    }
    let signs = agent.public_key.is_some() || ares.require_signatures;
    text.push_str("\nSigning: ");
    text.push_str(&if agent.public_key.is_some() {
        format!(
            "agent {} has a public key, so every submission must be signed.",
            agent.name
        )
    } else if ares.require_signatures {
        "this ARES requires every agent to sign, and this agent has no key yet: make one with \
         `ares keygen` and register it with `update_agent` (`public_key`) first."
            .into()
    } else {
        "not required for this agent (it has no public key); a `signed` criterion still needs it."
            .into()
    });
    if signs
        || task
            .criteria
            .iter()
            .any(|c| matches!(c, Criterion::Signed {}))
    {
        text.push_str(
            " Add `nonce` (1–128 characters, never reused), `timestamp` (RFC 3339, within 5 \
             minutes of now) and `signature`: the base64 ed25519 signature over the RFC 8785 \
             canonical JSON of {agent_id, task_id, evidence, nonce, timestamp}. Sign exactly the \
             `evidence` you send. From a shell, `ares sign` adds all three.",
        );
    }
    let call = json!({
        "task_id": task.id,
        "agent_id": agent_id,
        "evidence": skeleton,
        "idempotency_key": format!("evidence-{}-{}", task.id, task.attempts + 1),
    });
    let _ = write!(
        text,
        "\n\nThe call, with the placeholders replaced by what you really did:\n\n```json\n{}\n```\n\
         \nAn `idempotency_key` makes a retry safe. After submitting, the task is `submitted`; \
         `verify_task` gives the verdict and says per criterion what was met.",
        serde_json::to_string_pretty(&call).unwrap_or_default()
    );
    Ok((format!("Submitting evidence for task {}", task.id), text))
}

/// A criterion in one line, with its parameters.
fn describe(criterion: &Criterion) -> String {
    let params = serde_json::to_value(criterion)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .map(|mut o| {
            o.remove("type");
            o
        })
        .filter(|o| !o.is_empty())
        .map(|o| format!(" {}", Value::Object(o)))
        .unwrap_or_default();
    format!("{}{params}", criterion.type_name())
}

/// What evidence a criterion needs, in words, and an item to start from.
fn evidence_for(criterion: &Criterion) -> (String, Option<Value>) {
    match criterion {
        Criterion::EvidencePresent { kind } => (
            format!("at least one substantive `{kind}` item (not empty, not boilerplate)."),
            Some(json!({ "kind": kind, "…": "its fields" })),
        ),
        Criterion::TestsPass {
            min_passed,
            max_failed,
        } => (
            format!(
                "a `test_results` item from a real run with at least {} passed and at most {} failed.",
                min_passed.unwrap_or(1),
                max_failed.unwrap_or(0)
            ),
            Some(
                json!({ "kind": "test_results", "passed": 0, "failed": 0, "skipped": 0, "output": "the runner's output" }),
            ),
        ),
        Criterion::MetricAtMost { name, max } => (
            format!("a `metrics` item whose `{name}` is at most {max}."),
            Some(json!({ "kind": "metrics", "values": { name: max } })),
        ),
        Criterion::MetricAtLeast { name, min } => (
            format!("a `metrics` item whose `{name}` is at least {min}."),
            Some(json!({ "kind": "metrics", "values": { name: min } })),
        ),
        Criterion::Signed {} => (
            "every submission of this attempt signed (see Signing below).".into(),
            None,
        ),
        Criterion::FileExists { path } | Criterion::FileContains { path, .. } => (
            format!(
                "ARES reads `{path}` itself; list it as a `file` item, and do not claim a file that is not there."
            ),
            Some(json!({ "kind": "file", "path": path })),
        ),
        Criterion::FileMatchesEvidence { path } => (
            format!(
                "a `file` item for `{path}` with the hex `sha256` of its exact bytes; ARES hashes the real file and compares."
            ),
            Some(json!({ "kind": "file", "path": path, "sha256": "hex sha256 of the file" })),
        ),
        Criterion::CommandSucceeds { command } => (
            format!(
                "ARES runs `{command}` again; include the `command` item you ran (its exit code and output)."
            ),
            Some(
                json!({ "kind": "command", "command": command, "exit_code": 0, "output": "what it printed" }),
            ),
        ),
        Criterion::LintClean { path } => (
            format!("ARES lints `{path}`; list it as a `file` item."),
            Some(json!({ "kind": "file", "path": path })),
        ),
        Criterion::PageContains { url, text } => (
            format!(
                "ARES opens {url} and looks for {text:?}; a `screenshot` item helps a reviewer."
            ),
            Some(json!({ "kind": "screenshot", "…": "base64 PNG or a URL" })),
        ),
    }
}

async fn explain_reliability(
    ares: &Ares,
    caller: &Caller,
    agent_id: Uuid,
    window: Option<&str>,
) -> Result<(String, String), ErrorData> {
    let mut args = json!({ "agent_id": agent_id });
    if let Some(window) = window {
        args["window"] = json!(window);
    }
    may_read(ares, caller, "get_reliability", args.clone()).await?;
    let request = wire::decode(&args)
        .map_err(|_| wire::invalid("window", "expected one of 1h, 24h, 7d, all"))?;
    let r = ares
        .get_reliability(request)
        .await
        .map_err(about("agent_id"))?;
    let agent = agent(ares, agent_id, "agent_id").await?;
    let pct = |x: f64| format!("{:.0} %", x * 100.0);
    let mut text = format!(
        "Explain to the operator of agent {} ({}) how far its work can be trusted, from these \
         ARES figures (window {}, {} verifications: {} verified, {} rejected, {} inconclusive):\n\n\
         - reliability_score {:.2}: the headline, from 0 to 1; enforcement acts on it.\n\
         - success_rate {}: verified among verdicts, counted cautiously while there are few.\n\
         - completion_rate {}: tasks it submitted among those assigned ({} of {}).\n\
         - quality_score {:.2}: how well the evidence met the criteria, on average.\n\
         - discrepancy_rate {}: verdicts where ground truth contradicted its evidence — the \
         most serious sign.\n\
         - response_time_avg {:.0} s (p95 {:.0} s): from assignment to submission.\n\
         \nStatus: `{}`{}.\n",
        agent.name,
        agent.id,
        serde_json::to_value(r.window)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("all"),
        r.verifications,
        r.verified,
        r.rejected,
        r.inconclusive,
        r.reliability_score,
        pct(r.success_rate),
        pct(r.completion_rate),
        r.tasks_submitted,
        r.tasks_assigned,
        r.quality_score,
        pct(r.discrepancy_rate),
        r.response_time_avg,
        r.response_time_p95,
        agent.status.as_str(),
        agent
            .throttle_limit
            .map(|l| format!(", throttled to {l} open tasks"))
            .unwrap_or_default(),
    );
    let p = &ares.policy;
    let _ = writeln!(
        text,
        "The enforcement ladder: a warning after {} rejections in a row, throttling after {}, \
         suspension after {}.",
        p.warn_after, p.throttle_after, p.suspend_after
    );
    if !r.anomalies.is_empty() {
        text.push_str("\nAnomalies against its own baseline:\n");
        for a in &r.anomalies {
            let _ = writeln!(text, "- {} ({}): {}", a.kind, a.severity, a.detail);
        }
    }
    if !r.recommendations.is_empty() {
        text.push_str("\nARES recommends:\n");
        for rec in &r.recommendations {
            let _ = writeln!(text, "- {rec}");
        }
    }
    text.push_str(
        "\nSay plainly what the figures mean, what is driving them, and the one or two changes \
         that would help most (more complete evidence, evidence ground truth confirms, signing).",
    );
    Ok((format!("Reliability of agent {}", agent.name), text))
}

fn plan_task_criteria(ares: &Ares, description: &str) -> (String, String) {
    let roles: Vec<&str> = ares
        .downstream
        .iter()
        .flat_map(|d| d.servers().iter().map(|s| s.config.role.as_str()))
        .collect();
    let available = |role: &str| {
        if roles.contains(&role) {
            "checked here"
        } else {
            "NOT configured here: would be `unverifiable`"
        }
    };
    let text = format!(
        "Write acceptance criteria for this ARES task: \"{description}\".\n\n\
         Criteria are objects tagged by `type`; a task needs 1 to 50. Prefer criteria ARES checks \
         against ground truth over ones that rest on the agent's word.\n\n\
         On the evidence alone:\n\
         - `evidence_present {{kind}}` — a substantive item of a kind (diff, test_results, metrics, \
         file, documentation, api_interaction, command, screenshot, log).\n\
         - `tests_pass {{min_passed?, max_failed?}}` — submitted test results pass.\n\
         - `metric_at_most {{name, max}}`, `metric_at_least {{name, min}}` — a submitted metric.\n\
         - `signed` — the evidence carries the agent's ed25519 signature.\n\n\
         Against ground truth:\n\
         - `file_exists {{path}}`, `file_contains {{path, pattern, regex?}}`, \
         `file_matches_evidence {{path}}` — filesystem, {};\n\
         - `command_succeeds {{command}}`, `lint_clean {{path}}` — code checker, {};\n\
         - `page_contains {{url, text}}` — browser, {}.\n\n\
         Propose criteria that together prove the task done, as the `criteria` array of a \
         `create_task` call, and say for each what it rules out.",
        available("filesystem"),
        available("code_checker"),
        available("playwright"),
    );
    ("Acceptance criteria for a new task".into(), text)
}
