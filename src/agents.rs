//! Agents: who they are, what they can do, and the validation of what they claim about
//! themselves at registration.

use crate::error::{AresError, AresResult};
use base64::Engine;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Where an agent stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May take and submit work.
    Active,
    /// Refused work until `suspended_until` passes or an operator reinstates it.
    Suspended,
    /// Gone; its history stays.
    Deregistered,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deregistered => "deregistered",
        }
    }
}

/// An agent ARES keeps a record of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Agent {
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// What the agent can do; tasks require a subset of these.
    pub capabilities: Vec<String>,
    /// Base64 of the agent's 32-byte ed25519 public key, when it signs its evidence.
    pub public_key: Option<String>,
    /// Free-form configuration the agent registered with.
    #[schemars(with = "serde_json::Map<String, Value>")]
    pub configuration: Value,
    /// How many open tasks the agent takes at once.
    pub max_concurrent_tasks: i32,
    pub status: AgentStatus,
    /// A lower concurrency limit imposed by throttling, when throttled.
    pub throttle_limit: Option<i32>,
    /// When a suspension ends on its own.
    pub suspended_until: Option<DateTime<Utc>>,
    /// Back from a suspension and throttled until it earns its way back with consecutive
    /// verified tasks.
    #[serde(default)]
    pub on_probation: bool,
    /// The latest reliability score (0–1), refreshed after every verification; routing
    /// prefers higher.
    pub reliability_score: f64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency version; bumps on every write.
    pub version: i64,
}

impl Agent {
    /// The concurrency limit assignment honours right now.
    pub fn effective_limit(&self) -> i32 {
        match self.throttle_limit {
            Some(limit) => limit.min(self.max_concurrent_tasks),
            None => self.max_concurrent_tasks,
        }
    }

    /// Whether the agent may take work at `now` (a lapsed suspension counts as over).
    pub fn is_available(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            AgentStatus::Active => true,
            AgentStatus::Suspended => self.suspended_until.is_some_and(|until| until <= now),
            AgentStatus::Deregistered => false,
        }
    }

    /// Refuses work for a suspended or deregistered agent, naming why and until when.
    pub fn ensure_available(&self, now: DateTime<Utc>) -> AresResult<()> {
        if self.is_available(now) {
            return Ok(());
        }
        Err(match (self.status, self.suspended_until) {
            (AgentStatus::Suspended, Some(until)) => AresError::refused(format!(
                "agent {} ({}) is suspended until {}",
                self.name,
                self.id,
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            (AgentStatus::Suspended, None) => AresError::refused(format!(
                "agent {} ({}) is suspended until an operator reinstates it",
                self.name, self.id
            )),
            _ => AresError::refused(format!("agent {} ({}) is deregistered", self.name, self.id)),
        })
    }

    pub fn has_capabilities(&self, required: &[String]) -> bool {
        required.iter().all(|c| self.capabilities.contains(c))
    }
}

pub const MAX_NAME_LEN: usize = 128;
pub const MAX_CAPABILITIES: usize = 64;

/// A valid agent name: 1–128 characters, no control characters, not blank.
pub fn validate_name(field: &str, name: &str) -> AresResult<String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(AresError::invalid(field, "expected a non-empty name"));
    }
    if trimmed.chars().count() > MAX_NAME_LEN {
        return Err(AresError::invalid(
            field,
            format!("expected at most {MAX_NAME_LEN} characters"),
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(AresError::invalid(field, "expected no control characters"));
    }
    Ok(trimmed.to_string())
}

/// Capabilities are short tokens: letters, digits and `_ - . : /`, deduplicated, order kept.
pub fn validate_capabilities(field: &str, caps: &[String]) -> AresResult<Vec<String>> {
    if caps.len() > MAX_CAPABILITIES {
        return Err(AresError::invalid(
            field,
            format!("expected at most {MAX_CAPABILITIES} capabilities"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(caps.len());
    for (i, cap) in caps.iter().enumerate() {
        validate_capability(&format!("{field}[{i}]"), cap)?;
        if !out.contains(cap) {
            out.push(cap.clone());
        }
    }
    Ok(out)
}

pub fn validate_capability(field: &str, cap: &str) -> AresResult<()> {
    let ok = !cap.is_empty()
        && cap.len() <= 64
        && cap
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.:/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(AresError::invalid(
            field,
            format!("expected a capability of 1-64 letters, digits or `_ - . : /` (got {cap:?})"),
        ))
    }
}

pub fn validate_max_concurrent(field: &str, n: i32) -> AresResult<i32> {
    if (1..=1000).contains(&n) {
        Ok(n)
    } else {
        Err(AresError::invalid(
            field,
            format!("expected an integer from 1 to 1000 (got {n})"),
        ))
    }
}

pub fn validate_configuration(field: &str, value: Option<Value>) -> AresResult<Value> {
    match value {
        None => Ok(Value::Object(Default::default())),
        Some(v @ Value::Object(_)) => {
            if v.to_string().len() > 64 * 1024 {
                return Err(AresError::invalid(field, "expected at most 64 KiB of JSON"));
            }
            Ok(v)
        }
        Some(_) => Err(AresError::invalid(field, "expected a JSON object")),
    }
}

/// A public key is base64 of exactly 32 bytes that decode to a valid ed25519 point.
pub fn validate_public_key(field: &str, key: &str) -> AresResult<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| {
            AresError::invalid(field, "expected base64 of a 32-byte ed25519 public key")
        })?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        AresError::invalid(
            field,
            format!(
                "expected a 32-byte ed25519 public key (got {} bytes)",
                b.len()
            ),
        )
    })?;
    let key_point = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| AresError::invalid(field, "expected a valid ed25519 public key"))?;
    // A small-order point verifies signatures it never made: refuse it.
    if key_point.is_weak() {
        return Err(AresError::invalid(
            field,
            "expected a strong ed25519 public key (this one is a small-order point)",
        ));
    }
    Ok(key.trim().to_string())
}

#[cfg(test)]
impl Agent {
    /// An active agent named `name`, able to hold one task, for unit tests.
    pub(crate) fn for_test(name: &str) -> Self {
        let now = Utc::now();
        Agent {
            id: Uuid::now_v7(),
            name: name.into(),
            capabilities: vec![],
            public_key: None,
            configuration: serde_json::json!({}),
            max_concurrent_tasks: 1,
            status: AgentStatus::Active,
            throttle_limit: None,
            suspended_until: None,
            reliability_score: 0.5,
            on_probation: false,
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent() -> Agent {
        Agent {
            capabilities: vec!["rust".into()],
            configuration: Value::Null,
            max_concurrent_tasks: 5,
            ..Agent::for_test("a")
        }
    }

    #[test]
    fn throttle_lowers_the_effective_limit_but_never_raises_it() {
        let mut a = agent();
        a.throttle_limit = Some(2);
        assert_eq!(a.effective_limit(), 2);
        a.throttle_limit = Some(9);
        assert_eq!(a.effective_limit(), 5);
    }

    #[test]
    fn a_lapsed_suspension_no_longer_blocks_work() {
        let now = Utc::now();
        let mut a = agent();
        a.status = AgentStatus::Suspended;
        a.suspended_until = Some(now + chrono::Duration::minutes(5));
        let err = a.ensure_available(now).unwrap_err().to_string();
        assert!(err.contains("suspended until"), "{err}");
        assert!(a.is_available(now + chrono::Duration::minutes(6)));
    }

    #[test]
    fn capabilities_reject_wildcards_and_deduplicate() {
        assert!(validate_capabilities("c", &["a%".into()]).is_err());
        let caps = validate_capabilities("c", &["x".into(), "x".into(), "y_z".into()]).unwrap();
        assert_eq!(caps, vec!["x", "y_z"]);
    }

    #[test]
    fn public_keys_must_be_32_bytes_of_base64() {
        assert!(validate_public_key("k", "not base64!").is_err());
        assert!(validate_public_key("k", "AAAA").is_err());
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
        assert_eq!(validate_public_key("k", &b64).unwrap(), b64);
        // The identity point (small order) decodes but must be refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = base64::engine::general_purpose::STANDARD.encode(identity);
        let err = validate_public_key("k", &weak).unwrap_err().to_string();
        assert!(err.contains("small-order"), "{err}");
    }
}
