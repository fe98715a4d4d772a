//! Commands and lint against ground truth: `ares code-checker` re-runs the project's checks
//! (only what is allow-listed, only under its root), ESLint's MCP server lints.

mod common;

use common::db::TestDatabase;
use common::ground_truth::*;
use rmcp::model::CallToolRequestParams;
use rmcp::service::ServiceError;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt, service::RunningService};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PASSING_TEST: &str = "import test from 'node:test';\nimport assert from 'node:assert';\ntest('adds', () => assert.equal(1 + 1, 2));\ntest('subtracts', () => assert.equal(2 - 1, 1));\n";
const FAILING_TEST: &str = "import test from 'node:test';\nimport assert from 'node:assert';\ntest('adds', () => assert.equal(1 + 1, 2));\ntest('breaks', () => assert.equal(1 + 1, 3));\n";

fn project() -> Workspace {
    let ws = Workspace::new();
    ws.write("tests/ok.test.mjs", PASSING_TEST);
    ws.write("tests/bad.test.mjs", FAILING_TEST);
    ws.write("keep.txt", "still here\n");
    ws
}

#[tokio::test]
async fn a_command_that_passes_when_rerun_is_met_with_its_test_counts() {
    let db = TestDatabase::sqlite().await;
    let ws = project();
    let config = Servers::new()
        .code_checker(&ws, &["node --test"])
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 60).await;

    let verdict = verdict(
        &mcp,
        json!([{ "type": "command_succeeds", "command": "node --test tests/ok.test.mjs" }]),
        json!([{ "kind": "command", "command": "node --test tests/ok.test.mjs", "exit_code": 0 }]),
    )
    .await;

    assert_eq!(verdict["success"], true, "{verdict:#}");
    assert_result(&verdict, 0, "met", "code_checker/run_command", false);
    let why = detail(&verdict, 0);
    assert!(
        why.contains("exited 0") && why.contains("2 passed, 0 failed"),
        "{why}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn claimed_passing_tests_that_fail_when_rerun_are_a_discrepancy() {
    let db = TestDatabase::sqlite().await;
    let ws = project();
    let config = Servers::new()
        .code_checker(&ws, &["node --test"])
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 60).await;

    let (task, agent) = submitted(
        &mcp,
        json!([
            { "type": "tests_pass" },
            { "type": "command_succeeds", "command": "node --test tests/bad.test.mjs" }
        ]),
        json!([{ "kind": "test_results", "passed": 2, "failed": 0 }]),
    )
    .await;
    let verdict = verify(&mcp, &task).await;

    assert_eq!(verdict["success"], false);
    assert_result(&verdict, 0, "met", "evidence", false);
    assert_result(&verdict, 1, "unmet", "code_checker/run_command", true);
    let why = detail(&verdict, 1);
    assert!(
        why.contains("exited 1") && why.contains("1 passed, 1 failed"),
        "{why}"
    );
    assert!(why.contains("the evidence claimed 2 tests passed"), "{why}");
    let reliability = mcp
        .call("get_reliability", json!({ "agent_id": agent }))
        .await;
    assert!(reliability["discrepancy_rate"].as_f64().unwrap() > 0.0);
    mcp.close().await;
}

#[tokio::test]
async fn a_command_off_the_allow_list_is_refused_and_never_run() {
    let db = TestDatabase::sqlite().await;
    let ws = project();
    let config = Servers::new()
        .code_checker(&ws, &["node --test"])
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 60).await;

    let verdict = verdict(
        &mcp,
        json!([{ "type": "command_succeeds", "command": "rm -f keep.txt" }]),
        json!([{ "kind": "command", "command": "rm -f keep.txt", "exit_code": 0 }]),
    )
    .await;

    assert_result(
        &verdict,
        0,
        "unverifiable",
        "code_checker/run_command",
        false,
    );
    let why = detail(&verdict, 0);
    assert!(
        why.contains("not allow-listed") && why.contains("`node --test`"),
        "{why}"
    );
    assert!(
        ws.path("keep.txt").exists(),
        "the refused command did not run"
    );
    mcp.close().await;
}

#[tokio::test]
async fn lint_clean_is_met_for_clean_code_and_unmet_with_the_problems_otherwise() {
    let db = TestDatabase::sqlite().await;
    let ws = project();
    ws.write(
        "eslint.config.mjs",
        "export default [{ rules: { 'no-unused-vars': 'error', 'no-var': 'error' } }];\n",
    );
    ws.write(
        "src/clean.js",
        "export function add(a, b) {\n  return a + b;\n}\n",
    );
    ws.write("src/dirty.js", "var unused = 1;\nexport const x = 2;\n");
    // Both code checkers fill the role: lint goes to the one that offers `lint-files`.
    let config = Servers::new()
        .code_checker(&ws, &["node --test"])
        .eslint(&ws)
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 60).await;

    let verdict = verdict(
        &mcp,
        json!([
            { "type": "lint_clean", "path": "src/clean.js" },
            { "type": "lint_clean", "path": "src/dirty.js" },
            { "type": "lint_clean", "path": "src/missing.js" },
            { "type": "lint_clean", "path": "src/../../outside.js" }
        ]),
        json!([{ "kind": "file", "path": "src/missing.js" }]),
    )
    .await;

    assert_result(&verdict, 0, "met", "eslint/lint-files", false);
    assert!(!detail(&verdict, 0).contains("fallback"), "{verdict:#}");
    assert_result(&verdict, 1, "unmet", "eslint/lint-files", false);
    let why = detail(&verdict, 1);
    assert!(
        why.contains("no-unused-vars") && why.contains("no-var") && why.contains("line 1"),
        "{why}"
    );
    assert_result(&verdict, 2, "unmet", "eslint/lint-files", true);
    assert_result(&verdict, 3, "unverifiable", "code_checker,eslint", false);
    assert!(
        detail(&verdict, 3).contains("outside `eslint`'s root"),
        "{verdict:#}"
    );
    mcp.close().await;
}

/// A client of `ares code-checker` itself.
async fn checker(ws: &Workspace, extra: &[&str]) -> RunningService<RoleClient, ()> {
    let root = ws.root.display().to_string();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares")).configure(|c| {
        c.args([
            "code-checker",
            "--root",
            &root,
            "--allow",
            "node --test",
            "--allow",
            "sleep",
        ])
        .args(extra)
        .env("ARES_LOG", "warn");
    });
    ().serve(TokioChildProcess::new(cmd).unwrap())
        .await
        .expect("code checker handshake")
}

async fn run(
    client: &RunningService<RoleClient, ()>,
    args: Value,
) -> Result<rmcp::model::CallToolResult, ServiceError> {
    let Value::Object(args) = args else {
        unreachable!()
    };
    client
        .call_tool(CallToolRequestParams::new("run_command").with_arguments(args))
        .await
}

#[tokio::test]
async fn the_code_checker_reports_exit_code_duration_output_and_counts() {
    let ws = project();
    let client = checker(&ws, &[]).await;
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0].name, "run_command");
    assert!(tools[0].output_schema.is_some());

    let ok = run(
        &client,
        json!({ "command": "node --test ok.test.mjs", "cwd": "tests" }),
    )
    .await
    .unwrap();
    let out = ok.structured_content.expect("structured content");
    assert_eq!(out["exit_code"], 0, "{out:#}");
    assert_eq!(out["timed_out"], false);
    assert_eq!(out["tests"], json!({ "passed": 2, "failed": 0 }));
    assert!(out["duration_ms"].as_u64().is_some());
    assert!(
        out["output_tail"].as_str().unwrap().contains("pass 2"),
        "{out:#}"
    );
    assert_eq!(out["cwd"], ws.path("tests").display().to_string());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_code_checker_refuses_what_is_not_allowed_or_outside_its_root() {
    let ws = project();
    let client = checker(&ws, &[]).await;
    for (args, expected) in [
        (json!({ "command": "rm -rf ." }), "not allow-listed"),
        (json!({ "command": "nodes --test" }), "not allow-listed"),
        (
            json!({ "command": "node --test", "cwd": ".." }),
            "outside the root",
        ),
        (
            json!({ "command": "node --test", "cwd": "/" }),
            "outside the root",
        ),
        (
            json!({ "command": "node --test", "cwd": "nope" }),
            "does not exist",
        ),
        (json!({ "command": "" }), "empty"),
    ] {
        let refused = run(&client, args.clone()).await.unwrap();
        assert_eq!(refused.is_error, Some(true), "{args}");
        let text = common::text(&refused);
        assert!(text.contains(expected), "{args}: {text}");
    }
    match run(&client, json!({ "command": "sleep 1", "shell": true })).await {
        Err(ServiceError::McpError(e)) => {
            assert_eq!(e.code.0, -32602);
            assert!(e.message.contains("shell"), "{}", e.message);
        }
        other => panic!("an unknown argument is invalid params, got {other:?}"),
    }
    assert!(ws.path("keep.txt").exists());
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_code_checker_kills_a_command_at_its_time_limit() {
    let ws = project();
    let client = checker(&ws, &["--timeout-secs", "1"]).await;
    let started = Instant::now();
    let out = run(&client, json!({ "command": "sleep 30" }))
        .await
        .unwrap()
        .structured_content
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(out["timed_out"], true, "{out:#}");
    assert_eq!(out["exit_code"], Value::Null);
    client.cancel().await.unwrap();
}

#[tokio::test]
async fn the_code_checker_refuses_to_start_without_an_allow_list_or_root() {
    let ws = project();
    for args in [
        vec![
            "code-checker",
            "--root",
            "/nonexistent/dir",
            "--allow",
            "true",
        ],
        vec![
            "code-checker",
            "--root",
            ws.root.to_str().unwrap(),
            "--allow",
            "",
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ares"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--root") || stderr.contains("--allow"),
            "{args:?}: {stderr}"
        );
    }
}
