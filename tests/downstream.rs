//! Ground truth through the real filesystem MCP server: true claims verify, fabricated ones
//! never do, and a downstream server that is missing, hangs, crashes or fails over never
//! hangs or crashes ARES.

mod common;

use common::db::TestDatabase;
use common::ground_truth::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_true_claim_about_files_is_met_on_every_filesystem_criterion() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    let digest = ws.write(
        "src/parser.rs",
        "pub fn parse(input: &str) -> usize {\n    input.len()\n}\n",
    );
    let config = Servers::new().filesystem(&ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;

    let verdict = verdict(
        &mcp,
        json!([
            { "type": "file_exists", "path": "src/parser.rs" },
            { "type": "file_contains", "path": "src/parser.rs", "pattern": "pub fn parse" },
            { "type": "file_contains", "path": "src/parser.rs", "pattern": r"fn \w+\(input: &str\)", "regex": true },
            { "type": "file_matches_evidence", "path": "./src/parser.rs" }
        ]),
        json!([{ "kind": "file", "path": "src/parser.rs", "sha256": digest }]),
    )
    .await;

    assert_eq!(verdict["success"], true, "{verdict:#}");
    assert_eq!(verdict["task_status"], "verified");
    assert_result(&verdict, 0, "met", "filesystem/get_file_info", false);
    assert_result(&verdict, 1, "met", "filesystem/read_text_file", false);
    assert_result(&verdict, 2, "met", "filesystem/read_text_file", false);
    assert_result(&verdict, 3, "met", "filesystem/read_media_file", false);
    assert!(detail(&verdict, 1).contains("line 1"), "{verdict:#}");
    assert!(detail(&verdict, 3).contains(&digest), "{verdict:#}");
    assert_eq!(verdict["discrepancies"], 0);
    mcp.close().await;
}

#[tokio::test]
async fn a_claimed_file_that_is_absent_is_unmet_with_a_discrepancy_counted_against_the_agent() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    let config = Servers::new().filesystem(&ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;

    let (task, agent) = submitted(
        &mcp,
        json!([{ "type": "file_exists", "path": "src/parser.rs" }]),
        json!([{ "kind": "file", "path": "src/parser.rs" }, { "kind": "log", "content": "created the parser" }]),
    )
    .await;
    let verdict = verify(&mcp, &task).await;

    assert_eq!(verdict["success"], false);
    assert_eq!(verdict["task_status"], "rejected");
    assert_result(&verdict, 0, "unmet", "filesystem/get_file_info", true);
    let why = detail(&verdict, 0);
    assert!(
        why.contains("does not exist") && why.contains("evidence lists it"),
        "{why}"
    );
    assert_eq!(verdict["discrepancies"], 1);
    assert!(
        verdict["quality_score"].as_f64().unwrap() < 0.3,
        "{verdict:#}"
    );

    let reliability = mcp
        .call("get_reliability", json!({ "agent_id": agent }))
        .await;
    assert!(
        reliability["discrepancy_rate"].as_f64().unwrap() > 0.0,
        "{reliability:#}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn a_digest_that_differs_from_the_file_is_unmet_with_a_discrepancy() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("README.md", "# the real content\n");
    let claimed = sha256(b"# what the agent says it wrote\n");
    let config = Servers::new().filesystem(&ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;

    let verdict = verdict(
        &mcp,
        json!([
            { "type": "file_matches_evidence", "path": "README.md" },
            { "type": "file_matches_evidence", "path": "CHANGELOG.md" }
        ]),
        json!([{ "kind": "file", "path": "README.md", "sha256": claimed }]),
    )
    .await;

    assert_eq!(verdict["success"], false);
    assert_result(&verdict, 0, "unmet", "filesystem/read_media_file", true);
    assert!(detail(&verdict, 0).contains(&claimed), "{verdict:#}");
    // No digest claimed: unmet, saying so, and not a contradiction.
    assert_result(&verdict, 1, "unmet", "evidence", false);
    assert!(
        detail(&verdict, 1).contains("claims no sha256"),
        "{verdict:#}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn file_contains_is_unmet_when_the_text_or_pattern_is_not_there() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("src/lib.rs", "pub fn parse() {}\n");
    let config = Servers::new().filesystem(&ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;

    let verdict = verdict(
        &mcp,
        json!([
            { "type": "file_contains", "path": "src/lib.rs", "pattern": "pub fn render" },
            { "type": "file_contains", "path": "src/lib.rs", "pattern": r"^#\[cfg\(test\)\]", "regex": true },
            { "type": "file_contains", "path": "src/gone.rs", "pattern": "x" }
        ]),
        json!([{ "kind": "log", "content": "done" }]),
    )
    .await;

    assert_eq!(verdict["task_status"], "rejected");
    assert_result(&verdict, 0, "unmet", "filesystem/read_text_file", false);
    assert!(
        detail(&verdict, 0).contains("does not contain"),
        "{verdict:#}"
    );
    assert_result(&verdict, 1, "unmet", "filesystem/read_text_file", false);
    // Absent, but the evidence never claimed it: unmet without a discrepancy.
    assert_result(&verdict, 2, "unmet", "filesystem/read_text_file", false);
    mcp.close().await;
}

#[tokio::test]
async fn without_a_downstream_server_ground_truth_is_unverifiable() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("a.txt", "a");
    // Only a filesystem server: the page criterion has no server to go to.
    let config = Servers::new().filesystem(&ws).write(&ws);
    let unconfigured = ares(&db.url, None, 20).await;
    let partly = ares(&db.url, Some(&config), 20).await;

    let verdict = verdict(
        &unconfigured,
        json!([{ "type": "file_exists", "path": "a.txt" }]),
        json!([{ "kind": "file", "path": "a.txt" }]),
    )
    .await;
    assert_eq!(verdict["outcome"], "inconclusive");
    assert_eq!(verdict["task_status"], "submitted");
    assert_result(
        &verdict,
        0,
        "unverifiable",
        "filesystem (not configured)",
        false,
    );

    let verdict = common::ground_truth::verdict(
        &partly,
        json!([
            { "type": "file_exists", "path": "a.txt" },
            { "type": "page_contains", "url": "http://127.0.0.1:9/", "text": "hello" }
        ]),
        json!([{ "kind": "file", "path": "a.txt" }]),
    )
    .await;
    assert_result(&verdict, 0, "met", "filesystem/get_file_info", false);
    assert_result(
        &verdict,
        1,
        "unverifiable",
        "playwright (not configured)",
        false,
    );
    assert!(detail(&verdict, 1).contains("no `playwright` downstream server"));
    assert_eq!(verdict["success"], false, "unverifiable is never success");
    unconfigured.close().await;
    partly.close().await;
}

#[tokio::test]
async fn a_hanging_server_is_unverifiable_within_the_timeout_while_ares_keeps_answering() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("a.txt", "a");
    let config = Servers::new().slow_filesystem("filesystem", &ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 2).await;
    wait_for_health(&mcp, "filesystem", "ok").await;
    // From now on it takes calls and never answers (and a restarted one never greets).
    std::fs::write(ws.scratch.join("hang"), "").unwrap();

    let (task, _) = submitted(
        &mcp,
        json!([{ "type": "file_exists", "path": "a.txt" }]),
        json!([{ "kind": "file", "path": "a.txt" }]),
    )
    .await;
    let started = Instant::now();
    let (verdict, health_took) = tokio::join!(verify(&mcp, &task), async {
        wait_for_file(&ws.scratch.join("called")).await;
        let asked = Instant::now();
        let health = mcp.call("health", json!({})).await;
        assert!(health["status"].is_string());
        asked.elapsed()
    });
    let took = started.elapsed();

    assert!(took < Duration::from_secs(8), "verify took {took:?}");
    assert!(
        health_took < Duration::from_secs(1),
        "health waited on the hung server: {health_took:?}"
    );
    assert_result(&verdict, 0, "unverifiable", "filesystem", false);
    assert!(
        detail(&verdict, 0).contains("no answer to `get_file_info` within 2.0 s"),
        "{verdict:#}"
    );
    assert_eq!(verdict["task_status"], "submitted");
    let down = wait_for_health(&mcp, "filesystem", "down").await;
    assert!(
        down["error"].as_str().unwrap().contains("no answer"),
        "{down}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn a_server_killed_mid_call_is_unverifiable_and_the_next_verify_reconnects() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("a.txt", "a");
    let config = Servers::new().slow_filesystem("filesystem", &ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 30).await;
    wait_for_health(&mcp, "filesystem", "ok").await;
    let hang = ws.scratch.join("hang");
    std::fs::write(&hang, "").unwrap();

    let criteria = json!([{ "type": "file_exists", "path": "a.txt" }]);
    let evidence = json!([{ "kind": "file", "path": "a.txt" }]);
    let (task, _) = submitted(&mcp, criteria.clone(), evidence.clone()).await;
    let started = Instant::now();
    let (verdict, ()) = tokio::join!(verify(&mcp, &task), async {
        wait_for_file(&ws.scratch.join("called")).await;
        std::fs::remove_file(&hang).unwrap();
        kill(&ws.scratch.join("slow.pid"));
    });

    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the crash was noticed at once, not after the 30 s timeout"
    );
    assert_result(&verdict, 0, "unverifiable", "filesystem", false);
    assert!(
        detail(&verdict, 0).contains("connection lost"),
        "{verdict:#}"
    );

    let again = common::ground_truth::verdict(&mcp, criteria, evidence).await;
    assert_result(&again, 0, "met", "filesystem/get_file_info", false);
    assert_eq!(again["task_status"], "verified");
    wait_for_health(&mcp, "filesystem", "ok").await;
    mcp.close().await;
}

#[tokio::test]
async fn a_real_server_killed_between_calls_is_restarted_by_the_supervisor() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("a.txt", "a");
    let config = Servers::new().filesystem(&ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;
    let criteria = json!([{ "type": "file_exists", "path": "a.txt" }]);
    let evidence = json!([{ "kind": "file", "path": "a.txt" }]);

    let first = common::ground_truth::verdict(&mcp, criteria.clone(), evidence.clone()).await;
    assert_result(&first, 0, "met", "filesystem/get_file_info", false);
    let pidfile = ws.scratch.join("filesystem.pid");
    let old_pid = std::fs::read_to_string(&pidfile).unwrap();
    kill(&pidfile);
    // The supervisor notices the exit and starts a new server on its own.
    wait_for_change(&pidfile, &old_pid).await;

    let second = common::ground_truth::verdict(&mcp, criteria, evidence).await;
    assert_result(&second, 0, "met", "filesystem/get_file_info", false);
    wait_for_health(&mcp, "filesystem", "ok").await;
    mcp.close().await;
}

#[tokio::test]
async fn a_failing_primary_falls_back_to_its_fallback_server() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("a.txt", "a");
    let config = Servers::new()
        .with(
            "filesystem",
            json!({ "command": ws.scratch.join("no-such-server"), "fallback": "spare" }),
        )
        .filesystem_named("spare", &ws)
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;

    let verdict = verdict(
        &mcp,
        json!([{ "type": "file_exists", "path": "a.txt" }]),
        json!([{ "kind": "file", "path": "a.txt" }]),
    )
    .await;

    assert_result(&verdict, 0, "met", "spare/get_file_info", false);
    let why = detail(&verdict, 0);
    assert!(
        why.contains("fallback used") && why.contains("cannot start"),
        "{why}"
    );
    mcp.close().await;
}

#[tokio::test]
async fn a_server_that_answers_garbage_is_unverifiable_and_reported_down() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    ws.write("a.txt", "a");
    let config = Servers::new()
        .with(
            "filesystem",
            json!({ "command": "sh", "args": ["-c", "while read line; do echo 'this is not JSON-RPC'; done"] }),
        )
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 2).await;

    let started = Instant::now();
    let verdict = verdict(
        &mcp,
        json!([{ "type": "file_exists", "path": "a.txt" }]),
        json!([{ "kind": "file", "path": "a.txt" }]),
    )
    .await;

    assert!(started.elapsed() < Duration::from_secs(10));
    assert_result(&verdict, 0, "unverifiable", "filesystem", false);
    assert!(
        detail(&verdict, 0).contains("cannot connect"),
        "{verdict:#}"
    );
    let down = wait_for_health(&mcp, "filesystem", "down").await;
    assert!(down["error"].as_str().unwrap().contains("cannot connect"));
    mcp.close().await;
}

#[tokio::test]
async fn health_lists_every_downstream_server_on_postgres() {
    let db = TestDatabase::postgres().await;
    let ws = Workspace::new();
    let digest = ws.write("src/main.rs", "fn main() {}\n");
    let config = Servers::new()
        .filesystem(&ws)
        .code_checker(&ws, &["true"])
        .with(
            "broken",
            json!({ "command": ws.scratch.join("missing"), "role": "filesystem" }),
        )
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;

    let fs = wait_for_health(&mcp, "filesystem", "ok").await;
    assert!(fs["latency_ms"].as_f64().is_some(), "{fs}");
    assert_eq!(fs["required"], false);
    wait_for_health(&mcp, "code_checker", "ok").await;
    let broken = wait_for_health(&mcp, "broken", "down").await;
    assert!(
        broken["error"].as_str().unwrap().contains("cannot start"),
        "{broken}"
    );
    let health = mcp.call("health", json!({})).await;
    assert_eq!(health["status"], "degraded", "{health:#}");

    // Ground truth works the same on PostgreSQL, and a contradiction is counted there too.
    let verdict = verdict(
        &mcp,
        json!([
            { "type": "file_matches_evidence", "path": "src/main.rs" },
            { "type": "file_exists", "path": "src/lib.rs" }
        ]),
        json!([
            { "kind": "file", "path": "src/main.rs", "sha256": digest },
            { "kind": "file", "path": "src/lib.rs" }
        ]),
    )
    .await;
    assert_result(&verdict, 0, "met", "filesystem/read_media_file", false);
    assert_result(&verdict, 1, "unmet", "filesystem/get_file_info", true);
    assert_eq!(verdict["discrepancies"], 1);
    mcp.close().await;
}

#[tokio::test]
async fn a_stdio_server_gets_a_minimal_environment_plus_its_own_env() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    let config = Servers::new()
        .slow_filesystem("filesystem", &ws)
        .set("filesystem", "env", json!({ "FROM_CONFIG": "yes" }))
        .write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;
    wait_for_health(&mcp, "filesystem", "ok").await;

    let env: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ws.scratch.join("env.json")).unwrap())
            .unwrap();
    assert_eq!(env["FROM_CONFIG"], "yes");
    assert!(env["PATH"].is_string(), "{env}");
    assert!(
        env.get("DATABASE_URL").is_none(),
        "ARES's secrets stay with ARES: {env}"
    );
    assert!(env.get("ARES_DOWNSTREAM").is_none(), "{env}");
    mcp.close().await;
}

#[test]
fn the_readme_example_config_is_valid() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Ground truth: downstream servers")
        .nth(1)
        .expect("README has the ground-truth section");
    let example = section
        .split("```json")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section opens with a JSON example");
    let config = ares::downstream::DownstreamConfig::parse(example, std::path::Path::new("/"))
        .unwrap_or_else(|e| panic!("the README example does not parse: {e}"));
    let roles = |role| {
        config
            .for_role(role)
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    use ares::downstream::Role;
    assert_eq!(roles(Role::Filesystem), ["filesystem"]);
    assert_eq!(roles(Role::CodeChecker), ["code_checker", "eslint"]);
    assert_eq!(roles(Role::Playwright), ["playwright", "playwright_remote"]);
}

#[tokio::test]
async fn a_bad_downstream_file_stops_ares_at_start_naming_the_server_and_field() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    let config = Servers::new()
        .with("github", json!({ "command": "github-mcp" }))
        .write(&ws);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("ARES_DOWNSTREAM", &config)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("server `github`: field `role`"), "{stderr}");
}

#[tokio::test]
async fn a_server_that_keeps_crashing_is_restarted_with_backoff_not_in_a_loop() {
    let db = TestDatabase::sqlite().await;
    let ws = Workspace::new();
    std::fs::write(ws.scratch.join("die"), "").unwrap();
    let config = Servers::new().slow_filesystem("filesystem", &ws).write(&ws);
    let mcp = ares(&db.url, Some(&config), 20).await;

    // Each session dies 0.1 s after its handshake and takes up to a second to notice.
    // Restarting at once every time gives six starts in eight seconds; backing off
    // (0, 0.5, 1, 2 s …) gives four.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let starts = std::fs::read_to_string(ws.scratch.join("starts.log"))
        .unwrap()
        .lines()
        .count();
    assert!((2..=5).contains(&starts), "{starts} starts in 8 s");
    let down = wait_for_health(&mcp, "filesystem", "down").await;
    assert!(
        down["error"].as_str().unwrap().contains("connection lost"),
        "{down}"
    );
    mcp.close().await;
}
