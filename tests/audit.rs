//! The tamper-evident audit log as its users meet it: every change lands in a hash chain,
//! reads and refusals leave it alone, the database refuses to change it, and whatever
//! someone does to it behind ARES's back — editing, deleting or reordering rows, or
//! rebuilding the whole chain — is found and located, over MCP and by `ares audit verify`.
//! Every story runs on SQLite and on PostgreSQL.

mod common;

use ares::audit::{AuditKey, AuditRecord, GENESIS};
use common::{HttpServer, Mcp, db::TestDatabase, scenarios};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// ARES over stdio on `db`, signing checkpoints with `key` only when asked (the timer is
/// tested on its own, where its ticks can be waited for).
async fn ares_on(db: &TestDatabase, key: &AuditKey) -> Mcp {
    let seed = key.seed_base64();
    Mcp::stdio_with(
        &db.url,
        &[
            ("ARES_AUDIT_KEY", seed.as_str()),
            ("ARES_AUDIT_CHECKPOINT_MINUTES", "0"),
        ],
    )
    .await
}

/// The whole log, paging through `get_audit_log`.
async fn audit_log(mcp: &Mcp) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = json!(null);
    loop {
        let page = mcp
            .call("get_audit_log", json!({ "after": after, "limit": 4 }))
            .await;
        entries.extend(page["entries"].as_array().unwrap().iter().cloned());
        match &page["next_after"] {
            Value::Null => return entries,
            next => after = next.clone(),
        }
    }
}

async fn verify(mcp: &Mcp) -> Value {
    mcp.call("verify_audit_log", json!({})).await
}

fn digest(args: &Value) -> String {
    hex::encode(Sha256::digest(
        serde_json_canonicalizer::to_vec(args).unwrap(),
    ))
}

/// Runs SQL straight against the database, behind ARES's back, as the database's owner.
async fn raw_sql(db: &TestDatabase, sql: &str) -> Result<(), String> {
    use sqlx::Connection;
    if db.backend == "sqlite" {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        let done = sqlx::raw_sql(sql).execute(&mut conn).await;
        conn.close().await.unwrap();
        done.map(|_| ()).map_err(|e| e.to_string())
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let done = sqlx::raw_sql(sql).execute(&mut conn).await;
        conn.close().await.unwrap();
        done.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// What someone able to get past the triggers does: on SQLite drop them, on PostgreSQL
/// disable them (as superuser) for the statement and turn them back on.
async fn tamper(db: &TestDatabase, sql: &str) {
    let wrapped = if db.backend == "sqlite" {
        format!(
            "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete; \
             DROP TRIGGER IF EXISTS audit_checkpoints_no_delete; {sql}"
        )
    } else {
        format!(
            "ALTER TABLE audit_log DISABLE TRIGGER ALL; \
             ALTER TABLE audit_checkpoints DISABLE TRIGGER ALL; {sql}; \
             ALTER TABLE audit_log ENABLE TRIGGER ALL; \
             ALTER TABLE audit_checkpoints ENABLE TRIGGER ALL;"
        )
    };
    raw_sql(db, &wrapped)
        .await
        .unwrap_or_else(|e| panic!("tampering failed: {e}"));
}

/// Registers an agent and runs it through a task, leaving six entries: register, create,
/// assign, start, submit, verify.
async fn six_entries(mcp: &Mcp) -> Vec<Value> {
    scenarios::full_lifecycle(mcp).await;
    let log = audit_log(mcp).await;
    let tools: Vec<&str> = log.iter().map(|e| e["tool"].as_str().unwrap()).collect();
    assert_eq!(
        tools,
        [
            "register_agent",
            "create_task",
            "assign_task",
            "start_task",
            "submit_evidence",
            "verify_task"
        ]
    );
    log
}

fn first_broken(report: &Value) -> (i64, String, Value) {
    let b = &report["first_broken"];
    assert!(b.is_object(), "a break is reported: {report}");
    (
        b["index"].as_i64().unwrap(),
        b["reason"].as_str().unwrap().to_string(),
        b["id"].clone(),
    )
}

fn ares_cli(db: &TestDatabase, key: &AuditKey, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .arg("audit")
        .args(args)
        .env("DATABASE_URL", &db.url)
        .env("ARES_AUDIT_KEY", key.seed_base64())
        .env("ARES_LOG", "warn")
        .output()
        .expect("run ares audit")
}

// ---------------------------------------------------------------------------------------
// Stories
// ---------------------------------------------------------------------------------------

async fn mutating_calls_land_in_the_log_with_tool_digest_and_subjects(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let register =
        json!({ "name": "auditor-1", "capabilities": ["rust"], "max_concurrent_tasks": 2 });
    let agent = mcp.call("register_agent", register.clone()).await;
    let create = json!({
        "description": "audit me",
        "required_capabilities": ["rust"],
        "criteria": [{ "type": "evidence_present", "kind": "diff" }]
    });
    let task = mcp.call("create_task", create.clone()).await;
    mcp.call(
        "assign_task",
        json!({ "task_id": task["id"], "agent_id": agent["id"] }),
    )
    .await;

    let log = audit_log(&mcp).await;
    assert_eq!(log.len(), 3, "{log:#?}");
    let first = &log[0];
    assert_eq!(first["seq"], 1);
    assert_eq!(first["tool"], "register_agent");
    assert_eq!(first["args_digest"], digest(&register));
    assert_eq!(first["outcome"], "ok");
    assert_eq!(
        first["actor"],
        json!({ "key_id": null, "role": "admin", "agent_id": null, "label": "local" })
    );
    assert_eq!(first["agent_ids"], json!([agent["id"]]));
    assert_eq!(first["prev_hash"], GENESIS);
    assert!(first["at"].is_string());

    assert_eq!(log[1]["tool"], "create_task");
    assert_eq!(log[1]["args_digest"], digest(&create));
    assert_eq!(log[1]["task_ids"], json!([task["id"]]));
    assert_eq!(log[2]["tool"], "assign_task");
    assert_eq!(log[2]["task_ids"], json!([task["id"]]));
    assert_eq!(log[2]["agent_ids"], json!([agent["id"]]));
    for pair in log.windows(2) {
        assert_eq!(
            pair[1]["prev_hash"], pair[0]["hash"],
            "each entry chains on"
        );
    }
    mcp.close().await;
}

async fn read_only_calls_leave_no_entry(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let agent = scenarios::register(&mcp, &["rust"]).await;
    let before = audit_log(&mcp).await;
    assert_eq!(before.len(), 1);

    mcp.call("get_agent", json!({ "agent_id": agent["id"] }))
        .await;
    mcp.call("list_agents", json!({})).await;
    mcp.call("list_tasks", json!({})).await;
    mcp.call("get_reliability", json!({ "agent_id": agent["id"] }))
        .await;
    mcp.call("get_report", json!({ "report": "reliability" }))
        .await;
    mcp.call("list_enforcement_actions", json!({})).await;
    mcp.call("health", json!({})).await;
    verify(&mcp).await;

    assert_eq!(audit_log(&mcp).await, before);
    mcp.close().await;
}

async fn refused_calls_change_nothing_in_the_log(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let agent = scenarios::register(&mcp, &["rust"]).await;
    let before = audit_log(&mcp).await;

    mcp.refused(
        "register_agent",
        json!({ "name": agent["name"], "capabilities": ["rust"] }),
    )
    .await;
    mcp.refused(
        "assign_task",
        json!({ "task_id": uuid::Uuid::new_v4(), "agent_id": agent["id"] }),
    )
    .await;
    mcp.invalid("create_task", json!({ "description": 7 }))
        .await;
    mcp.invalid("get_audit_log", json!({ "limit": 0 })).await;
    mcp.invalid("no_such_tool", json!({})).await;

    assert_eq!(audit_log(&mcp).await, before);
    mcp.close().await;
}

async fn a_lifecycle_verifies_intact(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let log = six_entries(&mcp).await;
    let checkpoint = mcp.call("checkpoint_audit_log", json!({})).await;
    assert_eq!(checkpoint["length"], 6);
    assert_eq!(checkpoint["head_hash"], log[5]["hash"]);

    let report = verify(&mcp).await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["entries"], 6);
    assert_eq!(report["head_hash"], log[5]["hash"]);
    assert_eq!(report["evidence_chains"], 1);
    assert_eq!(report["first_broken"], Value::Null);
    assert_eq!(report["checkpoint"]["checked"], 1);
    assert_eq!(report["checkpoint"]["latest"], checkpoint);
    mcp.close().await;
}

async fn the_database_refuses_to_change_the_log(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    scenarios::register(&mcp, &["rust"]).await;
    mcp.call("checkpoint_audit_log", json!({})).await;
    let before = audit_log(&mcp).await;

    let mut refusals = vec![
        "UPDATE audit_log SET body = '{}' WHERE seq = 1",
        "DELETE FROM audit_log WHERE seq = 1",
        "UPDATE audit_checkpoints SET length = 0",
        "DELETE FROM audit_checkpoints",
    ];
    if db.backend == "postgres" {
        refusals.extend(["TRUNCATE audit_log", "TRUNCATE audit_checkpoints"]);
    }
    for sql in refusals {
        let err = raw_sql(db, sql).await.expect_err(sql);
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(audit_log(&mcp).await, before);
    assert_eq!(verify(&mcp).await["intact"], true);
    mcp.close().await;
}

async fn an_edited_entry_is_detected_and_located(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let log = six_entries(&mcp).await;
    tamper(
        db,
        "UPDATE audit_log SET body = replace(body, '\"role\":\"admin\"', '\"role\":\"observer\"') \
         WHERE seq = 3",
    )
    .await;

    let report = verify(&mcp).await;
    assert_eq!(report["intact"], false);
    assert_eq!(
        first_broken(&report),
        (3, "edited".into(), log[2]["id"].clone())
    );
    mcp.close().await;
}

async fn a_deleted_entry_is_detected(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let log = six_entries(&mcp).await;
    tamper(db, "DELETE FROM audit_log WHERE seq = 4").await;

    let report = verify(&mcp).await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["entries"], 5);
    assert_eq!(
        first_broken(&report),
        (4, "removed".into(), log[4]["id"].clone()),
        "names the gap and the entry after it"
    );
    mcp.close().await;
}

async fn the_end_of_the_log_cut_off_is_caught_by_the_checkpoint(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    six_entries(&mcp).await;
    mcp.call("checkpoint_audit_log", json!({})).await;
    tamper(db, "DELETE FROM audit_log WHERE seq >= 5").await;

    let report = verify(&mcp).await;
    assert_eq!(report["intact"], false);
    assert_eq!(first_broken(&report), (5, "removed".into(), Value::Null));
    mcp.close().await;
}

async fn reordered_entries_are_detected(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let log = six_entries(&mcp).await;
    tamper(
        db,
        "UPDATE audit_log SET seq = -1 WHERE seq = 2; \
         UPDATE audit_log SET seq = 2 WHERE seq = 5; \
         UPDATE audit_log SET seq = 5 WHERE seq = -1",
    )
    .await;

    let report = verify(&mcp).await;
    assert_eq!(report["intact"], false);
    assert_eq!(
        first_broken(&report),
        (2, "reordered".into(), log[4]["id"].clone())
    );
    mcp.close().await;
}

/// Rebuilds the chain from entry `from` on so that every link checks out again, as someone
/// who knows the algorithm but not ARES's key would.
async fn rewrite_chain(
    db: &TestDatabase,
    log: &[Value],
    from: usize,
    edit: impl Fn(&mut AuditRecord),
) {
    let mut records: Vec<AuditRecord> = log
        .iter()
        .map(|e| serde_json::from_value(e.clone()).unwrap())
        .collect();
    edit(&mut records[from - 1]);
    let mut sql = String::new();
    for i in from - 1..records.len() {
        if i > 0 {
            records[i].prev_hash = records[i - 1].hash.clone();
        }
        records[i].hash = records[i].expected_hash();
        let r = &records[i];
        let body = serde_json::to_string(&r.body())
            .unwrap()
            .replace('\'', "''");
        sql.push_str(&format!(
            "UPDATE audit_log SET body = '{body}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
            r.prev_hash, r.hash, r.seq
        ));
    }
    assert_eq!(
        ares::audit::verify_chain(&records),
        Ok(()),
        "the rebuilt chain holds together by itself"
    );
    tamper(db, sql.trim_end_matches(';')).await;
}

async fn a_full_rewrite_is_caught_by_the_checkpoint(db: &TestDatabase) {
    let key = AuditKey::generate();
    let mcp = ares_on(db, &key).await;
    let log = six_entries(&mcp).await;
    let checkpoint = mcp.call("checkpoint_audit_log", json!({})).await;
    assert_eq!(checkpoint["public_key"], key.public_key());

    rewrite_chain(db, &log, 2, |r| r.tool = "get_task".into()).await;

    let report = verify(&mcp).await;
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(
        first_broken(&report),
        (6, "rewritten".into(), log[5]["id"].clone())
    );
    assert!(
        report["first_broken"]["detail"]
            .as_str()
            .unwrap()
            .contains("entries 1 to 6"),
        "{report}"
    );

    // Deleting the stored checkpoints too does not help against one kept elsewhere.
    tamper(db, "DELETE FROM audit_checkpoints").await;
    assert_eq!(
        verify(&mcp).await["intact"],
        true,
        "nothing left to compare with"
    );
    let report = mcp
        .call("verify_audit_log", json!({ "checkpoint": checkpoint }))
        .await;
    assert_eq!(report["intact"], false);
    assert_eq!(report["checkpoint"]["supplied_matches"], false);
    assert_eq!(first_broken(&report).1, "rewritten");

    // A checkpoint whose signature does not hold is refused as input.
    let mut forged = checkpoint.clone();
    forged["length"] = json!(2);
    let invalid = mcp
        .invalid("verify_audit_log", json!({ "checkpoint": forged }))
        .await;
    assert_eq!(invalid.field.as_deref(), Some("checkpoint"));
    mcp.close().await;
}

async fn a_checkpoint_signed_by_another_key_is_not_trusted(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    six_entries(&mcp).await;
    mcp.call("checkpoint_audit_log", json!({})).await;
    mcp.close().await;

    // Restarted with another key: the old checkpoint is reported, not relied on.
    let mcp = ares_on(db, &AuditKey::generate()).await;
    let report = verify(&mcp).await;
    assert_eq!(report["intact"], true);
    assert_eq!(report["checkpoint"]["checked"], 0);
    assert_eq!(report["checkpoint"]["untrusted"], 1);
    mcp.close().await;
}

async fn tampered_evidence_is_detected(db: &TestDatabase) {
    let mcp = ares_on(db, &AuditKey::generate()).await;
    six_entries(&mcp).await;
    raw_sql(
        db,
        "UPDATE evidence SET body = replace(body, '\"passed\":12', '\"passed\":120')",
    )
    .await
    .unwrap();

    let report = verify(&mcp).await;
    assert_eq!(report["intact"], false);
    assert_eq!(
        report["first_broken"],
        Value::Null,
        "the audit log itself is fine"
    );
    let broken = report["broken_evidence"].as_array().unwrap();
    assert_eq!(broken.len(), 1, "{report}");
    assert_eq!(broken[0]["index"], 0);
    mcp.close().await;
}

async fn concurrent_mutating_calls_still_form_one_chain(db: &TestDatabase) {
    let server = HttpServer::start(&db.url).await;
    let mcp = Arc::new(Mcp::http(&server.base).await);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..20 {
        let mcp = mcp.clone();
        calls.spawn(async move {
            mcp.call(
                "register_agent",
                json!({ "name": format!("concurrent-{i}"), "capabilities": ["rust"] }),
            )
            .await
        });
    }
    let mut agents = Vec::new();
    while let Some(agent) = calls.join_next().await {
        agents.push(agent.unwrap()["id"].clone());
    }

    let log = audit_log(&mcp).await;
    let seqs: Vec<i64> = log.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    for agent in &agents {
        assert!(
            log.iter().any(|e| e["agent_ids"] == json!([agent])),
            "every call has its entry"
        );
    }
    let report = verify(&mcp).await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["entries"], 20);
    Arc::into_inner(mcp).unwrap().close().await;
    server.stop().await;
}

async fn callers_are_recorded_by_key_role_and_agent(db: &TestDatabase) {
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let agent = scenarios::register(&admin, &["rust"]).await;
    let created = admin
        .call(
            "create_api_key",
            json!({ "role": "agent", "agent_id": agent["id"] }),
        )
        .await;
    let key_id = created["api_key"]["id"].clone();
    let task = scenarios::assigned_task(&admin, &agent["id"], &["rust"]).await;
    let as_agent = Mcp::http_as(&server.base, created["key"].as_str().unwrap()).await;
    as_agent
        .call(
            "start_task",
            json!({ "task_id": task["id"], "agent_id": agent["id"] }),
        )
        .await;
    let refusal = as_agent.refused("get_audit_log", json!({})).await;
    assert!(refusal.contains("audit"), "{refusal}");

    let log = audit_log(&admin).await;
    let tools: Vec<&str> = log.iter().map(|e| e["tool"].as_str().unwrap()).collect();
    assert_eq!(
        tools,
        [
            "register_agent",
            "create_api_key",
            "create_task",
            "assign_task",
            "start_task"
        ]
    );
    assert_eq!(
        log[1]["actor"],
        json!({ "key_id": "admin-token", "role": "admin", "agent_id": null, "label": "admin-token" })
    );
    assert_eq!(log[1]["agent_ids"], json!([agent["id"]]), "the key's agent");
    assert_eq!(
        log[4]["actor"],
        json!({ "key_id": key_id, "role": "agent", "agent_id": agent["id"], "label": key_id })
    );
    assert_eq!(verify(&admin).await["intact"], true);
    as_agent.close().await;
    admin.close().await;
    server.stop().await;
}

async fn the_cli_verifies_and_fails_on_tampering(db: &TestDatabase) {
    let key = AuditKey::generate();
    let mcp = ares_on(db, &key).await;
    let log = six_entries(&mcp).await;
    mcp.close().await;

    let out = ares_cli(db, &key, &["verify"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["intact"], true);
    assert_eq!(report["entries"], 6);

    tamper(
        db,
        "UPDATE audit_log SET body = replace(body, 'assign_task', 'get_task') WHERE seq = 3",
    )
    .await;
    let out = ares_cli(db, &key, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = log[2]["id"].as_str().unwrap();
    assert!(
        stderr.contains(&format!("entry 3 ({id}) was edited")),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first_broken(&report).0, 3);
}

async fn an_exported_checkpoint_catches_a_rewrite_from_the_cli(db: &TestDatabase) {
    let key = AuditKey::generate();
    let mcp = ares_on(db, &key).await;
    let log = six_entries(&mcp).await;
    mcp.close().await;

    let out = ares_cli(db, &key, &["checkpoint"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let checkpoint: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(checkpoint["length"], 6);
    assert_eq!(checkpoint["head_hash"], log[5]["hash"]);
    let kept = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(kept.path(), &out.stdout).unwrap();

    rewrite_chain(db, &log, 4, |r| r.agent_ids.clear()).await;
    tamper(db, "DELETE FROM audit_checkpoints").await;
    let path = kept.path().to_str().unwrap();
    let out = ares_cli(db, &key, &["verify", "--checkpoint", path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("entry 6") && stderr.contains("rewritten"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------
// On both backends
// ---------------------------------------------------------------------------------------

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::TestDatabase::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(&super::TestDatabase::postgres().await).await;
                }
            )*
        }
    };
}

on_both!(
    mutating_calls_land_in_the_log_with_tool_digest_and_subjects,
    read_only_calls_leave_no_entry,
    refused_calls_change_nothing_in_the_log,
    a_lifecycle_verifies_intact,
    the_database_refuses_to_change_the_log,
    an_edited_entry_is_detected_and_located,
    a_deleted_entry_is_detected,
    the_end_of_the_log_cut_off_is_caught_by_the_checkpoint,
    reordered_entries_are_detected,
    a_full_rewrite_is_caught_by_the_checkpoint,
    a_checkpoint_signed_by_another_key_is_not_trusted,
    tampered_evidence_is_detected,
    concurrent_mutating_calls_still_form_one_chain,
    callers_are_recorded_by_key_role_and_agent,
    the_cli_verifies_and_fails_on_tampering,
    an_exported_checkpoint_catches_a_rewrite_from_the_cli,
);

/// The SQLite file edited with its own tools while ARES is stopped: the next ARES finds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sqlite_file_edited_behind_ares_back_is_detected() {
    let db = TestDatabase::sqlite().await;
    let key = AuditKey::generate();
    let mcp = ares_on(&db, &key).await;
    let log = six_entries(&mcp).await;
    mcp.close().await;

    {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::raw_sql("DROP TRIGGER audit_log_no_update")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET at_us = at_us + 1000000 WHERE seq = 5")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    }

    let mcp = ares_on(&db, &key).await;
    let report = verify(&mcp).await;
    assert_eq!(report["intact"], false);
    assert_eq!(
        first_broken(&report),
        (5, "edited".into(), log[4]["id"].clone())
    );
    mcp.close().await;
}

/// The timer signs a checkpoint once there is something to pin, and again when the log
/// moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_are_signed_periodically_as_the_log_grows() {
    let db = TestDatabase::sqlite().await;
    let store = ares::store::connect(&db.url).await.unwrap();
    let ares = Arc::new(ares::Ares::new(store));
    let server = HttpServer::serving(ares.clone(), common::test_options()).await;
    let mcp = Mcp::http(&server.base).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let timer = tokio::spawn(
        ares.clone()
            .run_checkpoints(std::time::Duration::from_millis(20), shutdown.clone()),
    );

    for expected in [1, 2] {
        scenarios::register(&mcp, &["rust"]).await;
        let latest = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let report = verify(&mcp).await;
                let latest = report["checkpoint"]["latest"].clone();
                if latest["length"] == expected {
                    return latest;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the timer signs a checkpoint of the new head");
        assert_eq!(latest["public_key"], ares.audit_key.public_key());
    }
    let report = verify(&mcp).await;
    assert_eq!(report["intact"], true);
    assert_eq!(
        report["checkpoint"]["checked"], 2,
        "an unmoved log is not signed again: {report}"
    );

    shutdown.cancel();
    timer.await.unwrap();
    mcp.close().await;
    server.stop().await;
}
