//! Stories every transport and store must tell the same way. Each takes a connected client
//! and asserts on what a user would see.

use super::Mcp;
use serde_json::{Value, json};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

pub async fn register(mcp: &Mcp, caps: &[&str]) -> Value {
    mcp.call(
        "register_agent",
        json!({ "name": unique("agent"), "capabilities": caps, "max_concurrent_tasks": 3 }),
    )
    .await
}

fn passing_evidence() -> Value {
    json!([
        { "kind": "diff", "content": "--- a/src/lib.rs\n+++ b/src/lib.rs\n+pub fn parse() {}" },
        { "kind": "test_results", "passed": 12, "failed": 0, "skipped": 1 },
        { "kind": "metrics", "values": { "p95_ms": 120.0 } }
    ])
}

fn criteria() -> Value {
    json!([
        { "type": "tests_pass", "min_passed": 10 },
        { "type": "evidence_present", "kind": "diff" },
        { "type": "metric_at_most", "name": "p95_ms", "max": 200.0 }
    ])
}

/// Creates a task for `caps` and assigns it to `agent_id`.
pub async fn assigned_task(mcp: &Mcp, agent_id: &Value, caps: &[&str]) -> Value {
    let task = mcp
        .call("create_task", json!({ "description": "implement the parser", "required_capabilities": caps, "criteria": criteria() }))
        .await;
    mcp.call(
        "assign_task",
        json!({ "task_id": task["id"], "agent_id": agent_id }),
    )
    .await
}

/// register → create → assign (routed) → submit → verify → reliability, and the reads.
pub async fn full_lifecycle(mcp: &Mcp) {
    let cap = unique("cap");
    let agent = register(mcp, &[&cap, "rust"]).await;
    assert_eq!(agent["status"], "active");
    assert!(agent["id"].is_string());

    let task = mcp
        .call(
            "create_task",
            json!({
                "description": "implement the parser",
                "required_capabilities": [cap],
                "criteria": criteria(),
                "priority": 7,
                "deadline": "2030-01-31T12:00:00Z"
            }),
        )
        .await;
    assert_eq!(task["status"], "pending");
    assert_eq!(task["priority"], 7);

    let assigned = mcp
        .call("assign_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(assigned["status"], "assigned");
    assert_eq!(
        assigned["agent_id"], agent["id"],
        "routing picks the only capable agent"
    );

    let started = mcp
        .call(
            "start_task",
            json!({ "task_id": task["id"], "agent_id": agent["id"] }),
        )
        .await;
    assert_eq!(started["status"], "in_progress");

    let receipt = mcp
        .call("submit_evidence", json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": passing_evidence() }))
        .await;
    assert_eq!(receipt["task_status"], "submitted");
    assert_eq!(receipt["evidence"]["chain_index"], 0);
    assert_eq!(
        receipt["evidence"]["content_digest"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    let verdict = mcp
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(verdict["success"], true, "{verdict}");
    assert_eq!(verdict["task_status"], "verified");
    assert!(
        verdict["quality_score"].as_f64().unwrap() > 0.9,
        "{verdict}"
    );
    let results = verdict["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(r["status"], "met", "{r}");
        assert_eq!(r["checked_via"], "evidence");
        assert!(!r["detail"].as_str().unwrap().is_empty());
    }

    let rel = mcp
        .call(
            "get_reliability",
            json!({ "agent_id": agent["id"], "window": "24h" }),
        )
        .await;
    assert_eq!(rel["success_rate"], 1.0);
    assert_eq!(rel["completion_rate"], 1.0);
    assert_eq!(rel["verifications"], 1);
    let score = rel["reliability_score"].as_f64().unwrap();
    assert!(
        score > 0.5 && score < 0.95,
        "one success moves the score without swinging it: {score}"
    );
    assert!(rel["response_time_avg"].as_f64().unwrap() >= 0.0);

    let detail = mcp.call("get_task", json!({ "task_id": task["id"] })).await;
    assert_eq!(detail["status"], "verified");
    assert_eq!(detail["evidence"].as_array().unwrap().len(), 1);
    assert_eq!(detail["verifications"].as_array().unwrap().len(), 1);
    let states: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "pending",
            "assigned",
            "in_progress",
            "submitted",
            "verified"
        ]
    );

    let listed = mcp
        .call(
            "list_tasks",
            json!({ "agent_id": agent["id"], "status": "verified" }),
        )
        .await;
    assert_eq!(listed["tasks"].as_array().unwrap().len(), 1);

    let by_name = mcp
        .call("get_agent", json!({ "name": agent["name"] }))
        .await;
    assert_eq!(by_name["id"], agent["id"]);
    assert!(by_name["reliability_score"].as_f64().unwrap() > 0.5);

    for (format, marker) in [
        ("csv", "agent_id,agent_name"),
        ("markdown", "| agent_id |"),
        ("json", "\"agent_name\""),
    ] {
        let report = mcp
            .call(
                "get_report",
                json!({ "report": "reliability", "format": format, "agent_id": agent["id"] }),
            )
            .await;
        let content = report["content"].as_str().unwrap();
        assert!(content.contains(marker), "{format}: {content}");
        assert!(
            content.contains(agent["name"].as_str().unwrap()),
            "{format}: {content}"
        );
    }

    let health = mcp.call("health", json!({})).await;
    assert_eq!(health["status"], "healthy");
}

/// Three rejections climb the ladder: warning, throttle, then suspension with escalation of
/// open work to a backup; the suspended agent is refused; reinstating restores it.
pub async fn enforcement_ladder(mcp: &Mcp) {
    let cap = unique("cap");
    let agent = register(mcp, &[&cap]).await;
    let mut actions = Vec::new();
    for _ in 0..3 {
        let task = assigned_task(mcp, &agent["id"], &[&cap]).await;
        mcp.call(
            "submit_evidence",
            json!({
                "task_id": task["id"], "agent_id": agent["id"],
                "evidence": [{ "kind": "test_results", "passed": 3, "failed": 2 }]
            }),
        )
        .await;
        let verdict = mcp
            .call("verify_task", json!({ "task_id": task["id"] }))
            .await;
        assert_eq!(verdict["success"], false);
        assert_eq!(verdict["task_status"], "rejected");
        for a in verdict["enforcement_actions"].as_array().unwrap() {
            actions.push(a["action"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(actions, ["warning", "throttle", "suspend", "escalate"]);

    let suspended = mcp
        .call("get_agent", json!({ "agent_id": agent["id"] }))
        .await;
    assert_eq!(suspended["status"], "suspended");
    assert!(suspended["suspended_until"].is_string());

    let history = mcp
        .call(
            "list_enforcement_actions",
            json!({ "agent_id": agent["id"] }),
        )
        .await;
    let listed = history["actions"].as_array().unwrap();
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0]["action"], "escalate", "newest first");
    assert!(
        listed
            .iter()
            .all(|a| a["reason"].as_str().unwrap().contains("rejected"))
    );
    assert_eq!(listed[1]["metrics"]["rejection_streak"], 3);

    let task = mcp.call("create_task", json!({ "description": "more", "required_capabilities": [cap], "criteria": criteria() })).await;
    let refusal = mcp
        .refused(
            "assign_task",
            json!({ "task_id": task["id"], "agent_id": agent["id"] }),
        )
        .await;
    assert!(refusal.contains("suspended until"), "{refusal}");

    let reinstated = mcp
        .call("enforce", json!({ "agent_id": agent["id"], "action": "reinstate", "reason": "reviewed by a human" }))
        .await;
    assert_eq!(reinstated["agent"]["status"], "active");
    assert_eq!(reinstated["agent"]["throttle_limit"], Value::Null);
    let assigned = mcp
        .call(
            "assign_task",
            json!({ "task_id": task["id"], "agent_id": agent["id"] }),
        )
        .await;
    assert_eq!(assigned["status"], "assigned");

    let report = mcp
        .call(
            "get_report",
            json!({ "report": "enforcement", "format": "csv", "agent_id": agent["id"] }),
        )
        .await;
    assert_eq!(report["rows"], 5);
}

/// Suspension escalates the agent's open tasks to a capable backup.
pub async fn escalation_moves_open_work(mcp: &Mcp) {
    let cap = unique("cap");
    let agent = register(mcp, &[&cap]).await;
    let backup = register(mcp, &[&cap]).await;
    let open = assigned_task(mcp, &agent["id"], &[&cap]).await;
    let out = mcp
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "escalate", "reason": "on leave" }),
        )
        .await;
    assert_eq!(out["action"]["details"]["moves"][0]["to"], backup["id"]);
    let moved = mcp.call("get_task", json!({ "task_id": open["id"] })).await;
    assert_eq!(moved["agent_id"], backup["id"]);
    assert_eq!(moved["status"], "assigned");

    // Throttling lowers the limit routing honours.
    mcp.call("enforce", json!({ "agent_id": backup["id"], "action": "throttle", "reason": "slow down", "limit": 1 })).await;
    let another = mcp
        .call(
            "create_task",
            json!({ "description": "x", "required_capabilities": [cap], "criteria": criteria() }),
        )
        .await;
    let refusal = mcp
        .refused(
            "assign_task",
            json!({ "task_id": another["id"], "agent_id": backup["id"] }),
        )
        .await;
    assert!(
        refusal.contains("limit of 1") && refusal.contains("throttled"),
        "{refusal}"
    );
}

/// Ground-truth criteria cannot pass without the servers that check them.
pub async fn ground_truth_stays_unverifiable(mcp: &Mcp) {
    let agent = register(mcp, &[]).await;
    let task = mcp
        .call("create_task", json!({
            "description": "write the file",
            "criteria": [{ "type": "file_exists", "path": "src/parser.rs" }, { "type": "evidence_present", "kind": "file" }],
            "agent_id": agent["id"]
        }))
        .await;
    assert_eq!(task["status"], "assigned");
    mcp.call(
        "submit_evidence",
        json!({
            "task_id": task["id"], "agent_id": agent["id"],
            "evidence": [{ "kind": "file", "path": "src/parser.rs" }]
        }),
    )
    .await;
    let verdict = mcp
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(verdict["success"], false);
    assert_eq!(verdict["outcome"], "inconclusive");
    assert_eq!(verdict["task_status"], "submitted");
    assert_eq!(verdict["results"][0]["status"], "unverifiable");
    assert!(
        verdict["results"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("filesystem")
    );
    assert_eq!(verdict["results"][1]["status"], "met");
}

/// Retries with an idempotency key write once and answer the same; a different body with
/// the same key is refused.
pub async fn idempotent_retries(mcp: &Mcp) {
    let key = unique("key");
    let args = json!({ "description": "once", "criteria": criteria(), "idempotency_key": key });
    let first = mcp.call("create_task", args.clone()).await;
    let again = mcp.call("create_task", args).await;
    assert_eq!(first, again);
    let changed = mcp
        .invalid(
            "create_task",
            json!({ "description": "other", "criteria": criteria(), "idempotency_key": key }),
        )
        .await;
    assert_eq!(changed.field.as_deref(), Some("idempotency_key"));

    let agent = register(mcp, &[]).await;
    let task = mcp
        .call(
            "assign_task",
            json!({ "task_id": first["id"], "agent_id": agent["id"] }),
        )
        .await;
    let submit = json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": passing_evidence(), "idempotency_key": "s-1" });
    let r1 = mcp.call("submit_evidence", submit.clone()).await;
    let r2 = mcp.call("submit_evidence", submit).await;
    assert_eq!(r1, r2);
    let detail = mcp.call("get_task", json!({ "task_id": task["id"] })).await;
    assert_eq!(
        detail["evidence"].as_array().unwrap().len(),
        1,
        "written once"
    );
}

/// Rolling back verified work restores the task and handles what depends on it.
pub async fn rollback_with_dependents(mcp: &Mcp) {
    let agent = register(mcp, &[]).await;
    let base = assigned_task(mcp, &agent["id"], &[]).await;
    mcp.call(
        "submit_evidence",
        json!({ "task_id": base["id"], "agent_id": agent["id"], "evidence": passing_evidence() }),
    )
    .await;
    assert_eq!(
        mcp.call("verify_task", json!({ "task_id": base["id"] }))
            .await["success"],
        true
    );
    let dependent = mcp
        .call("create_task", json!({ "description": "builds on base", "criteria": criteria(), "depends_on": [base["id"]], "agent_id": agent["id"] }))
        .await;
    assert_eq!(dependent["status"], "assigned");

    let out = mcp
        .call(
            "rollback_task",
            json!({ "task_id": base["id"], "reason": "the change broke production" }),
        )
        .await;
    assert_eq!(out["task"]["status"], "rolled_back");
    assert_eq!(out["task"]["agent_id"], Value::Null);
    assert_eq!(out["dependents"][0]["task_id"], dependent["id"]);
    assert_eq!(out["dependents"][0]["from"], "assigned");
    assert_eq!(out["dependents"][0]["to"], "blocked");

    let history = mcp.call("get_task", json!({ "task_id": base["id"] })).await;
    assert_eq!(
        history["verifications"][0]["superseded"], true,
        "the old verdict no longer stands"
    );
    assert_eq!(
        history["evidence"].as_array().unwrap().len(),
        1,
        "evidence is never deleted"
    );

    // A blocked dependent is never assigned.
    let refusal = mcp
        .refused(
            "assign_task",
            json!({ "task_id": dependent["id"], "agent_id": agent["id"] }),
        )
        .await;
    assert!(refusal.contains("task is `blocked`"), "{refusal}");

    // Retry the base task; when it verifies again its dependent is released.
    let again = mcp
        .call("assign_task", json!({ "task_id": base["id"] }))
        .await;
    assert_eq!(again["status"], "assigned");
    assert_eq!(again["attempts"], 2);
    mcp.call(
        "submit_evidence",
        json!({ "task_id": base["id"], "agent_id": again["agent_id"], "evidence": passing_evidence() }),
    )
    .await;
    let verdict = mcp
        .call("verify_task", json!({ "task_id": base["id"] }))
        .await;
    assert_eq!(verdict["success"], true);
    let released = mcp
        .call("get_task", json!({ "task_id": dependent["id"] }))
        .await;
    assert_eq!(released["status"], "pending");
    let assigned = mcp
        .call("assign_task", json!({ "task_id": dependent["id"] }))
        .await;
    assert_eq!(assigned["status"], "assigned");
}

/// Lists come a page at a time and the pages join up without gaps or repeats.
pub async fn lists_paginate(mcp: &Mcp) {
    let cap = unique("cap");
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(register(mcp, &[&cap]).await["id"].clone());
    }
    let mut seen = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut args = json!({ "capability": cap, "limit": 2 });
        if !cursor.is_null() {
            args["cursor"] = cursor.clone();
        }
        let page = mcp.call("list_agents", args).await;
        let agents = page["agents"].as_array().unwrap();
        assert!(agents.len() <= 2);
        seen.extend(agents.iter().map(|a| a["id"].clone()));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(seen, ids);
}

/// Counts of everything, to show a refused call changed nothing.
async fn census(mcp: &Mcp) -> (usize, usize, usize) {
    let agents = mcp.call("list_agents", json!({ "limit": 500 })).await["agents"]
        .as_array()
        .unwrap()
        .len();
    let tasks = mcp.call("list_tasks", json!({ "limit": 500 })).await["tasks"]
        .as_array()
        .unwrap()
        .len();
    let actions = mcp
        .call("list_enforcement_actions", json!({ "limit": 500 }))
        .await["actions"]
        .as_array()
        .unwrap()
        .len();
    (agents, tasks, actions)
}

/// Every malformed call names the field and what was expected, changes nothing, and the
/// server keeps serving.
pub async fn bad_inputs_are_refused(mcp: &Mcp) {
    let agent = register(mcp, &["rust"]).await;
    let other = register(mcp, &["rust"]).await;
    let task = assigned_task(mcp, &agent["id"], &["rust"]).await;
    let before = census(mcp).await;

    let cases: Vec<(&str, Value, &str)> = vec![
        ("register_agent", json!({}), "name"),
        ("register_agent", json!({ "name": 42 }), "name"),
        ("register_agent", json!({ "name": "  " }), "name"),
        (
            "register_agent",
            json!({ "name": "x", "capabilities": "rust" }),
            "capabilities",
        ),
        (
            "register_agent",
            json!({ "name": "x", "capabilities": ["a b"] }),
            "capabilities[0]",
        ),
        (
            "register_agent",
            json!({ "name": "x", "public_key": "not-a-key" }),
            "public_key",
        ),
        (
            "register_agent",
            json!({ "name": "x", "max_concurrent_tasks": 0 }),
            "max_concurrent_tasks",
        ),
        (
            "register_agent",
            json!({ "name": "x", "configuration": [1] }),
            "configuration",
        ),
        (
            "register_agent",
            json!({ "name": "x", "colour": "blue" }),
            "colour",
        ),
        ("register_agent", json!({ "name": "nul\u{0}byte" }), "name"),
        ("get_agent", json!({ "agent_id": "not-a-uuid" }), "agent_id"),
        ("get_agent", json!({}), "agent_id"),
        ("create_task", json!({ "criteria": [] }), "description"),
        (
            "create_task",
            json!({ "description": "d", "criteria": [] }),
            "criteria",
        ),
        (
            "create_task",
            json!({ "description": "d", "criteria": [{ "type": "telepathy" }] }),
            "criteria[0].type",
        ),
        (
            "create_task",
            json!({ "description": "d", "criteria": [{ "type": "evidence_present", "kind": "vibes" }] }),
            "criteria[0].kind",
        ),
        (
            "create_task",
            json!({ "description": "d", "criteria": [{ "type": "file_contains", "path": "a", "pattern": "(", "regex": true }] }),
            "criteria[0].pattern",
        ),
        (
            "create_task",
            json!({ "description": "d", "criteria": criteria(), "deadline": "tomorrow" }),
            "deadline",
        ),
        (
            "create_task",
            json!({ "description": "d", "criteria": criteria(), "priority": 11 }),
            "priority",
        ),
        (
            "create_task",
            json!({ "description": "d", "criteria": criteria(), "depends_on": ["nope"] }),
            "depends_on[0]",
        ),
        (
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": [] }),
            "evidence",
        ),
        (
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": [{ "kind": "test_results", "passed": 1, "failed": -1 }] }),
            "evidence[0].failed",
        ),
        (
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": [{ "kind": "file", "path": "a", "sha256": "xyz" }] }),
            "evidence[0].sha256",
        ),
        (
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": [{ "kind": "hologram" }] }),
            "evidence[0].kind",
        ),
        (
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": [{ "kind": "log", "content": "x" }], "signature": "AAAA" }),
            "signature",
        ),
        ("list_tasks", json!({ "limit": 0 }), "limit"),
        ("list_tasks", json!({ "status": "done" }), "status"),
        ("list_agents", json!({ "cursor": "abc" }), "cursor"),
        (
            "get_reliability",
            json!({ "agent_id": agent["id"], "window": "1y" }),
            "window",
        ),
        (
            "enforce",
            json!({ "agent_id": agent["id"], "action": "smite", "reason": "r" }),
            "action",
        ),
        (
            "enforce",
            json!({ "agent_id": agent["id"], "action": "warning", "reason": "" }),
            "reason",
        ),
        (
            "get_report",
            json!({ "report": "reliability", "format": "pdf" }),
            "format",
        ),
        (
            "get_report",
            json!({ "report": "reliability", "since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z" }),
            "until",
        ),
        (
            "rollback_task",
            json!({ "task_id": task["id"], "reason": " " }),
            "reason",
        ),
    ];
    for (tool, args, field) in cases {
        let err = mcp.invalid(tool, args.clone()).await;
        assert_eq!(err.code, -32602, "{tool}({args}): {}", err.message);
        assert_eq!(
            err.field.as_deref(),
            Some(field),
            "{tool}({args}): {}",
            err.message
        );
        assert!(
            err.message.contains(field),
            "{tool}({args}): the message names the field: {}",
            err.message
        );
    }

    let unknown = uuid::Uuid::new_v4().to_string();
    let refusals: Vec<(&str, Value, String)> = vec![
        (
            "get_agent",
            json!({ "agent_id": unknown }),
            format!("agent not found: {unknown}"),
        ),
        (
            "get_task",
            json!({ "task_id": unknown }),
            format!("task not found: {unknown}"),
        ),
        (
            "assign_task",
            json!({ "task_id": unknown }),
            format!("task not found: {unknown}"),
        ),
        (
            "register_agent",
            json!({ "name": agent["name"] }),
            format!("named {} already exists", agent["name"]),
        ),
        (
            "verify_task",
            json!({ "task_id": task["id"] }),
            "is `assigned`; only a `submitted` task can be verified".into(),
        ),
        (
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": other["id"], "evidence": [{ "kind": "log", "content": "x" }] }),
            "not to".into(),
        ),
        (
            "assign_task",
            json!({ "task_id": task["id"], "agent_id": unknown }),
            format!("agent not found: {unknown}"),
        ),
    ];
    for (tool, args, expected) in refusals {
        let message = mcp.refused(tool, args.clone()).await;
        assert!(
            message.contains(&expected),
            "{tool}({args}): expected {expected:?} in {message:?}"
        );
    }
    let unknown_tool = mcp
        .client
        .call_tool(rmcp::model::CallToolRequestParams::new("no_such_tool"))
        .await;
    assert!(
        format!("{unknown_tool:?}").contains("unknown tool `no_such_tool`"),
        "{unknown_tool:?}"
    );

    assert_eq!(census(mcp).await, before, "refused calls changed nothing");
    let still = mcp.call("get_task", json!({ "task_id": task["id"] })).await;
    assert_eq!(still["status"], "assigned");
    assert_eq!(still["evidence"].as_array().unwrap().len(), 0);
    // And the server still serves.
    assert_eq!(mcp.call("health", json!({})).await["status"], "healthy");
}

/// An agent with a public key must sign; replays and stale timestamps are refused.
pub async fn signed_evidence(mcp: &Mcp) {
    use base64::Engine;
    use ed25519_dalek::Signer;
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = ed25519_dalek::SigningKey::from_bytes(&rand_bytes());
    let agent = mcp
        .call("register_agent", json!({ "name": unique("signer"), "public_key": b64.encode(key.verifying_key().as_bytes()) }))
        .await;
    let task = mcp
        .call("create_task", json!({ "description": "signed", "criteria": [{ "type": "signed" }, { "type": "evidence_present", "kind": "log" }], "agent_id": agent["id"] }))
        .await;
    // Optional fields left out: the signature covers the evidence exactly as sent.
    let evidence = json!([
        { "kind": "log", "content": "did the thing" },
        { "kind": "test_results", "passed": 3, "failed": 0 }
    ]);
    let sign = |nonce: &str, timestamp: &str| {
        let body = json!({ "agent_id": agent["id"], "task_id": task["id"], "evidence": evidence, "nonce": nonce, "timestamp": timestamp });
        let bytes = serde_json_canonicalizer::to_vec(&body).unwrap();
        json!({
            "task_id": task["id"], "agent_id": agent["id"], "evidence": evidence,
            "nonce": nonce, "timestamp": timestamp, "signature": b64.encode(key.sign(&bytes).to_bytes())
        })
    };
    let now = chrono::Utc::now().to_rfc3339();

    let unsigned = mcp
        .invalid(
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": evidence }),
        )
        .await;
    assert_eq!(unsigned.field.as_deref(), Some("signature"));
    let mut forged = sign("n-0", &now);
    forged["evidence"] = json!([{ "kind": "log", "content": "did something else" }]);
    assert_eq!(
        mcp.invalid("submit_evidence", forged)
            .await
            .field
            .as_deref(),
        Some("signature")
    );
    let stale = (chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339();
    assert_eq!(
        mcp.invalid("submit_evidence", sign("n-1", &stale))
            .await
            .field
            .as_deref(),
        Some("timestamp")
    );

    let receipt = mcp.call("submit_evidence", sign("n-2", &now)).await;
    assert_eq!(receipt["signature_verified"], true);
    let replay = mcp.invalid("submit_evidence", sign("n-2", &now)).await;
    assert_eq!(replay.field.as_deref(), Some("nonce"));
    assert!(replay.message.contains("replay"), "{}", replay.message);

    let verdict = mcp
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(verdict["success"], true, "{verdict}");
}

fn rand_bytes() -> [u8; 32] {
    let a = uuid::Uuid::new_v4().into_bytes();
    let b = uuid::Uuid::new_v4().into_bytes();
    let mut out = [0; 32];
    out[..16].copy_from_slice(&a);
    out[16..].copy_from_slice(&b);
    out
}

/// Runs every scenario on one connection.
pub async fn all(mcp: &Mcp) {
    full_lifecycle(mcp).await;
    enforcement_ladder(mcp).await;
    escalation_moves_open_work(mcp).await;
    ground_truth_stays_unverifiable(mcp).await;
    idempotent_retries(mcp).await;
    rollback_with_dependents(mcp).await;
    lists_paginate(mcp).await;
    bad_inputs_are_refused(mcp).await;
    signed_evidence(mcp).await;
}
