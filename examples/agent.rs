//! An agent's whole round trip through ARES, written with rmcp's client: register, create a
//! task with acceptance criteria, have it routed to us, submit evidence, verify, and read the
//! reliability score that the verdict produced.
//!
//! ```text
//! cargo build && cargo run --example agent                    # spawns target/…/ares over stdio
//! ARES_API_KEY=… cargo run --example agent -- --http http://127.0.0.1:8080/mcp  # a running server
//! ```
//!
//! Over stdio the example starts the ARES binary itself (`ARES_BIN`, or the `ares` built next
//! to this example, or `target/release/ares` / `target/debug/ares`) with a throwaway SQLite
//! database, so nothing is left behind; stdio needs no key (the local user is the admin).
//!
//! Over HTTP every request carries `Authorization: Bearer $ARES_API_KEY`. The key needs the
//! admin role, because the example registers an agent and creates a task: the server's
//! `ARES_ADMIN_TOKEN`, or a key from `ares key create --role admin`.

use anyhow::{Context, bail};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::{Value, json};
use std::path::PathBuf;

type Client = RunningService<RoleClient, ()>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let http = match args.as_slice() {
        [] => None,
        [flag, url] if flag == "--http" => Some(url.clone()),
        _ => bail!("usage: agent [--http http://HOST:PORT/mcp]"),
    };

    // Kept alive until the end: the spawned server's database lives in it.
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let client: Client = match &http {
        Some(url) => {
            let key = std::env::var("ARES_API_KEY")
                .ok()
                .filter(|k| !k.trim().is_empty())
                .context(
                    "set ARES_API_KEY to an admin API key (the server's ARES_ADMIN_TOKEN, or one from `ares key create --role admin`)",
                )?;
            println!("connecting to {url}");
            // rmcp sends this as `Authorization: Bearer <key>` on every request.
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).auth_header(key.trim());
            let transport =
                StreamableHttpClientTransport::with_client(reqwest::Client::new(), config);
            ().serve(transport)
                .await
                .with_context(|| format!("connecting to ARES at {url}"))?
        }
        None => {
            let bin = ares_binary()?;
            let db = scratch.path().join("ares.db");
            println!(
                "spawning {} serve (database {})",
                bin.display(),
                db.display()
            );
            let mut command = tokio::process::Command::new(&bin);
            command
                .arg("serve")
                .env("DATABASE_URL", format!("sqlite://{}", db.display()))
                .env("ARES_LOG", "warn");
            ().serve(TokioChildProcess::new(command).context("spawning ares")?)
                .await
                .context("starting an MCP session with ares")?
        }
    };
    if let Some(info) = client.peer_info()
        && let Some(server) = &info.server_info
    {
        println!("connected to {} {}", server.name, server.version);
    }

    let outcome = lifecycle(&client).await;
    client.cancel().await.ok();
    outcome
}

async fn lifecycle(client: &Client) -> anyhow::Result<()> {
    // A unique name and capability, so routing picks this agent even on a shared server.
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f").to_string();
    let capability = format!("example-{stamp}");

    let agent = call(
        client,
        "register_agent",
        json!({
            "name": format!("example-agent-{stamp}"),
            "capabilities": ["rust", capability],
        }),
    )
    .await?;
    let agent_id = text(&agent, "id")?;
    println!("registered agent {} ({agent_id})", text(&agent, "name")?);

    let task = call(
        client,
        "create_task",
        json!({
            "description": "Fix the off-by-one in pagination and cover it with tests",
            "required_capabilities": [capability],
            "criteria": [
                { "type": "tests_pass" },
                { "type": "evidence_present", "kind": "diff" }
            ],
        }),
    )
    .await?;
    let task_id = text(&task, "id")?;
    println!("created task {task_id} ({})", text(&task, "status")?);

    // No agent_id: ARES routes the task to the best capable agent.
    let assigned = call(client, "assign_task", json!({ "task_id": task_id })).await?;
    println!(
        "task routed to agent {} ({})",
        text(&assigned, "agent_id")?,
        text(&assigned, "status")?
    );

    let receipt = call(
        client,
        "submit_evidence",
        json!({
            "task_id": task_id,
            "agent_id": agent_id,
            "evidence": [
                {
                    "kind": "diff",
                    "content": "--- a/src/page.rs\n+++ b/src/page.rs\n@@ -1 +1 @@\n-let end = start + size + 1;\n+let end = start + size;\n"
                },
                { "kind": "test_results", "passed": 12, "failed": 0 }
            ],
        }),
    )
    .await?;
    println!(
        "evidence recorded: digest {}…, chain index {}, task {}",
        &text(&receipt["evidence"], "content_digest")?[..12],
        receipt["evidence"]["chain_index"],
        text(&receipt, "task_status")?
    );

    let verdict = call(client, "verify_task", json!({ "task_id": task_id })).await?;
    println!(
        "verdict: success={} outcome={} quality_score={:.3} task={}",
        verdict["success"],
        text(&verdict, "outcome")?,
        verdict["quality_score"].as_f64().unwrap_or_default(),
        text(&verdict, "task_status")?
    );
    for result in verdict["results"].as_array().into_iter().flatten() {
        println!(
            "  {:<17} {:<13} {} (via {})",
            result["criterion"]["type"].as_str().unwrap_or("?"),
            result["status"].as_str().unwrap_or("?"),
            result["detail"].as_str().unwrap_or(""),
            result["checked_via"].as_str().unwrap_or("?"),
        );
    }

    let reliability = call(client, "get_reliability", json!({ "agent_id": agent_id })).await?;
    println!(
        "reliability_score={:.3} (success_rate {}, verifications {})",
        reliability["reliability_score"]
            .as_f64()
            .unwrap_or_default(),
        reliability["success_rate"],
        reliability["verifications"]
    );
    Ok(())
}

/// Calls a tool and returns its structured content; a tool error (`isError`) becomes an
/// error carrying ARES's message.
async fn call(client: &Client, name: &'static str, arguments: Value) -> anyhow::Result<Value> {
    let Value::Object(arguments) = arguments else {
        bail!("{name}: arguments must be a JSON object");
    };
    let result = client
        .call_tool(CallToolRequestParams::new(name).with_arguments(arguments))
        .await
        .with_context(|| format!("calling {name}"))?;
    if result.is_error == Some(true) {
        let message: Vec<String> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        bail!("{name} refused: {}", message.join(" "));
    }
    result
        .structured_content
        .with_context(|| format!("{name} returned no structured content"))
}

fn text<'a>(value: &'a Value, field: &str) -> anyhow::Result<&'a str> {
    value[field]
        .as_str()
        .with_context(|| format!("expected a string `{field}` in {value}"))
}

/// `ARES_BIN`, else the `ares` built alongside this example, else a release or debug build.
fn ares_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ARES_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let mut candidates = Vec::new();
    // This example runs from target/<profile>/examples/; the binary is in target/<profile>/.
    if let Some(profile_dir) = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
    {
        candidates.push(profile_dir.join("ares"));
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    candidates.push(target.join("release/ares"));
    candidates.push(target.join("debug/ares"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .context("no ares binary found: run `cargo build` first, or set ARES_BIN")
}
