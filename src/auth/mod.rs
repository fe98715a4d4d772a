//! Identity on the network: API keys, the roles they carry, and what each role may do.
//!
//! A key reads `ares_<id>_<secret>`. The id finds the stored key; only a sha256 of the
//! secret is stored (the secret is 244 random bits, so a fast hash is enough — there is
//! nothing to brute-force), and the comparison is constant-time.

pub mod cli;
pub mod middleware;
pub mod permissions;

use base64::Engine;
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

pub use permissions::{Permission, authorize};

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including keys and the audit log.
    Admin,
    /// Acts only as its one agent: its own tasks, evidence and record.
    Agent,
    /// Reads everything, changes nothing.
    Observer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Agent => "agent",
            Self::Observer => "observer",
        }
    }
}

/// A stored API key (never the secret itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiKey {
    /// The public part of the key, shown in lists and the audit log.
    pub id: String,
    pub role: Role,
    /// For the `agent` role: the one agent this key acts as.
    pub agent_id: Option<Uuid>,
    /// A label for people.
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Hex sha256 of the secret.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    #[schemars(skip)]
    pub secret_hash: String,
}

impl ApiKey {
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

/// Who is calling: the identity every permission check and audit entry uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The key's id; `local` for stdio, `admin-token` for ARES_ADMIN_TOKEN, `anonymous`
    /// when HTTP auth is disabled.
    pub key_id: String,
    pub role: Role,
    pub agent_id: Option<Uuid>,
}

impl Caller {
    /// The local user on stdio: the person who started the process.
    pub fn local() -> Self {
        Self {
            key_id: "local".into(),
            role: Role::Admin,
            agent_id: None,
        }
    }
}

impl From<&Caller> for crate::audit::Actor {
    fn from(caller: &Caller) -> Self {
        Self {
            key_id: Some(caller.key_id.clone()),
            role: caller.role.as_str().into(),
            agent_id: caller.agent_id,
            label: caller.key_id.clone(),
        }
    }
}

/// A freshly minted key: the full text is shown once and never stored.
pub struct MintedKey {
    pub key: ApiKey,
    pub secret_text: String,
}

/// Mints a key; the caller stores `key` (which holds only the hash).
pub fn mint(
    role: Role,
    agent_id: Option<Uuid>,
    name: Option<String>,
    now: DateTime<Utc>,
) -> MintedKey {
    let id = Uuid::new_v4().simple().to_string()[..12].to_string();
    let mut secret_bytes = Vec::with_capacity(32);
    secret_bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    secret_bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes);
    MintedKey {
        key: ApiKey {
            id: id.clone(),
            role,
            agent_id,
            name,
            created_at: now,
            revoked_at: None,
            secret_hash: hash_secret(&secret),
        },
        secret_text: format!("ares_{id}_{secret}"),
    }
}

/// Splits `ares_<id>_<secret>`; `None` for anything else.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix("ares_")?;
    let (id, secret) = rest.split_once('_')?;
    let ok = id.len() == 12
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && (20..=100).contains(&secret.len());
    ok.then_some((id, secret))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Constant-time check of a presented secret against a stored hash.
pub fn secret_matches(secret: &str, stored_hash: &str) -> bool {
    let presented = hash_secret(secret);
    presented.as_bytes().ct_eq(stored_hash.as_bytes()).into()
}

/// Constant-time comparison of two tokens of possibly different lengths.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_key_parses_and_matches_only_its_own_secret() {
        let minted = mint(Role::Observer, None, None, Utc::now());
        let (id, secret) = parse(&minted.secret_text).unwrap();
        assert_eq!(id, minted.key.id);
        assert!(secret_matches(secret, &minted.key.secret_hash));
        assert!(!secret_matches(
            "wrong-secret-wrong-secret",
            &minted.key.secret_hash
        ));
        assert!(
            !minted.key.secret_hash.contains(secret),
            "only the hash is kept"
        );
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for t in [
            "",
            "Bearer x",
            "ares_",
            "ares_zzzzzzzzzzzz_aaaaaaaaaaaaaaaaaaaaaaaa",
            "ares_0123456789ab_short",
        ] {
            assert!(parse(t).is_none(), "{t}");
        }
    }

    #[test]
    fn tokens_compare_whatever_their_length() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abcd"));
    }
}
