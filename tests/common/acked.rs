//! What a server acknowledged under load, and the check that all of it survived a fault:
//! every acknowledged task, evidence record and verdict is still there, each task's state
//! agrees with its records (nothing half-written), and the audit log and every evidence
//! chain verify.

use super::Mcp;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};

/// Writes the server answered with success.
#[derive(Default, Debug)]
pub struct Acknowledged {
    /// Task ids whose creation was acknowledged.
    pub tasks: BTreeSet<String>,
    /// task id → evidence id.
    pub evidence: HashMap<String, String>,
    /// task id → (verification id, task status after it).
    pub verdicts: HashMap<String, (String, String)>,
}

impl Acknowledged {
    /// How many acknowledged writes there are to look for.
    pub fn writes(&self) -> usize {
        self.tasks.len() + self.evidence.len() + self.verdicts.len()
    }
}

/// What [`check_survived`] found.
pub struct Survival {
    /// Acknowledged writes looked for.
    pub checked: usize,
    /// Acknowledged writes that are missing, each described.
    pub lost: Vec<String>,
}

/// Reads back every task in `tasks` (those acknowledged and any whose answer never came)
/// and checks it against `acked`; panics on a half-written task or a broken chain, and
/// returns the acknowledged writes it could not find.
pub async fn check_survived<'a>(
    admin: &Mcp,
    tasks: impl IntoIterator<Item = &'a String>,
    acked: &Acknowledged,
) -> Survival {
    let mut lost = Vec::new();
    for id in tasks {
        let Some(detail) = get_task(admin, id).await else {
            if acked.tasks.contains(id) {
                lost.push(format!("task {id}"));
            }
            continue;
        };
        let status = detail["status"].as_str().unwrap();
        let evidence = detail["evidence"].as_array().unwrap();
        let verifications = detail["verifications"].as_array().unwrap();
        if let Some(evidence_id) = acked.evidence.get(id)
            && !evidence.iter().any(|e| e["id"] == evidence_id.as_str())
        {
            lost.push(format!("evidence {evidence_id} of task {id}"));
        }
        if let Some((verification_id, after)) = acked.verdicts.get(id) {
            if !verifications
                .iter()
                .any(|v| v["id"] == verification_id.as_str())
            {
                lost.push(format!("verification {verification_id} of task {id}"));
            }
            assert_eq!(status, after, "task {id}: {detail:#}");
        }
        // Nothing half-written: the state and the records agree.
        match status {
            "assigned" => assert!(
                evidence.is_empty() && verifications.is_empty(),
                "{detail:#}"
            ),
            "submitted" => assert!(
                !evidence.is_empty()
                    && verifications.iter().all(|v| v["outcome"] == "inconclusive"),
                "{detail:#}"
            ),
            "verified" | "rejected" => {
                assert_eq!(evidence.len(), 1, "{detail:#}");
                assert_eq!(verifications.len(), 1, "{detail:#}");
            }
            other => panic!("task {id} is {other}: {detail:#}"),
        }
    }
    let audit = admin.call("verify_audit_log", json!({})).await;
    assert_eq!(audit["intact"], true, "{audit:#}");
    assert!(
        audit["evidence_chains"].as_i64().unwrap() >= acked.evidence.len() as i64,
        "{audit:#}"
    );
    Survival {
        checked: acked.writes(),
        lost,
    }
}

/// The task, or None when the server says it does not exist.
async fn get_task(admin: &Mcp, id: &str) -> Option<serde_json::Value> {
    let args = json!({ "task_id": id });
    let serde_json::Value::Object(args) = args else {
        unreachable!()
    };
    let result = admin
        .client
        .call_tool(
            rmcp::model::CallToolRequestParams::new("get_task".to_string()).with_arguments(args),
        )
        .await
        .unwrap_or_else(|e| panic!("get_task {id}: {e}"));
    if result.is_error == Some(true) {
        let text = super::text(&result);
        assert!(text.contains("not found"), "get_task {id}: {text}");
        return None;
    }
    result.structured_content
}
