//! Rights, checked on every call: the role's permission for the tool, and for agent keys,
//! that the call is about their own agent and tasks. An id is a name, not a capability.

use crate::auth::{Caller, Role, authorize};
use crate::service::Ares;
use rmcp::model::JsonObject;
use serde_json::Value;
use uuid::Uuid;

/// Refuses the call (with the reason) or lets it through, possibly narrowed: an agent key's
/// lists are filtered to its own agent.
pub async fn check(
    ares: &Ares,
    caller: &Caller,
    tool: &str,
    args: &mut JsonObject,
) -> Result<(), String> {
    authorize(caller, tool)?;
    if caller.role != Role::Agent || tool == "health" {
        return Ok(());
    }
    let Some(own) = caller.agent_id else {
        return Err(format!(
            "forbidden: agent key {} is bound to no agent",
            caller.key_id
        ));
    };
    let forbidden = |what: String| {
        Err(format!(
            "forbidden: key {} acts only as agent {own}; {what}",
            caller.key_id
        ))
    };
    let named_agent = args
        .get("agent_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(other) = &named_agent
        && Uuid::parse_str(other).is_ok_and(|id| id != own)
    {
        return forbidden(format!("it may not act for or read agent {other}"));
    }
    match tool {
        "list_tasks" | "list_enforcement_actions" | "get_report" => {
            args.insert("agent_id".into(), Value::String(own.to_string()));
        }
        "get_reliability" | "start_task" | "submit_evidence" | "rotate_agent_key"
            if named_agent.is_none() =>
        {
            args.insert("agent_id".into(), Value::String(own.to_string()));
        }
        "get_agent" => {
            if let Some(name) = args.get("name").and_then(Value::as_str)
                && named_agent.is_none()
            {
                match ares.store.agent_by_name(name.trim()).await {
                    Ok(Some(agent)) if agent.id == own => {}
                    Ok(Some(_)) => return forbidden(format!("it may not read agent {name:?}")),
                    _ => {}
                }
            }
        }
        "list_agents" => return forbidden("it may read only its own agent: use get_agent".into()),
        _ => {}
    }
    if matches!(
        tool,
        "get_task" | "verify_task" | "start_task" | "submit_evidence"
    ) && let Some(task_id) = args
        .get("task_id")
        .and_then(Value::as_str)
        .and_then(|t| Uuid::parse_str(t).ok())
        && let Ok(task) = ares.task(task_id).await
        && task.agent_id != Some(own)
    {
        return forbidden(format!("task {task_id} is not assigned to it"));
    }
    Ok(())
}
