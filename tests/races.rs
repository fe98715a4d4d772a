//! Retries and races against two real instances on one PostgreSQL: the same request sent
//! three times at once with one idempotency key writes once and answers identically; a
//! thousand concurrent submissions to one task all land in one intact chain; a thousand
//! concurrent verifications of it yield exactly one verdict. Within an instance calls on one
//! task take turns; between instances a rare loser is told to retry, and does.

mod common;

use common::db::TestDatabase;
use common::scenarios::register;
use common::{ADMIN_TOKEN, Mcp, spawn_http, terminate};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use serde_json::{Value, json};
use std::sync::Arc;

struct Pair {
    bases: [String; 2],
    children: Vec<tokio::process::Child>,
    _db: TestDatabase,
}

async fn pair() -> Pair {
    let db = TestDatabase::postgres().await;
    // A burst of a thousand calls is the point here, not the rate limit.
    let env = [
        ("ARES_ADMIN_TOKEN", ADMIN_TOKEN),
        ("ARES_LOG", "warn"),
        ("ARES_RATE_LIMIT", "100000"),
    ];
    let (a, base_a) = spawn_http(&db.url, &env).await;
    let (b, base_b) = spawn_http(&db.url, &env).await;
    Pair {
        bases: [base_a, base_b],
        children: vec![a, b],
        _db: db,
    }
}

impl Pair {
    async fn stop(self) {
        for child in self.children {
            let (code, stderr) = terminate(child).await;
            assert_eq!(code, Some(0), "{stderr}");
        }
    }
}

/// Calls `tool`, retrying as a client should when ARES says the record changed under the
/// call (other instances writing the same task); any other answer is returned as is.
async fn raw(mcp: &Mcp, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        unreachable!()
    };
    for _ in 0..10 {
        let result = mcp
            .client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args.clone()))
            .await
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        if result.is_error == Some(true) && common::text(&result).contains("retry the call") {
            continue;
        }
        return result;
    }
    panic!("{tool} still conflicting after 10 tries")
}

/// `n` calls of `tool`, spread over sessions on both instances, all in flight at once.
async fn at_once(
    pair: &Pair,
    sessions: usize,
    n: usize,
    tool: &'static str,
    args: impl Fn(usize) -> Value,
) -> Vec<CallToolResult> {
    let mut clients = Vec::new();
    for i in 0..sessions {
        clients.push(Arc::new(Mcp::http(&pair.bases[i % 2]).await));
    }
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let client = clients[i % sessions].clone();
            let args = args(i);
            tokio::spawn(async move { raw(&client, tool, args).await })
        })
        .collect();
    let mut results = Vec::with_capacity(n);
    for call in calls {
        results.push(call.await.unwrap());
    }
    results
}

/// An agent, and a task assigned to it.
async fn agent_with_task(admin: &Mcp) -> (Value, Value) {
    let agent = register(admin, &["rust"]).await;
    let task = admin
        .call(
            "create_task",
            json!({ "description": "contended", "criteria": [{ "type": "tests_pass" }], "agent_id": agent["id"] }),
        )
        .await;
    (agent, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_idempotency_key_sent_three_times_at_once_writes_once() {
    let pair = pair().await;
    let admin = Mcp::http(&pair.bases[0]).await;
    let (agent, task) = agent_with_task(&admin).await;
    let submission = json!({
        "task_id": task["id"], "agent_id": agent["id"], "idempotency_key": "retry-1",
        "evidence": [{ "kind": "test_results", "passed": 3, "failed": 0 }]
    });
    let answers = at_once(&pair, 3, 3, "submit_evidence", |_| submission.clone()).await;
    for answer in &answers {
        assert_ne!(answer.is_error, Some(true), "{answer:?}");
        assert_eq!(answer.structured_content, answers[0].structured_content);
    }
    let detail = admin
        .call("get_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(
        detail["evidence"].as_array().unwrap().len(),
        1,
        "written once"
    );

    // The same key with another body is refused, naming the key, and writes nothing.
    let mut other = submission.clone();
    other["evidence"][0]["failed"] = json!(1);
    let refused = admin.invalid("submit_evidence", other).await;
    assert_eq!(refused.field.as_deref(), Some("idempotency_key"));
    let detail = admin
        .call("get_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(detail["evidence"].as_array().unwrap().len(), 1);
    admin.close().await;
    pair.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_calls_on_one_task_yield_one_chain_and_one_verdict() {
    let pair = pair().await;
    let admin = Mcp::http(&pair.bases[0]).await;
    let (agent, task) = agent_with_task(&admin).await;

    let (task_id, agent_id) = (task["id"].clone(), agent["id"].clone());
    let submitted = at_once(&pair, 20, 1000, "submit_evidence", |i| {
        json!({
            "task_id": task_id, "agent_id": agent_id,
            "evidence": [{ "kind": "test_results", "passed": i, "failed": 0 }]
        })
    })
    .await;
    let refused: Vec<_> = submitted
        .iter()
        .filter(|r| r.is_error == Some(true))
        .collect();
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        refused.first()
    );
    let mut positions: Vec<i64> = submitted
        .iter()
        .map(|r| {
            r.structured_content.as_ref().unwrap()["evidence"]["chain_index"]
                .as_i64()
                .unwrap()
        })
        .collect();
    positions.sort_unstable();
    assert_eq!(
        positions,
        (0..1000).collect::<Vec<i64>>(),
        "one chain, no gaps, no repeats"
    );

    let task_id = task["id"].clone();
    let verdicts = at_once(
        &pair,
        20,
        1000,
        "verify_task",
        |_| json!({ "task_id": task_id }),
    )
    .await;
    let won: Vec<_> = verdicts
        .iter()
        .filter(|r| r.is_error != Some(true))
        .collect();
    assert_eq!(won.len(), 1, "exactly one verdict");
    for lost in verdicts.iter().filter(|r| r.is_error == Some(true)) {
        let text = common::text(lost);
        assert!(
            text.contains("only a `submitted` task can be verified"),
            "{text}"
        );
    }
    let detail = admin
        .call("get_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(detail["verifications"].as_array().unwrap().len(), 1);
    assert_eq!(detail["evidence"].as_array().unwrap().len(), 1000);
    assert_eq!(detail["status"], "verified");
    let audit = admin.call("verify_audit_log", json!({})).await;
    assert_eq!(audit["intact"], true, "{audit:#}");
    println!(
        "FIGURES: races instances=2 submissions=1000 (20 clients) chain=0..999 gapless \
         verifications=1000 verdicts=1 refused_cleanly=999 audit_intact=true writes_lost=0"
    );
    admin.close().await;
    pair.stop().await;
}
