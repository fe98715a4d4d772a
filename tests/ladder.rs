//! Hours of enforcement behaviour in milliseconds: an in-process ARES on a manual clock,
//! driven over streamable HTTP by a real MCP client, with the sweeper run by hand.

mod common;

use ares::Ares;
use ares::clock::ManualClock;
use ares::enforcement::Policy;
use chrono::{Duration, Utc};
use common::{HttpServer, Mcp, db::TestDatabase, scenarios::register};
use serde_json::{Value, json};
use std::sync::Arc;

struct World {
    mcp: Mcp,
    server: HttpServer,
    clock: ManualClock,
    _db: TestDatabase,
}

async fn world(db: TestDatabase) -> World {
    let clock = ManualClock::new(Utc::now());
    let store = ares::store::connect(&db.url).await.unwrap();
    // A throttle of 2 leaves room for the one open task these stories keep aside.
    let policy = Policy {
        throttle_limit: 2,
        ..Policy::default()
    };
    let ares = Arc::new(
        Ares::new(store)
            .with_clock(Arc::new(clock.clone()))
            .with_policy(policy),
    );
    let server = HttpServer::serving(ares, common::test_options()).await;
    let mcp = Mcp::http(&server.base).await;
    World {
        mcp,
        server,
        clock,
        _db: db,
    }
}

fn criteria() -> Value {
    json!([{ "type": "tests_pass" }])
}

/// Gives the agent a task, lets `secs` pass, submits tests with `failed` failures, verifies.
async fn work(w: &World, agent: &Value, cap: &str, failed: i64, secs: i64) -> Value {
    let task = w
        .mcp
        .call("create_task", json!({ "description": "t", "required_capabilities": [cap], "criteria": criteria(), "agent_id": agent["id"] }))
        .await;
    w.clock.advance(Duration::seconds(secs));
    w.mcp
        .call("submit_evidence", json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": [{ "kind": "test_results", "passed": 5, "failed": failed }] }))
        .await;
    w.mcp
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await
}

fn kinds(verdict: &Value) -> Vec<String> {
    verdict["enforcement_actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_agent_is_suspended_then_returns_on_probation_and_earns_its_way_back() {
    let w = world(TestDatabase::sqlite().await).await;
    let agent = register(&w.mcp, &["ops"]).await;
    let backup = register(&w.mcp, &["ops"]).await;
    let open = w
        .mcp
        .call("create_task", json!({ "description": "open work", "required_capabilities": ["ops"], "criteria": criteria(), "agent_id": agent["id"] }))
        .await;
    let mut ladder = Vec::new();
    for _ in 0..3 {
        ladder.extend(kinds(&work(&w, &agent, "ops", 1, 30).await));
    }
    assert_eq!(ladder, ["warning", "throttle", "suspend", "escalate"]);
    let moved = w
        .mcp
        .call("get_task", json!({ "task_id": open["id"] }))
        .await;
    assert_eq!(
        moved["agent_id"], backup["id"],
        "open work escalated to the backup"
    );

    // While suspended its calls are refused, naming when the suspension ends.
    let task = w
        .mcp
        .call(
            "create_task",
            json!({ "description": "t", "required_capabilities": ["ops"], "criteria": criteria() }),
        )
        .await;
    let refusal = w
        .mcp
        .refused(
            "assign_task",
            json!({ "task_id": task["id"], "agent_id": agent["id"] }),
        )
        .await;
    assert!(refusal.contains("is suspended until"), "{refusal}");

    // Half an hour later the sweeper brings it back on probation, throttled.
    w.clock.advance(Duration::minutes(31));
    let swept = w.server.ares.sweep().await.unwrap();
    assert_eq!(swept.probation.len(), 1);
    let back = w
        .mcp
        .call("get_agent", json!({ "agent_id": agent["id"] }))
        .await;
    assert_eq!(back["status"], "active");
    assert_eq!(back["on_probation"], true);
    assert_eq!(back["throttle_limit"], 2);
    let actions = w
        .mcp
        .call(
            "list_enforcement_actions",
            json!({ "agent_id": agent["id"], "action": "reinstate" }),
        )
        .await;
    assert!(
        actions["actions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("probation")
    );

    // Three verified tasks in a row end probation.
    let mut earned = Vec::new();
    for _ in 0..3 {
        earned.extend(kinds(&work(&w, &agent, "ops", 0, 30).await));
    }
    assert_eq!(earned, ["reinstate"]);
    let free = w
        .mcp
        .call("get_agent", json!({ "agent_id": agent["id"] }))
        .await;
    assert_eq!(
        (free["on_probation"].clone(), free["throttle_limit"].clone()),
        (json!(false), Value::Null)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_probation_suspends_again() {
    let w = world(TestDatabase::postgres().await).await;
    let agent = register(&w.mcp, &["ops"]).await;
    w.mcp.call("enforce", json!({ "agent_id": agent["id"], "action": "suspend", "reason": "manual", "duration_minutes": 5 })).await;
    w.clock.advance(Duration::minutes(6));
    w.server.ares.sweep().await.unwrap();
    let verdict = work(&w, &agent, "ops", 1, 10).await;
    assert_eq!(kinds(&verdict), ["suspend", "escalate"]);
    let again = w
        .mcp
        .call("get_agent", json!({ "agent_id": agent["id"] }))
        .await;
    assert_eq!(again["status"], "suspended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_reassigns_missed_deadlines_and_work_of_suspended_agents() {
    let w = world(TestDatabase::sqlite().await).await;
    let slow = register(&w.mcp, &["db"]).await;
    let other = register(&w.mcp, &["db"]).await;
    let deadline = (w.server.ares.now() + Duration::hours(1)).to_rfc3339();
    let due = w
        .mcp
        .call("create_task", json!({ "description": "migrate", "required_capabilities": ["db"], "criteria": criteria(), "agent_id": slow["id"], "deadline": deadline }))
        .await;
    assert!(
        w.server.ares.sweep().await.unwrap().overdue.is_empty(),
        "not due yet"
    );
    w.clock.advance(Duration::hours(2));
    let swept = w.server.ares.sweep().await.unwrap();
    assert_eq!(swept.overdue.len(), 1);
    let moved = w
        .mcp
        .call("get_task", json!({ "task_id": due["id"] }))
        .await;
    assert_eq!(moved["agent_id"], other["id"]);
    let again = w.server.ares.sweep().await.unwrap();
    assert!(
        again.overdue.is_empty(),
        "a task handed on after its deadline is not moved every sweep"
    );
    let last = moved["history"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["reason"].as_str().unwrap().contains("deadline missed"),
        "{last}"
    );

    // A manual suspension without escalation: the sweeper moves the open work.
    let held = w
        .mcp
        .call("create_task", json!({ "description": "more", "required_capabilities": ["db"], "criteria": criteria(), "agent_id": other["id"] }))
        .await;
    w.mcp.call("enforce", json!({ "agent_id": other["id"], "action": "suspend", "reason": "investigating", "duration_minutes": 0 })).await;
    let swept = w.server.ares.sweep().await.unwrap();
    assert!(
        swept
            .escalated
            .contains(&uuid::Uuid::parse_str(held["id"].as_str().unwrap()).unwrap())
    );
    let moved = w
        .mcp
        .call("get_task", json!({ "task_id": held["id"] }))
        .await;
    assert_eq!(moved["agent_id"], slow["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reliability_explains_a_sudden_slowdown_against_the_agents_own_baseline() {
    let w = world(TestDatabase::sqlite().await).await;
    let agent = register(&w.mcp, &["ops"]).await;
    for _ in 0..6 {
        work(&w, &agent, "ops", 0, 60).await;
    }
    let calm = w
        .mcp
        .call("get_reliability", json!({ "agent_id": agent["id"] }))
        .await;
    assert_eq!(calm["anomalies"].as_array().unwrap().len(), 0, "{calm}");
    work(&w, &agent, "ops", 0, 3600).await;
    let rel = w
        .mcp
        .call(
            "get_reliability",
            json!({ "agent_id": agent["id"], "window": "24h" }),
        )
        .await;
    let slowdown = rel["anomalies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "slowdown")
        .cloned();
    let slowdown = slowdown.unwrap_or_else(|| panic!("no slowdown in {rel}"));
    assert_eq!(slowdown["numbers"]["observed"], 3600.0);
    assert_eq!(slowdown["numbers"]["mean"], 60.0);
    assert!(!slowdown["recommendation"].as_str().unwrap().is_empty());
    assert_eq!(rel["baseline"]["response_time"]["samples"], 6);
    assert!(rel["response_time_p95"].as_f64().unwrap() >= 3600.0);

    // The 1h window no longer sees the early verdicts: the clock moved on.
    w.clock.advance(Duration::hours(2));
    let recent = w
        .mcp
        .call(
            "get_reliability",
            json!({ "agent_id": agent["id"], "window": "1h" }),
        )
        .await;
    assert_eq!(recent["verifications"], 0);
}

#[tokio::test]
async fn a_bad_policy_file_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.json");
    std::fs::write(&path, r#"{"suspend_after": "three"}"#).unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .args(["serve", "--policy"])
        .arg(&path)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("a.db").display()),
        )
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("suspend_after"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_history_and_keeps_the_record() {
    let w = world(TestDatabase::sqlite().await).await;
    let cap = format!("cap-{}", uuid::Uuid::new_v4().simple());
    let agent = register(&w.mcp, &[&cap]).await;
    let verdict = work(&w, &agent, &cap, 0, 60).await;
    assert_eq!(verdict["outcome"], "verified");
    let store = &w.server.ares.store;
    let events_before = store.events_after(None, 1000).await.unwrap().len();
    assert!(events_before >= 5, "{events_before} events");

    // Inside both windows nothing goes.
    let kept = w.server.ares.prune_history().await.unwrap();
    assert_eq!((kept.events, kept.snapshots), (0, 0));

    // Past the 30-day event window, the events go; the 90-day snapshots stay.
    w.clock.advance(Duration::days(31));
    let later = work(&w, &agent, &cap, 0, 60).await;
    assert_eq!(later["outcome"], "verified");
    let pruned = w.server.ares.prune_history().await.unwrap();
    assert_eq!(pruned.events as usize, events_before);
    assert_eq!(pruned.snapshots, 0);
    let left = store.events_after(None, 1000).await.unwrap();
    assert!(!left.is_empty());
    let cutoff = w.server.ares.now() - Duration::days(30);
    assert!(left.iter().all(|(_, e)| e.timestamp >= cutoff));

    // Past 90 days the first trend point goes too; the record itself never does.
    w.clock.advance(Duration::days(60));
    let pruned = w.server.ares.prune_history().await.unwrap();
    assert_eq!(pruned.snapshots, 1, "the first verdict's snapshot");
    let task = &verdict["task_id"];
    let detail = w.mcp.call("get_task", json!({ "task_id": task })).await;
    assert_eq!(
        detail["evidence"].as_array().unwrap().len(),
        1,
        "{detail:#}"
    );
    assert_eq!(detail["verifications"].as_array().unwrap().len(), 1);
    let audit = w.mcp.call("verify_audit_log", json!({})).await;
    assert_eq!(audit["intact"], true, "{audit:#}");
}
