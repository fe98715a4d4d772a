//! ARES as remote agents reach it: streamable HTTP on port 0, with the initialize handshake
//! and with the per-request protocol, on SQLite and PostgreSQL.

mod common;

use ares::server::HttpOptions;
use common::{HttpServer, Mcp, db::TestDatabase, scenarios};
use serde_json::{Value, json};

macro_rules! scenarios_on {
    ($backend:ident, $connect:ident: $($name:ident),* $(,)?) => {
        mod $connect {
            pub mod $backend {
                use super::super::*;
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let db = TestDatabase::$backend().await;
                        let server = HttpServer::start(&db.url).await;
                        let mcp = Mcp::$connect(&server.base).await;
                        scenarios::$name(&mcp).await;
                        mcp.close().await;
                        server.stop().await;
                    }
                )*
            }
        }
    };
}

scenarios_on!(postgres, http: full_lifecycle, enforcement_ladder, escalation_moves_open_work,
    ground_truth_stays_unverifiable, idempotent_retries, rollback_with_dependents, lists_paginate,
    bad_inputs_are_refused, signed_evidence);

mod per_request {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_lifecycle_and_bad_inputs() {
        let db = TestDatabase::sqlite().await;
        let server = HttpServer::start(&db.url).await;
        let mcp = Mcp::http_per_request(&server.base).await;
        scenarios::full_lifecycle(&mcp).await;
        scenarios::bad_inputs_are_refused(&mcp).await;
        mcp.close().await;
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_every_scenario() {
        let db = TestDatabase::postgres().await;
        let server = HttpServer::start(&db.url).await;
        let mcp = Mcp::http_per_request(&server.base).await;
        scenarios::all(&mcp).await;
        mcp.close().await;
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_scenario_over_the_handshake() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let mcp = Mcp::http(&server.base).await;
    scenarios::all(&mcp).await;
    mcp.close().await;
    server.stop().await;
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "curl", "version": "1" } }
    })
}

#[tokio::test]
async fn health_answers_200_with_each_dependency() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let res = client()
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["dependencies"][0]["status"], "ok");
    assert!(
        body["dependencies"][0]["name"]
            .as_str()
            .unwrap()
            .contains("sqlite")
    );
    server.stop().await;
}

#[tokio::test]
async fn health_answers_503_when_the_store_is_gone() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    server.ares.store.close().await;
    let res = client()
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "unhealthy");
    server.stop().await;
}

#[tokio::test]
async fn a_page_on_another_origin_gets_403() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let post = |origin: &'static str| {
        client()
            .post(format!("{}/mcp", server.base))
            .bearer_auth(common::ADMIN_TOKEN)
            .bearer_auth(common::ADMIN_TOKEN)
            .header("accept", "application/json, text/event-stream")
            .header("origin", origin)
            .json(&initialize())
            .send()
    };
    assert_eq!(post("https://evil.example").await.unwrap().status(), 403);
    assert_eq!(post("http://localhost:3000").await.unwrap().status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn configured_origins_and_hosts_are_honoured() {
    let db = TestDatabase::sqlite().await;
    let options = HttpOptions {
        allowed_hosts: vec!["ares.example.com".into()],
        allowed_origins: vec!["https://app.example.com:443".into()],
        ..HttpOptions::default()
    };
    let server = HttpServer::start_with(&db.url, options).await;
    let send = |host: &'static str, origin: &'static str| {
        client()
            .post(format!("{}/mcp", server.base))
            .bearer_auth(common::ADMIN_TOKEN)
            .bearer_auth(common::ADMIN_TOKEN)
            .header("host", host)
            .header("origin", origin)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize())
            .send()
    };
    assert_eq!(
        send("ares.example.com", "https://app.example.com")
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send("ares.example.com", "http://localhost:3000")
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        send("rebound.attacker.net", "https://app.example.com")
            .await
            .unwrap()
            .status(),
        403
    );
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let db = TestDatabase::sqlite().await;
    let options = HttpOptions {
        max_body_bytes: 64 * 1024,
        ..HttpOptions::default()
    };
    let server = HttpServer::start_with(&db.url, options).await;
    let mut big = initialize();
    big["params"]["padding"] = json!("x".repeat(100 * 1024));
    let res = client()
        .post(format!("{}/mcp", server.base))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    // Still serving.
    let mcp = Mcp::http(&server.base).await;
    assert_eq!(mcp.call("health", json!({})).await["status"], "healthy");
    mcp.close().await;
    server.stop().await;
}

#[tokio::test]
async fn broken_json_gets_a_parse_error_not_a_crash() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let res = client()
        .post(format!("{}/mcp", server.base))
        .bearer_auth(common::ADMIN_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": ")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_client_error(), "{}", res.status());
    let mcp = Mcp::http(&server.base).await;
    assert_eq!(mcp.call("health", json!({})).await["status"], "healthy");
    mcp.close().await;
    server.stop().await;
}

#[tokio::test]
async fn the_binary_serves_http_and_stops_on_sigterm() {
    let db = TestDatabase::sqlite().await;
    let (child, base) =
        common::spawn_http(&db.url, &[("ARES_ADMIN_TOKEN", common::ADMIN_TOKEN)]).await;
    let health = client().get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the binary answers /health");
    let mcp = Mcp::http(&base).await;
    scenarios::full_lifecycle(&mcp).await;
    mcp.close().await;
    let (code, _) = common::terminate(child).await;
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
}

#[tokio::test]
async fn an_idle_timeout_of_zero_is_refused_naming_the_flag() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"))
        .args(["serve", "--http", "127.0.0.1:0", "--idle-timeout-secs", "0"])
        .env("DATABASE_URL", "sqlite::memory:")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--idle-timeout-secs"), "{stderr}");
    assert!(stderr.contains("0 is not in 1.."), "{stderr}");
}
