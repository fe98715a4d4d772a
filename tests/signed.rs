//! Signed evidence from the command line, as an agent's script would do it: `ares keygen`,
//! `ares sign`, then `submit_evidence` over stdio.

mod common;

use common::{Mcp, db::TestDatabase};
use serde_json::{Value, json};
use std::io::Write;

async fn ares(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ares"));
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "ares {args:?} failed");
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn signed_task(mcp: &Mcp, public_key: &str) -> (Value, Value) {
    let agent = mcp
        .call(
            "register_agent",
            json!({ "name": format!("signer-{}", uuid::Uuid::new_v4()), "public_key": public_key }),
        )
        .await;
    let task = mcp
        .call("create_task", json!({ "description": "signed", "criteria": [{ "type": "signed" }], "agent_id": agent["id"] }))
        .await;
    (agent, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_and_sign_produce_evidence_ares_accepts_and_rotation_retires_the_old_key() {
    let db = TestDatabase::sqlite().await;
    let mcp = Mcp::stdio(&db.url).await;
    let pair = ares(&["keygen"], None, &[]).await;
    let (agent, task) = signed_task(&mcp, pair["public_key"].as_str().unwrap()).await;
    let submission = json!({ "agent_id": agent["id"], "task_id": task["id"], "evidence": [{ "kind": "log", "content": "done" }] });
    let key = pair["private_key"].as_str().unwrap();
    let signed = ares(
        &["sign", "-"],
        Some(&submission.to_string()),
        &[("ARES_PRIVATE_KEY", key)],
    )
    .await;
    let receipt = mcp.call("submit_evidence", signed).await;
    assert_eq!(receipt["signature_verified"], true);
    let verdict = mcp
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(verdict["success"], true, "{verdict}");

    // Rotate: the old key no longer verifies new submissions; the new one does.
    let next = ares(&["keygen"], None, &[]).await;
    mcp.call(
        "update_agent",
        json!({ "agent_id": agent["id"], "public_key": next["public_key"] }),
    )
    .await;
    let again = mcp
        .call("create_task", json!({ "description": "after rotation", "criteria": [{ "type": "signed" }], "agent_id": agent["id"] }))
        .await;
    let submission = json!({ "agent_id": agent["id"], "task_id": again["id"], "evidence": [{ "kind": "log", "content": "x" }] });
    let stale = ares(
        &["sign"],
        Some(&submission.to_string()),
        &[("ARES_PRIVATE_KEY", key)],
    )
    .await;
    let refused = mcp.invalid("submit_evidence", stale).await;
    assert_eq!(
        refused.field.as_deref(),
        Some("signature"),
        "{}",
        refused.message
    );
    let fresh = ares(
        &["sign"],
        Some(&submission.to_string()),
        &[("ARES_PRIVATE_KEY", next["private_key"].as_str().unwrap())],
    )
    .await;
    assert_eq!(
        mcp.call("submit_evidence", fresh).await["signature_verified"],
        true
    );
    mcp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_order_public_keys_are_refused_at_registration() {
    let db = TestDatabase::sqlite().await;
    let mcp = Mcp::stdio(&db.url).await;
    use base64::Engine;
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = base64::engine::general_purpose::STANDARD.encode(identity);
    let err = mcp
        .invalid(
            "register_agent",
            json!({ "name": "weak", "public_key": weak }),
        )
        .await;
    assert_eq!(err.field.as_deref(), Some("public_key"));
    assert!(err.message.contains("small-order"), "{}", err.message);
    mcp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_signatures_refuses_unsigned_evidence_from_any_agent() {
    let db = TestDatabase::postgres().await;
    let mcp = Mcp::stdio_with(&db.url, &[("ARES_REQUIRE_SIGNATURES", "true")]).await;
    let agent = mcp
        .call("register_agent", json!({ "name": "unsigned" }))
        .await;
    let task = mcp
        .call("create_task", json!({ "description": "d", "criteria": [{ "type": "evidence_present", "kind": "log" }], "agent_id": agent["id"] }))
        .await;
    let err = mcp
        .invalid("submit_evidence", json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": [{ "kind": "log", "content": "x" }] }))
        .await;
    assert_eq!(err.field.as_deref(), Some("signature"));
    assert!(
        err.message.contains("requires signed evidence"),
        "{}",
        err.message
    );
    mcp.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_rotates_its_key_with_a_signature_of_the_old_one() {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let b64 = base64::engine::general_purpose::STANDARD;
    let db = TestDatabase::sqlite().await;
    let mcp = Mcp::stdio(&db.url).await;
    let old = ares(&["keygen"], None, &[]).await;
    let new = ares(&["keygen"], None, &[]).await;
    let (agent, _) = signed_task(&mcp, old["public_key"].as_str().unwrap()).await;
    let rotation = |signer: &Value, nonce: &str| {
        let seed: [u8; 32] = b64
            .decode(signer["private_key"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        let timestamp = chrono::Utc::now().to_rfc3339();
        let body = json!({ "agent_id": agent["id"], "new_public_key": new["public_key"], "nonce": nonce, "timestamp": timestamp });
        let sig = key.sign(&serde_json_canonicalizer::to_vec(&body).unwrap());
        json!({ "agent_id": agent["id"], "new_public_key": new["public_key"], "nonce": nonce, "timestamp": timestamp, "signature": b64.encode(sig.to_bytes()) })
    };
    // Signed by the new key: the old key did not authorise it.
    let forged = mcp.invalid("rotate_agent_key", rotation(&new, "r-1")).await;
    assert_eq!(forged.field.as_deref(), Some("signature"));
    let rotated = mcp.call("rotate_agent_key", rotation(&old, "r-2")).await;
    assert_eq!(rotated["public_key"], new["public_key"]);
    let replay = mcp.invalid("rotate_agent_key", rotation(&old, "r-2")).await;
    assert_eq!(
        replay.field.as_deref(),
        Some("signature"),
        "the old key no longer authorises anything"
    );
    mcp.close().await;
}
