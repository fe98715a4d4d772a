//! Evidence: the items an agent submits, their content digest, and the per-task hash chain
//! that makes a quiet edit of past evidence detectable.

use crate::error::{AresError, AresResult};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use uuid::Uuid;

/// One piece of evidence, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EvidenceItem {
    /// A change, as a unified diff.
    Diff {
        /// The diff text.
        content: String,
    },
    /// The outcome of a test run.
    TestResults {
        /// Tests that passed.
        passed: i64,
        /// Tests that failed.
        failed: i64,
        /// Tests that were skipped.
        #[serde(default)]
        skipped: i64,
        /// The runner's output, if kept.
        #[serde(default)]
        output: Option<String>,
    },
    /// Named measurements, name → number.
    Metrics { values: BTreeMap<String, f64> },
    /// A file the agent produced or changed.
    File {
        /// Path of the file.
        path: String,
        /// Hex sha256 of the file's content, as the agent claims it.
        #[serde(default)]
        sha256: Option<String>,
    },
    /// Written documentation.
    Documentation { content: String },
    /// A call the agent made to an API.
    ApiInteraction {
        /// e.g. `POST https://api.example.com/v1/items`.
        request: String,
        /// The HTTP status received.
        #[serde(default)]
        status: Option<i64>,
        #[serde(default)]
        response: Option<String>,
    },
    /// A command the agent ran.
    Command {
        command: String,
        exit_code: i64,
        #[serde(default)]
        output: Option<String>,
    },
    /// A screenshot, as base64 PNG or a URL.
    Screenshot {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        data: Option<String>,
    },
    /// Log lines.
    Log { content: String },
}

/// The names of the evidence kinds, as they appear in `kind`.
pub const KINDS: [&str; 9] = [
    "diff",
    "test_results",
    "metrics",
    "file",
    "documentation",
    "api_interaction",
    "command",
    "screenshot",
    "log",
];

impl EvidenceItem {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Diff { .. } => "diff",
            Self::TestResults { .. } => "test_results",
            Self::Metrics { .. } => "metrics",
            Self::File { .. } => "file",
            Self::Documentation { .. } => "documentation",
            Self::ApiInteraction { .. } => "api_interaction",
            Self::Command { .. } => "command",
            Self::Screenshot { .. } => "screenshot",
            Self::Log { .. } => "log",
        }
    }

    /// Whether the item says anything at all (empty diffs and logs do not).
    pub fn is_substantive(&self) -> bool {
        match self {
            Self::Diff { content } | Self::Documentation { content } | Self::Log { content } => {
                !content.trim().is_empty()
            }
            Self::TestResults {
                passed,
                failed,
                skipped,
                ..
            } => passed + failed + skipped > 0,
            Self::Metrics { values } => !values.is_empty(),
            Self::File { path, .. } => !path.trim().is_empty(),
            Self::ApiInteraction { request, .. } => !request.trim().is_empty(),
            Self::Command { command, .. } => !command.trim().is_empty(),
            Self::Screenshot { url, data } => url.is_some() || data.is_some(),
        }
    }
}

pub const MAX_ITEMS: usize = 100;

/// Checks the items' values (types were checked by decoding), naming the first bad field.
pub fn validate_items(items: &[EvidenceItem]) -> AresResult<()> {
    if items.is_empty() {
        return Err(AresError::invalid(
            "evidence",
            "expected at least one evidence item",
        ));
    }
    if items.len() > MAX_ITEMS {
        return Err(AresError::invalid(
            "evidence",
            format!("expected at most {MAX_ITEMS} items"),
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let at = |f: &str| format!("evidence[{i}].{f}");
        match item {
            EvidenceItem::TestResults {
                passed,
                failed,
                skipped,
                ..
            } => {
                for (name, n) in [("passed", passed), ("failed", failed), ("skipped", skipped)] {
                    if *n < 0 {
                        return Err(AresError::invalid(
                            at(name),
                            "expected a count of 0 or more",
                        ));
                    }
                }
            }
            EvidenceItem::Metrics { values } => {
                for (name, v) in values {
                    if !v.is_finite() {
                        return Err(AresError::invalid(
                            at(&format!("values.{name}")),
                            "expected a finite number",
                        ));
                    }
                }
            }
            EvidenceItem::File { path, sha256 } => {
                if path.trim().is_empty() {
                    return Err(AresError::invalid(at("path"), "expected a file path"));
                }
                if let Some(d) = sha256
                    && !(d.len() == 64 && d.chars().all(|c| c.is_ascii_hexdigit()))
                {
                    return Err(AresError::invalid(
                        at("sha256"),
                        "expected 64 hex digits of a sha256 digest",
                    ));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A submission of evidence, recorded once and chained to the task's previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    pub id: Uuid,
    pub task_id: Uuid,
    pub agent_id: Uuid,
    pub items: Vec<EvidenceItem>,
    /// Hex sha256 of the items' canonical JSON.
    pub content_digest: String,
    /// Position in the task's evidence chain, from 0.
    pub chain_index: i64,
    /// The previous link's `chain_digest` (64 zeros for the first).
    pub prev_digest: String,
    /// sha256 over `prev_digest`, `content_digest` and the submission's identity.
    pub chain_digest: String,
    pub signature: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTime<Utc>,
}

pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex sha256 of the items' canonical (RFC 8785) JSON.
pub fn content_digest(items: &[EvidenceItem]) -> String {
    let json = serde_json_canonicalizer::to_vec(&items).expect("evidence serializes");
    hex::encode(Sha256::digest(json))
}

/// The chain link: binds this submission to everything before it on the task.
pub fn chain_digest(prev: &str, content: &str, id: Uuid, agent_id: Uuid, index: i64) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        content,
        &id.to_string(),
        &agent_id.to_string(),
        &index.to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// Re-derives every link of a task's chain; the first broken index, if any.
pub fn verify_chain(chain: &[Evidence]) -> Result<(), i64> {
    let mut prev = GENESIS.to_string();
    for (i, e) in chain.iter().enumerate() {
        let ok = e.chain_index == i as i64
            && e.prev_digest == prev
            && e.content_digest == content_digest(&e.items)
            && e.chain_digest
                == chain_digest(&prev, &e.content_digest, e.id, e.agent_id, e.chain_index);
        if !ok {
            return Err(i as i64);
        }
        prev = e.chain_digest.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(prev: &str, index: i64, items: Vec<EvidenceItem>) -> Evidence {
        let (id, agent_id) = (Uuid::new_v4(), Uuid::new_v4());
        let content = content_digest(&items);
        Evidence {
            id,
            task_id: Uuid::nil(),
            agent_id,
            chain_digest: chain_digest(prev, &content, id, agent_id, index),
            content_digest: content,
            items,
            chain_index: index,
            prev_digest: prev.into(),
            signature: None,
            idempotency_key: None,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn editing_past_evidence_breaks_the_chain_at_that_link() {
        let a = link(
            GENESIS,
            0,
            vec![EvidenceItem::Log {
                content: "a".into(),
            }],
        );
        let b = link(
            &a.chain_digest,
            1,
            vec![EvidenceItem::Log {
                content: "b".into(),
            }],
        );
        let mut chain = vec![a, b];
        assert_eq!(verify_chain(&chain), Ok(()));
        chain[0].items = vec![EvidenceItem::Log {
            content: "forged".into(),
        }];
        assert_eq!(verify_chain(&chain), Err(0));
    }

    #[test]
    fn the_digest_ignores_key_order() {
        let a: Vec<EvidenceItem> =
            serde_json::from_str(r#"[{"kind":"test_results","passed":3,"failed":0}]"#).unwrap();
        let b: Vec<EvidenceItem> =
            serde_json::from_str(r#"[{"failed":0,"passed":3,"kind":"test_results"}]"#).unwrap();
        assert_eq!(content_digest(&a), content_digest(&b));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let items = vec![
            EvidenceItem::Log {
                content: "x".into(),
            },
            EvidenceItem::TestResults {
                passed: 1,
                failed: -1,
                skipped: 0,
                output: None,
            },
        ];
        let err = validate_items(&items).unwrap_err().to_string();
        assert!(err.contains("evidence[1].failed"), "{err}");
        assert!(validate_items(&[]).is_err());
    }
}
