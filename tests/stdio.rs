//! ARES as Claude Desktop runs it: the built binary as a child process speaking MCP over
//! stdio, on SQLite and on PostgreSQL.

mod common;

use common::{Mcp, db::TestDatabase, scenarios};
use std::process::Stdio;
use std::time::Duration;

macro_rules! scenarios_on {
    ($backend:ident: $($name:ident),* $(,)?) => {
        mod $backend {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = TestDatabase::$backend().await;
                    let mcp = Mcp::stdio(&db.url).await;
                    scenarios::$name(&mcp).await;
                    mcp.close().await;
                }
            )*
        }
    };
}

scenarios_on!(sqlite: full_lifecycle, enforcement_ladder, escalation_moves_open_work,
    ground_truth_stays_unverifiable, idempotent_retries, rollback_with_dependents, lists_paginate,
    bad_inputs_are_refused, signed_evidence);
scenarios_on!(postgres: full_lifecycle, enforcement_ladder, escalation_moves_open_work,
    ground_truth_stays_unverifiable, idempotent_retries, rollback_with_dependents, lists_paginate,
    bad_inputs_are_refused, signed_evidence);

#[tokio::test]
async fn tools_list_every_spec_tool_with_input_and_output_schemas() {
    let db = TestDatabase::sqlite().await;
    let mcp = Mcp::stdio(&db.url).await;
    let tools = mcp.client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for spec in [
        "register_agent",
        "get_agent",
        "list_agents",
        "update_agent",
        "deregister_agent",
        "create_task",
        "assign_task",
        "get_task",
        "list_tasks",
        "submit_evidence",
        "verify_task",
        "get_reliability",
        "enforce",
        "list_enforcement_actions",
        "rollback_task",
        "get_report",
        "health",
    ] {
        let tool = tools
            .iter()
            .find(|t| t.name == spec)
            .unwrap_or_else(|| panic!("{spec} missing from {names:?}"));
        assert!(tool.output_schema.is_some(), "{spec} has an output schema");
        assert_eq!(
            tool.input_schema.get("type").and_then(|t| t.as_str()),
            Some("object"),
            "{spec}"
        );
    }
    let register = tools.iter().find(|t| t.name == "register_agent").unwrap();
    let description = register.input_schema["properties"]["name"]["description"]
        .as_str()
        .unwrap();
    assert!(
        description.contains("Unique name"),
        "field docs become schema descriptions: {description}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn data_survives_a_restart() {
    let db = TestDatabase::sqlite().await;
    let mcp = Mcp::stdio(&db.url).await;
    let agent = scenarios::register(&mcp, &["rust"]).await;
    mcp.close().await;
    let mcp = Mcp::stdio(&db.url).await;
    let again = mcp
        .call("get_agent", serde_json::json!({ "agent_id": agent["id"] }))
        .await;
    assert_eq!(again["name"], agent["name"]);
    mcp.close().await;
}

#[tokio::test]
async fn without_database_url_data_goes_to_the_xdg_data_directory() {
    let home = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .arg("migrate")
        .env_remove("DATABASE_URL")
        .env("XDG_DATA_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success());
    assert!(
        home.path().join("ares/ares.db").exists(),
        "the SQLite file is created on first start"
    );
}

#[tokio::test]
async fn sigterm_stops_a_stdio_server_cleanly() {
    let db = TestDatabase::sqlite().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    // Wait until it is serving (it logs so on stderr), then signal it.
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("serving MCP over stdio") {
                return;
            }
        }
        panic!("ares exited before serving");
    })
    .await
    .expect("ares starts serving");
    let pid = child.id().unwrap();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits promptly after SIGTERM")
        .unwrap();
    drop(stdin);
    assert_eq!(
        status.code(),
        Some(0),
        "graceful shutdown exits 0, got {status}"
    );
}

#[tokio::test]
async fn a_bad_database_url_is_a_clear_startup_error() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .arg("migrate")
        .env("DATABASE_URL", "mysql://root:secret@localhost/x")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DATABASE_URL must start with sqlite:// or postgres://"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("secret"),
        "passwords never reach logs: {stderr}"
    );
}
