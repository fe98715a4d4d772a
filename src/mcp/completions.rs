//! Argument completion (`completion/complete`): agent and task ids for the prompts' arguments
//! and the resource templates' `{id}`, matched by prefix on the id or on the agent's name or
//! the task's description. A key sees only what it may read: an agent key, its own agent and
//! tasks.

use super::{access, wire};
use crate::auth::{Caller, Role};
use crate::service::Ares;
use rmcp::model::{CompleteRequestParams, CompleteResult, CompletionInfo, ErrorData, Reference};
use serde_json::{Value, json};

/// Pages of 500 read at most per completion: enough for a picker, bounded for the store.
const MAX_PAGES: usize = 4;

/// What an argument takes.
enum Takes {
    Agent,
    Task,
    OneOf(&'static [&'static str]),
    /// Free text: nothing to suggest.
    Anything,
}

pub async fn complete(
    ares: &Ares,
    caller: &Caller,
    request: &CompleteRequestParams,
) -> Result<CompleteResult, ErrorData> {
    let argument = request.argument.name.as_str();
    let takes = match &request.r#ref {
        Reference::Prompt(prompt) => prompt_argument(&prompt.name, argument)?,
        Reference::Resource(template) => template_argument(&template.uri, argument)?,
        _ => Takes::Anything,
    };
    let typed = request.argument.value.trim().to_lowercase();
    let candidates: Vec<(String, String)> = match takes {
        Takes::Agent => agents(ares, caller).await?,
        Takes::Task => tasks(ares, caller).await?,
        Takes::OneOf(values) => values
            .iter()
            .map(|v| (v.to_string(), v.to_string()))
            .collect(),
        Takes::Anything => Vec::new(),
    };
    let matched: Vec<String> = candidates
        .into_iter()
        .filter(|(id, label)| id.starts_with(&typed) || label.to_lowercase().starts_with(&typed))
        .map(|(id, _)| id)
        .collect();
    let total = matched.len();
    let shown: Vec<String> = matched
        .into_iter()
        .take(CompletionInfo::MAX_VALUES)
        .collect();
    let info = CompletionInfo::with_pagination(
        shown,
        Some(u32::try_from(total).unwrap_or(u32::MAX)),
        total > CompletionInfo::MAX_VALUES,
    )
    .map_err(|e| ErrorData::internal_error(e, None))?;
    Ok(CompleteResult::new(info))
}

fn prompt_argument(prompt: &str, argument: &str) -> Result<Takes, ErrorData> {
    #[cfg(feature = "conformance")]
    if super::conformance::is_prompt(prompt) {
        return Ok(Takes::Anything);
    }
    let Some(args) = super::prompts::arguments(prompt) else {
        return Err(wire::invalid(
            "ref.name",
            &format!(
                "no prompt `{}`; prompts/list names them",
                prompt.chars().take(100).collect::<String>()
            ),
        ));
    };
    if !args.contains(&argument) {
        return Err(unknown_argument(argument, &args));
    }
    Ok(match argument {
        "agent_id" => Takes::Agent,
        "task_id" => Takes::Task,
        "window" => Takes::OneOf(&["1h", "24h", "7d", "all"]),
        _ => Takes::Anything,
    })
}

fn template_argument(uri: &str, argument: &str) -> Result<Takes, ErrorData> {
    #[cfg(feature = "conformance")]
    if uri.starts_with("test://") {
        return Ok(Takes::Anything);
    }
    let takes = match uri {
        "ares://agents/{id}" => Takes::Agent,
        "ares://tasks/{id}" => Takes::Task,
        other => {
            return Err(wire::invalid(
                "ref.uri",
                &format!(
                    "no resource template {:?}; ARES completes ares://agents/{{id}} and ares://tasks/{{id}}",
                    other.chars().take(200).collect::<String>()
                ),
            ));
        }
    };
    if argument != "id" {
        return Err(unknown_argument(argument, &["id"]));
    }
    Ok(takes)
}

fn unknown_argument(argument: &str, known: &[&str]) -> ErrorData {
    wire::invalid(
        "argument.name",
        &format!(
            "no argument `{}` here; expected one of {}",
            argument.chars().take(100).collect::<String>(),
            known.join(", ")
        ),
    )
}

/// Agents the caller may read: (id, name).
async fn agents(ares: &Ares, caller: &Caller) -> Result<Vec<(String, String)>, ErrorData> {
    if caller.role == Role::Agent {
        let Some(own) = caller.agent_id else {
            return Ok(Vec::new());
        };
        return Ok(match ares.store.agent(own).await {
            Ok(Some(agent)) => vec![(agent.id.to_string(), agent.name)],
            _ => Vec::new(),
        });
    }
    let pages = pages(ares, caller, "list_agents", "agents").await?;
    Ok(pages
        .iter()
        .map(|a| (text(a, "id"), text(a, "name")))
        .collect())
}

/// Tasks the caller may read: (id, description).
async fn tasks(ares: &Ares, caller: &Caller) -> Result<Vec<(String, String)>, ErrorData> {
    let pages = pages(ares, caller, "list_tasks", "tasks").await?;
    Ok(pages
        .iter()
        .map(|t| (text(t, "id"), text(t, "description")))
        .collect())
}

fn text(object: &Value, field: &str) -> String {
    object[field].as_str().unwrap_or_default().to_string()
}

/// Up to [`MAX_PAGES`] pages of a list tool, as the caller's key would see them.
async fn pages(
    ares: &Ares,
    caller: &Caller,
    tool: &str,
    items: &str,
) -> Result<Vec<Value>, ErrorData> {
    let mut found = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut args = json!({ "limit": 500 });
        if let Some(c) = &cursor {
            args["cursor"] = json!(c);
        }
        let Value::Object(mut args) = args else {
            unreachable!()
        };
        access::check(ares, caller, tool, &mut args)
            .await
            .map_err(|refusal| ErrorData::invalid_request(refusal, None))?;
        let result = super::tools::call(ares, tool, Some(args)).await?;
        let page = result.structured_content.unwrap_or_default();
        found.extend(page[items].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    Ok(found)
}
