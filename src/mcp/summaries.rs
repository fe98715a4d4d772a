//! The short human-readable text that accompanies each tool's structured result.

use crate::agents::Agent;
use crate::reliability::Reliability;
use crate::service::{
    agents::*, enforce::*, evidence::*, health::*, reliability::*, tasks::*, verify::*,
};
use crate::tasks::Task;

pub trait Summary {
    fn summary(&self) -> String;
}

impl Summary for Agent {
    fn summary(&self) -> String {
        format!(
            "agent {} ({}) is {}; reliability {:.2}",
            self.name,
            self.id,
            self.status.as_str(),
            self.reliability_score
        )
    }
}

impl Summary for AgentList {
    fn summary(&self) -> String {
        format!("{} agent(s){}", self.agents.len(), more(&self.next_cursor))
    }
}

impl Summary for Deregistered {
    fn summary(&self) -> String {
        format!(
            "agent {} deregistered; {} open task(s) released",
            self.agent.name,
            self.released_tasks.len()
        )
    }
}

impl Summary for Task {
    fn summary(&self) -> String {
        match self.agent_id {
            Some(a) => format!("task {} is {} (agent {a})", self.id, self.status.as_str()),
            None => format!("task {} is {}", self.id, self.status.as_str()),
        }
    }
}

impl Summary for TaskDetail {
    fn summary(&self) -> String {
        format!(
            "{}; {} evidence submission(s), {} verification(s)",
            self.task.summary(),
            self.evidence.len(),
            self.verifications.len()
        )
    }
}

impl Summary for TaskList {
    fn summary(&self) -> String {
        format!("{} task(s){}", self.tasks.len(), more(&self.next_cursor))
    }
}

impl Summary for Receipt {
    fn summary(&self) -> String {
        format!(
            "evidence {} recorded at chain index {} (digest {}); task is {}",
            self.evidence.id,
            self.evidence.chain_index,
            &self.evidence.content_digest[..12],
            self.task_status.as_str()
        )
    }
}

impl Summary for VerificationReport {
    fn summary(&self) -> String {
        let v = &self.verification;
        let met = v.results.iter().filter(|r| r.met).count();
        format!(
            "{}: {met}/{} criteria met, quality {:.2}; task is {}{}",
            if v.success {
                "verified"
            } else {
                "not verified"
            },
            v.results.len(),
            v.quality_score,
            self.task_status.as_str(),
            if self.enforcement_actions.is_empty() {
                String::new()
            } else {
                let kinds: Vec<&str> = self
                    .enforcement_actions
                    .iter()
                    .map(|a| a.action.as_str())
                    .collect();
                format!("; enforcement: {}", kinds.join(", "))
            }
        )
    }
}

impl Summary for Reliability {
    fn summary(&self) -> String {
        format!(
            "reliability {:.2} over {}: success {:.0}%, quality {:.2}, {} verification(s), {} anomaly(ies)",
            self.reliability_score,
            self.window.as_str(),
            self.success_rate * 100.0,
            self.quality_score,
            self.verifications,
            self.anomalies.len()
        )
    }
}

impl Summary for Enforced {
    fn summary(&self) -> String {
        format!(
            "{} applied to agent {}; it is now {}",
            self.action.action.as_str(),
            self.agent.name,
            self.agent.status.as_str()
        )
    }
}

impl Summary for ActionList {
    fn summary(&self) -> String {
        format!(
            "{} enforcement action(s){}",
            self.actions.len(),
            more(&self.next_cursor)
        )
    }
}

impl Summary for RolledBack {
    fn summary(&self) -> String {
        format!(
            "task {} rolled back; {} dependent task(s) moved",
            self.task.id,
            self.dependents.len()
        )
    }
}

impl Summary for Report {
    fn summary(&self) -> String {
        self.content.clone()
    }
}

impl Summary for Health {
    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .dependencies
            .iter()
            .map(|d| format!("{}: {}", d.name, d.status))
            .collect();
        format!("ARES is {} ({})", self.status, parts.join(", "))
    }
}

fn more(cursor: &Option<String>) -> &'static str {
    if cursor.is_some() {
        "; more on the next page"
    } else {
        ""
    }
}

impl Summary for crate::service::audit::AuditLogPage {
    fn summary(&self) -> String {
        match (self.entries.first(), self.entries.last()) {
            (Some(first), Some(last)) => format!(
                "audit entries {} to {}{}",
                first.seq,
                last.seq,
                if self.next_after.is_some() {
                    "; more after"
                } else {
                    ""
                }
            ),
            _ => "no audit entries".into(),
        }
    }
}

impl Summary for crate::service::audit::AuditVerification {
    fn summary(&self) -> String {
        let scope = format!(
            "{} audit entries, {} evidence chain(s), {} checkpoint(s)",
            self.entries, self.evidence_chains, self.checkpoint.checked
        );
        if self.intact {
            return format!("intact: {scope}");
        }
        match &self.first_broken {
            Some(b) => format!(
                "NOT intact ({scope}): entry {} was {} — {}",
                b.index,
                b.reason.as_str(),
                b.detail
            ),
            None => format!(
                "NOT intact ({scope}): {} broken evidence chain(s), {} forged checkpoint(s)",
                self.broken_evidence.len(),
                self.checkpoint.forged
            ),
        }
    }
}

impl Summary for crate::audit::Checkpoint {
    fn summary(&self) -> String {
        format!(
            "checkpoint of {} audit entries (head {}) signed at {}",
            self.length,
            &self.head_hash[..12.min(self.head_hash.len())],
            self.at.to_rfc3339()
        )
    }
}

impl Summary for crate::service::keys::CreatedApiKey {
    fn summary(&self) -> String {
        format!(
            "{} key {} created; it is shown only now: {}",
            self.api_key.role.as_str(),
            self.api_key.id,
            self.key
        )
    }
}

impl Summary for crate::service::keys::ApiKeyList {
    fn summary(&self) -> String {
        let revoked = self.keys.iter().filter(|k| k.is_revoked()).count();
        format!("{} API key(s), {revoked} revoked", self.keys.len())
    }
}

impl Summary for crate::auth::ApiKey {
    fn summary(&self) -> String {
        match self.revoked_at {
            Some(at) => format!("API key {} revoked at {}", self.id, at.to_rfc3339()),
            None => format!("API key {} ({})", self.id, self.role.as_str()),
        }
    }
}
