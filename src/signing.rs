//! Signing for agents and scripts: `ares keygen` makes an ed25519 key pair, `ares sign`
//! adds `nonce`, `timestamp` and `signature` to a `submit_evidence` argument object —
//! exactly what ARES verifies.

use anyhow::Context;
use base64::Engine;
use clap::Args;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use std::io::Read;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A new key pair: the private seed (keep it) and the public key (register it).
pub fn keygen() -> Value {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let key = SigningKey::from_bytes(&seed);
    json!({
        "private_key": B64.encode(seed),
        "public_key": B64.encode(key.verifying_key().as_bytes()),
    })
}

/// Signs a submission: adds a fresh nonce and the current time unless present, then the
/// signature over the RFC 8785 canonical JSON of `{agent_id, task_id, evidence, nonce,
/// timestamp}`.
pub fn sign(private_key_b64: &str, mut submission: Value) -> anyhow::Result<Value> {
    let seed: [u8; 32] = B64
        .decode(private_key_b64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("the private key must be base64 of a 32-byte ed25519 seed")?;
    let key = SigningKey::from_bytes(&seed);
    let obj = submission
        .as_object_mut()
        .context("the submission must be a JSON object with agent_id, task_id and evidence")?;
    for field in ["agent_id", "task_id", "evidence"] {
        anyhow::ensure!(obj.contains_key(field), "the submission has no `{field}`");
    }
    obj.entry("nonce")
        .or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
    obj.entry("timestamp").or_insert_with(|| {
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    });
    let signed = json!({
        "agent_id": obj["agent_id"],
        "task_id": obj["task_id"],
        "evidence": obj["evidence"],
        "nonce": obj["nonce"],
        "timestamp": obj["timestamp"],
    });
    let bytes = serde_json_canonicalizer::to_vec(&signed)?;
    obj.insert(
        "signature".into(),
        Value::String(B64.encode(key.sign(&bytes).to_bytes())),
    );
    Ok(submission)
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// Base64 private key (the `private_key` from `ares keygen`); or set ARES_PRIVATE_KEY.
    #[arg(long, env = "ARES_PRIVATE_KEY", hide_env_values = true)]
    pub private_key: String,
    /// The submit_evidence arguments as JSON; `-` or absent reads stdin.
    pub file: Option<std::path::PathBuf>,
}

pub fn sign_command(args: SignArgs) -> anyhow::Result<()> {
    let text = match args.file.as_deref() {
        Some(p) if p.as_os_str() != "-" => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        _ => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
    };
    let submission: Value = serde_json::from_str(&text).context("the submission is not JSON")?;
    println!(
        "{}",
        serde_json::to_string(&sign(&args.private_key, submission)?)?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_submission_verifies_with_the_public_key() {
        let pair = keygen();
        let submission = json!({
            "agent_id": uuid::Uuid::nil(), "task_id": uuid::Uuid::nil(),
            "evidence": [{ "kind": "log", "content": "x" }]
        });
        let signed = sign(pair["private_key"].as_str().unwrap(), submission).unwrap();
        let mut req: crate::service::evidence::SubmitEvidence =
            serde_json::from_value(signed.clone()).unwrap();
        req.raw_evidence = Some(signed["evidence"].clone());
        let message = crate::service::evidence::signed_message(&req);
        crate::service::evidence::verify_signature(
            pair["public_key"].as_str().unwrap(),
            &message,
            signed["signature"].as_str().unwrap(),
        )
        .unwrap();
    }
}
