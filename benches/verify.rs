//! How long a warm `verify_task` with three filesystem criteria takes, end to end: an rmcp
//! client → `ares serve` over stdio on SQLite → the official filesystem MCP server (from
//! `npm ci`) → the answer. Only the `verify_task` call is timed; each iteration uses a fresh
//! agent and task so the agent's history does not grow with the run.
//!
//! Run: `cargo bench --bench verify` (ARES_BENCH_ITERATIONS sets the count, default 200).

use rmcp::model::CallToolRequestParams;
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const WARM_UP: usize = 10;

async fn call(client: &RunningService<RoleClient, ()>, tool: &str, args: Value) -> Value {
    let Value::Object(args) = args else {
        unreachable!("arguments are an object")
    };
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool} failed: {e}"));
    assert_ne!(result.is_error, Some(true), "{tool} refused: {result:?}");
    result.structured_content.expect("structured content")
}

#[tokio::main]
async fn main() {
    let iterations: usize = std::env::var("ARES_BENCH_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    let server =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/mcp-server-filesystem");
    assert!(
        server.exists(),
        "{} is missing: run `npm ci`",
        server.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap().join("project");
    std::fs::create_dir_all(root.join("src")).unwrap();
    let content = "pub fn parse(input: &str) -> usize {\n    input.len()\n}\n".repeat(50);
    std::fs::write(root.join("src/parser.rs"), &content).unwrap();
    let digest = hex::encode(Sha256::digest(content.as_bytes()));
    let config = dir.path().join("downstream.json");
    std::fs::write(
        &config,
        json!({ "mcpServers": { "filesystem": { "command": server, "args": [root] } } })
            .to_string(),
    )
    .unwrap();

    let db = format!("sqlite://{}", dir.path().join("ares.db").display());
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares")).configure(|c| {
        c.arg("serve")
            .env("DATABASE_URL", &db)
            .env("ARES_DOWNSTREAM", &config)
            .env("ARES_LOG", "warn");
    });
    let client = ().serve(TokioChildProcess::new(cmd).unwrap()).await.unwrap();

    let criteria = json!([
        { "type": "file_exists", "path": "src/parser.rs" },
        { "type": "file_contains", "path": "src/parser.rs", "pattern": r"pub fn parse\(", "regex": true },
        { "type": "file_matches_evidence", "path": "src/parser.rs" }
    ]);
    let evidence = json!([{ "kind": "file", "path": "src/parser.rs", "sha256": digest }]);
    let mut times = Vec::with_capacity(iterations);
    for i in 0..WARM_UP + iterations {
        let agent = call(
            &client,
            "register_agent",
            json!({ "name": format!("bench-{i}"), "capabilities": [] }),
        )
        .await;
        let task = call(
            &client,
            "create_task",
            json!({ "description": "bench", "criteria": criteria, "agent_id": agent["id"] }),
        )
        .await;
        call(
            &client,
            "submit_evidence",
            json!({ "task_id": task["id"], "agent_id": agent["id"], "evidence": evidence }),
        )
        .await;
        let started = Instant::now();
        let verdict = call(&client, "verify_task", json!({ "task_id": task["id"] })).await;
        let took = started.elapsed();
        assert_eq!(verdict["success"], true, "{verdict:#}");
        if i >= WARM_UP {
            times.push(took);
        }
    }
    let _ = client.cancel().await;

    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |p: f64| ms(times[((times.len() as f64 - 1.0) * p).round() as usize]);
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "warm verify_task, 3 filesystem criteria, stdio + SQLite, {} calls: mean {mean:.1} ms, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        times.len(),
        pct(0.50),
        pct(0.95),
        pct(0.99),
        ms(*times.last().unwrap()),
    );
}
