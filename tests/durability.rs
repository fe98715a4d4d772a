//! Crash consistency: many agents submit and verify concurrently against a real `ares serve
//! --http`; the server is killed with SIGKILL mid-load and started again on the same
//! database. Every call that was acknowledged must still be there, nothing half-written may
//! be visible, and the audit log and every evidence chain must still verify.

mod common;

use common::acked::{Acknowledged, check_survived};
use common::db::TestDatabase;
use common::scenarios::register;
use common::{ADMIN_TOKEN, Mcp, spawn_http, terminate};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WORKERS: usize = 24;
const TASKS_PER_WORKER: usize = 12;

async fn call(mcp: &Mcp, tool: &str, args: Value) -> Option<Value> {
    let Value::Object(args) = args else {
        unreachable!()
    };
    match mcp
        .client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
    {
        Ok(result) if result.is_error != Some(true) => result.structured_content,
        _ => None,
    }
}

/// Submits and verifies its tasks in turn, recording each acknowledged answer, until the
/// server goes away.
async fn work(mcp: Mcp, agent: Value, tasks: Vec<Value>, acked: Arc<Mutex<Acknowledged>>) {
    for (i, task) in tasks.iter().enumerate() {
        let failed = i64::from(i % 3 == 0);
        let receipt = call(
            &mcp,
            "submit_evidence",
            json!({
                "task_id": task["id"], "agent_id": agent["id"],
                "idempotency_key": format!("crash-{}", task["id"].as_str().unwrap()),
                "evidence": [
                    { "kind": "test_results", "passed": 9, "failed": failed },
                    { "kind": "log", "content": "x".repeat(2000) }
                ]
            }),
        )
        .await;
        let Some(receipt) = receipt else { return };
        let task_id = task["id"].as_str().unwrap().to_string();
        acked.lock().unwrap().evidence.insert(
            task_id.clone(),
            receipt["evidence"]["id"].as_str().unwrap().to_string(),
        );
        let Some(verdict) = call(&mcp, "verify_task", json!({ "task_id": task["id"] })).await
        else {
            return;
        };
        acked.lock().unwrap().verdicts.insert(
            task_id,
            (
                verdict["id"].as_str().unwrap().to_string(),
                verdict["task_status"].as_str().unwrap().to_string(),
            ),
        );
    }
}

async fn survives_sigkill_mid_load(db: TestDatabase) {
    let env = [("ARES_ADMIN_TOKEN", ADMIN_TOKEN), ("ARES_LOG", "warn")];
    let (server, base) = spawn_http(&db.url, &env).await;
    let admin = Mcp::http(&base).await;

    // Each worker is an agent with its own assigned tasks.
    let mut crew = Vec::new();
    for _ in 0..WORKERS {
        let agent = admin
            .call(
                "register_agent",
                json!({ "name": format!("agent-{}", uuid::Uuid::new_v4().simple()), "capabilities": ["rust"], "max_concurrent_tasks": 100 }),
            )
            .await;
        let mut tasks = Vec::new();
        for _ in 0..TASKS_PER_WORKER {
            tasks.push(
                admin
                    .call(
                        "create_task",
                        json!({ "description": "crash", "required_capabilities": ["rust"],
                                "criteria": [{ "type": "tests_pass", "max_failed": 0 }],
                                "agent_id": agent["id"] }),
                    )
                    .await,
            );
        }
        crew.push((agent, tasks));
    }
    let acked = Arc::new(Mutex::new(Acknowledged::default()));
    let mut workers = Vec::new();
    for (agent, tasks) in crew.iter().cloned() {
        let mcp = Mcp::http(&base).await;
        workers.push(tokio::spawn(work(mcp, agent, tasks, acked.clone())));
    }
    // Kill it once a good part of the work is acknowledged, with the rest in flight.
    let total = WORKERS * TASKS_PER_WORKER;
    for _ in 0..600 {
        if acked.lock().unwrap().verdicts.len() >= total / 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut server = server;
    server.kill().await.expect("SIGKILL");
    // Calls in flight at the kill were never acknowledged: give their clients a moment to
    // notice, then stop waiting for them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    for worker in workers {
        let abort = worker.abort_handle();
        if tokio::time::timeout_at(deadline, worker).await.is_err() {
            abort.abort();
        }
    }
    drop(admin);
    let mut acked = std::mem::take(&mut *acked.lock().unwrap());
    // Every task was created, and acknowledged, before the load.
    let ids: Vec<String> = crew
        .iter()
        .flat_map(|(_, tasks)| tasks.iter())
        .map(|task| task["id"].as_str().unwrap().to_string())
        .collect();
    acked.tasks.extend(ids.iter().cloned());
    assert!(
        acked.verdicts.len() >= total / 4 && acked.verdicts.len() < total,
        "killed mid-load: {} of {total} verified",
        acked.verdicts.len()
    );

    // Start again on the same database.
    let (server, base) = spawn_http(&db.url, &env).await;
    let admin = Mcp::http(&base).await;
    let survival = check_survived(&admin, &ids, &acked).await;
    assert!(survival.lost.is_empty(), "lost: {:?}", survival.lost);
    let audit = admin.call("verify_audit_log", json!({})).await;
    // Reaching here means every check above held: nothing acknowledged was lost.
    println!(
        "FIGURES: sigkill backend={} agents={WORKERS} tasks={total} faults=1 (SIGKILL mid-load) \
         acknowledged_writes={} acknowledged_submissions={} acknowledged_verdicts={} \
         writes_lost=0 half_written=0 audit_intact=true evidence_chains={}",
        db.backend,
        survival.checked,
        acked.evidence.len(),
        acked.verdicts.len(),
        audit["evidence_chains"]
    );

    // And it carries on: an agent that had work cut short finishes it now.
    let agent = register(&admin, &["rust"]).await;
    assert_eq!(agent["status"], "active");
    admin.close().await;
    let (code, stderr) = terminate(server).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_survives_sigkill_mid_load() {
    survives_sigkill_mid_load(TestDatabase::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_survives_sigkill_mid_load() {
    survives_sigkill_mid_load(TestDatabase::postgres().await).await;
}
