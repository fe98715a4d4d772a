//! Which role may call which tool. The one table of rights; the MCP layer checks it before
//! every call, and scopes an agent key to its own agent and tasks.

use super::{Caller, Role};
use schemars::JsonSchema;
use serde::Serialize;

/// A right a tool needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read agents, tasks, reliability and reports (agent keys: their own only).
    Read,
    /// Act as an agent: start tasks, submit evidence, ask for verification of its own work.
    ActAsAgent,
    /// Register, change and deregister agents.
    ManageAgents,
    /// Create, assign and roll back tasks.
    ManageTasks,
    /// Take enforcement actions.
    Enforce,
    /// Mint, list and revoke API keys.
    ManageKeys,
    /// Read and verify the audit log.
    Audit,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::ActAsAgent => "act_as_agent",
            Self::ManageAgents => "manage_agents",
            Self::ManageTasks => "manage_tasks",
            Self::Enforce => "enforce",
            Self::ManageKeys => "manage_keys",
            Self::Audit => "audit",
        }
    }

    /// The permission a tool needs; unknown tools need nothing here (they are refused as
    /// unknown later).
    pub fn for_tool(tool: &str) -> Option<Permission> {
        Some(match tool {
            "health" => return None,
            "get_agent"
            | "list_agents"
            | "get_task"
            | "list_tasks"
            | "get_reliability"
            | "list_enforcement_actions"
            | "get_report" => Self::Read,
            "start_task" | "submit_evidence" | "verify_task" | "rotate_agent_key" => {
                Self::ActAsAgent
            }
            "register_agent" | "update_agent" | "deregister_agent" => Self::ManageAgents,
            "create_task" | "assign_task" | "rollback_task" => Self::ManageTasks,
            "enforce" => Self::Enforce,
            "create_api_key" | "list_api_keys" | "revoke_api_key" => Self::ManageKeys,
            "get_audit_log" | "verify_audit_log" | "checkpoint_audit_log" => Self::Audit,
            _ => return None,
        })
    }
}

/// Whether the role holds the permission (agent keys are further scoped by the caller).
pub fn role_has(role: Role, permission: Permission) -> bool {
    match role {
        Role::Admin => true,
        Role::Observer => permission == Permission::Read,
        Role::Agent => matches!(permission, Permission::Read | Permission::ActAsAgent),
    }
}

/// Refuses a tool the caller's role may not use, naming the permission.
pub fn authorize(caller: &Caller, tool: &str) -> Result<(), String> {
    match Permission::for_tool(tool) {
        Some(p) if !role_has(caller.role, p) => Err(format!(
            "forbidden: the `{}` role lacks the `{}` permission that `{tool}` needs",
            caller.role.as_str(),
            p.as_str()
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            key_id: "k".into(),
            role,
            agent_id: None,
        }
    }

    #[test]
    fn observers_read_but_never_write() {
        let o = caller(Role::Observer);
        assert!(authorize(&o, "list_tasks").is_ok());
        assert!(authorize(&o, "health").is_ok());
        let err = authorize(&o, "create_task").unwrap_err();
        assert!(
            err.contains("`observer` role lacks the `manage_tasks` permission"),
            "{err}"
        );
        assert!(authorize(&o, "submit_evidence").is_err());
    }

    #[test]
    fn agents_act_but_do_not_manage() {
        let a = caller(Role::Agent);
        assert!(authorize(&a, "submit_evidence").is_ok());
        assert!(authorize(&a, "enforce").is_err());
        assert!(authorize(&a, "create_api_key").is_err());
        assert!(authorize(&a, "register_agent").is_err());
    }

    #[test]
    fn admins_may_do_everything() {
        for tool in [
            "create_api_key",
            "enforce",
            "rollback_task",
            "verify_audit_log",
        ] {
            assert!(authorize(&caller(Role::Admin), tool).is_ok());
        }
    }
}
