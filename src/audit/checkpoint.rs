//! Signed checkpoints: ARES's ed25519 signature over the audit log's length and head hash
//! at a moment. A database superuser can rebuild a whole chain so that every link checks
//! out again, but cannot re-sign the checkpoints, so a rewrite shows against any checkpoint
//! kept — in the database or exported and held elsewhere.

use super::chain::{BreakReason, Broken, ChainWalker, GENESIS};
use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Separates checkpoint signatures from anything else the key might ever sign.
const DOMAIN: &[u8] = b"ares-audit-checkpoint-v1\n";

/// ARES's own signing key for checkpoints. Its `Debug` shows only the public half.
#[derive(Clone)]
pub struct AuditKey(SigningKey);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl AuditKey {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("the operating system provides randomness");
        Self(SigningKey::from_bytes(&seed))
    }

    /// The key whose 32-byte seed `text` holds in base64. The error never repeats `text`.
    pub fn from_seed_base64(text: &str) -> anyhow::Result<Self> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|_| anyhow::anyhow!("expected base64"))?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| anyhow::anyhow!("expected 32 bytes, got {}", b.len()))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }

    /// The seed in base64, for the key file.
    pub fn seed_base64(&self) -> String {
        BASE64.encode(self.0.to_bytes())
    }

    /// The public key in base64, as checkpoints carry it.
    pub fn public_key(&self) -> String {
        BASE64.encode(self.0.verifying_key().to_bytes())
    }

    /// Signs the log's state: `length` entries, the last with hash `head_hash`.
    pub fn sign(&self, length: i64, head_hash: &str, at: DateTime<Utc>) -> Checkpoint {
        let public_key = self.public_key();
        let message = message(length, head_hash, at, &public_key);
        Checkpoint {
            length,
            head_hash: head_hash.to_string(),
            at,
            signature: BASE64.encode(self.0.sign(&message).to_bytes()),
            public_key,
        }
    }
}

/// The audit log's state at a moment, signed by ARES.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// How many entries the log had.
    pub length: i64,
    /// The hash of the entry at position `length` (64 zeros for an empty log).
    pub head_hash: String,
    /// When it was signed.
    pub at: DateTime<Utc>,
    /// The signer's ed25519 public key, base64.
    pub public_key: String,
    /// base64 ed25519 signature over `ares-audit-checkpoint-v1\n` and the RFC 8785 JSON of
    /// `{length, head_hash, at, public_key}`.
    pub signature: String,
}

#[derive(Serialize)]
struct Signed<'a> {
    length: i64,
    head_hash: &'a str,
    at: DateTime<Utc>,
    public_key: &'a str,
}

fn message(length: i64, head_hash: &str, at: DateTime<Utc>, public_key: &str) -> Vec<u8> {
    let signed = Signed {
        length,
        head_hash,
        at,
        public_key,
    };
    let mut out = DOMAIN.to_vec();
    out.extend(serde_json_canonicalizer::to_vec(&signed).expect("checkpoints serialize"));
    out
}

impl Checkpoint {
    /// Whether the signature holds under the public key the checkpoint names (strict
    /// verification: no malleable signatures, no weak keys).
    pub fn verify_signature(&self) -> anyhow::Result<()> {
        let key: [u8; 32] = BASE64
            .decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("public_key is not base64 of 32 bytes")?;
        let key = VerifyingKey::from_bytes(&key).context("public_key is not an ed25519 key")?;
        let signature: [u8; 64] = BASE64
            .decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("signature is not base64 of 64 bytes")?;
        let message = message(self.length, &self.head_hash, self.at, &self.public_key);
        key.verify_strict(&message, &Signature::from_bytes(&signature))
            .context("the signature does not match the checkpoint")
    }

    /// Checks an intact walk of the log against this checkpoint: the log must still be at
    /// least this long and have the same entry at `length`. `vouched` is the longest
    /// checkpoint already matched, to say where a rewrite can have started.
    pub fn check(&self, walk: &ChainWalker, vouched: i64) -> Result<(), Broken> {
        if self.length > walk.length() {
            return Err(Broken {
                index: walk.length() + 1,
                id: None,
                reason: BreakReason::Removed,
                detail: format!(
                    "the log ends after {} entries, but the checkpoint signed at {} covers {}",
                    walk.length(),
                    self.at.to_rfc3339(),
                    self.length
                ),
            });
        }
        let head = walk.head_at(self.length);
        if head == Some(self.head_hash.as_str()) {
            return Ok(());
        }
        Err(Broken {
            index: self.length,
            id: walk.id_at(self.length),
            reason: BreakReason::Rewritten,
            detail: format!(
                "entry {} hashes to {}, but the checkpoint signed at {} says {}: the log was \
                 rebuilt somewhere in entries {} to {}",
                self.length,
                head.unwrap_or("(not walked)"),
                self.at.to_rfc3339(),
                self.head_hash,
                vouched + 1,
                self.length
            ),
        })
    }

    /// The checkpoint of an empty log.
    pub fn is_genesis(&self) -> bool {
        self.length == 0 && self.head_hash == GENESIS
    }
}

#[cfg(test)]
mod tests {
    use super::super::chain::{Actor, AuditDraft, AuditRecord};
    use super::*;
    use uuid::Uuid;

    fn walk(n: usize) -> (Vec<AuditRecord>, ChainWalker) {
        let mut records: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = records
                .last()
                .map_or(GENESIS.to_string(), |r| r.hash.clone());
            let draft = AuditDraft {
                id: Uuid::new_v4(),
                at: Utc::now(),
                actor: Actor::system(),
                tool: "enforce".into(),
                args_digest: "0".repeat(64),
                outcome: "ok".into(),
                agent_ids: vec![],
                task_ids: vec![],
            };
            records.push(AuditRecord::seal(draft, i as i64 + 1, &prev));
        }
        let mut walker = ChainWalker::new();
        for l in 0..=n as i64 {
            walker.want_head_at(l);
        }
        for r in &records {
            walker.push(r).unwrap();
        }
        (records, walker)
    }

    #[test]
    fn a_signed_checkpoint_verifies_and_a_changed_one_does_not() {
        let key = AuditKey::generate();
        let cp = key.sign(3, &"a".repeat(64), Utc::now());
        cp.verify_signature().unwrap();
        let mut longer = cp.clone();
        longer.length = 4;
        assert!(longer.verify_signature().is_err());
        let mut other_key = cp.clone();
        other_key.public_key = AuditKey::generate().public_key();
        assert!(other_key.verify_signature().is_err());
    }

    #[test]
    fn keys_round_trip_through_base64_and_never_print_the_seed() {
        let key = AuditKey::generate();
        let again = AuditKey::from_seed_base64(&key.seed_base64()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(!format!("{key:?}").contains(&key.seed_base64()));
        let err = AuditKey::from_seed_base64("c2hvcnQ=")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("32 bytes") && !err.contains("c2hvcnQ"),
            "{err}"
        );
    }

    #[test]
    fn a_rebuilt_chain_does_not_match_its_checkpoint() {
        let key = AuditKey::generate();
        let (records, walker) = walk(4);
        let cp = key.sign(3, &records[2].hash, Utc::now());
        assert_eq!(cp.check(&walker, 0), Ok(()));
        let forged = key.sign(3, &"b".repeat(64), Utc::now());
        let b = forged.check(&walker, 1).unwrap_err();
        assert_eq!((b.index, b.reason), (3, BreakReason::Rewritten));
        assert_eq!(b.id, Some(records[2].id));
        assert!(b.detail.contains("entries 2 to 3"), "{}", b.detail);
    }

    #[test]
    fn a_log_shorter_than_its_checkpoint_lost_its_end() {
        let key = AuditKey::generate();
        let (_, walker) = walk(2);
        let b = key
            .sign(5, &"c".repeat(64), Utc::now())
            .check(&walker, 0)
            .unwrap_err();
        assert_eq!((b.index, b.id, b.reason), (3, None, BreakReason::Removed));
        assert!(key.sign(0, GENESIS, Utc::now()).is_genesis());
    }
}
