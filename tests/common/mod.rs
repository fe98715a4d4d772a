//! Test harness: a real rmcp client talking to a real ARES over stdio (the built binary as a
//! child process) or streamable HTTP (the server on port 0), on a fresh database.
#![allow(dead_code)]

pub mod acked;
pub mod db;
pub mod ground_truth;
pub mod postgres;
pub mod redis;
pub mod scenarios;
pub mod sse;

use ares::Ares;
use ares::server::{self, HttpOptions};
use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use rmcp::service::{RunningService, ServiceError};
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::Value;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The bootstrap admin key every test HTTP server accepts.
pub const ADMIN_TOKEN: &str = "test-admin-token-not-a-secret";

/// An MCP client session with helpers that turn each kind of answer into something a test
/// can assert on.
pub struct Mcp {
    pub client: RunningService<RoleClient, ()>,
}

/// A JSON-RPC error answer: its message and `data.field`.
#[derive(Debug)]
pub struct Invalid {
    pub code: i32,
    pub message: String,
    pub field: Option<String>,
}

impl Mcp {
    /// Starts `ares serve` as a child process on the database at `url`, as Claude Desktop
    /// would.
    pub async fn stdio(url: &str) -> Mcp {
        Self::stdio_with(url, &[]).await
    }

    pub async fn stdio_with(url: &str, env: &[(&str, &str)]) -> Mcp {
        let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares")).configure(|c| {
            c.arg("serve")
                .env("DATABASE_URL", url)
                .env("ARES_LOG", "warn");
            for (k, v) in env {
                c.env(k, v);
            }
        });
        let transport = TokioChildProcess::new(cmd).expect("spawn ares");
        let client = ().serve(transport).await.expect("initialize over stdio");
        Mcp { client }
    }

    /// Connects over streamable HTTP as admin with the initialize handshake (2025-11-25).
    pub async fn http(base: &str) -> Mcp {
        Self::http_as(base, ADMIN_TOKEN).await
    }

    /// Connects over streamable HTTP with this API key.
    pub async fn http_as(base: &str, key: &str) -> Mcp {
        let client = ().serve(transport(base, key)).await.expect("initialize over HTTP");
        Mcp { client }
    }

    /// Connects over streamable HTTP with the per-request protocol (2026-07-28, no session).
    pub async fn http_per_request(base: &str) -> Mcp {
        let transport = transport(base, ADMIN_TOKEN);
        let client = ()
            .serve_with_lifecycle(
                transport,
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .expect("discover over HTTP");
        Mcp { client }
    }

    async fn raw(&self, tool: &str, args: Value) -> Result<CallToolResult, ServiceError> {
        let Value::Object(args) = args else {
            panic!("tool arguments must be an object")
        };
        self.client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
            .await
    }

    /// Calls a tool that must succeed; returns its structured content.
    pub async fn call(&self, tool: &str, args: Value) -> Value {
        let result = self
            .raw(tool, args.clone())
            .await
            .unwrap_or_else(|e| panic!("{tool}({args}) failed: {e}"));
        assert_ne!(
            result.is_error,
            Some(true),
            "{tool}({args}) was refused: {:?}",
            result.content
        );
        result
            .structured_content
            .unwrap_or_else(|| panic!("{tool} returned no structured content"))
    }

    /// Calls a tool that must be refused (a tool result with isError); returns its text.
    pub async fn refused(&self, tool: &str, args: Value) -> String {
        let result = self.raw(tool, args.clone()).await.unwrap_or_else(|e| {
            panic!("{tool}({args}) should be refused, got a protocol error: {e}")
        });
        assert_eq!(
            result.is_error,
            Some(true),
            "{tool}({args}) should be refused, got {:?}",
            result.structured_content
        );
        text(&result)
    }

    /// Calls a tool with arguments that must be rejected as invalid params.
    pub async fn invalid(&self, tool: &str, args: Value) -> Invalid {
        match self.raw(tool, args.clone()).await {
            Err(ServiceError::McpError(e)) => Invalid {
                code: e.code.0,
                message: e.message.to_string(),
                field: e
                    .data
                    .as_ref()
                    .and_then(|d| d.get("field"))
                    .and_then(|f| f.as_str())
                    .map(String::from),
            },
            other => panic!("{tool}({args}) should be invalid params, got {other:?}"),
        }
    }

    pub async fn close(self) {
        let _ = self.client.cancel().await;
    }
}

pub fn transport(base: &str, key: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            format!("{base}/mcp"),
        )
        .auth_header(key);
    StreamableHttpClientTransport::with_client(reqwest::Client::new(), config)
}

/// Opens a session with the handshake at `version` over raw HTTP, as the admin; returns
/// its id.
pub async fn raw_session(client: &reqwest::Client, base: &str, version: &str) -> String {
    let post = |body: serde_json::Value| {
        client
            .post(format!("{base}/mcp"))
            .bearer_auth(ADMIN_TOKEN)
            .header("accept", "application/json, text/event-stream")
            .json(&body)
    };
    let init = serde_json::json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": { "name": "raw", "version": "1" } } });
    let response = post(init).send().await.unwrap();
    assert_eq!(response.status(), 200, "initialize at {version}");
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body = response.text().await.unwrap();
    assert!(body.contains(version), "negotiated {version}: {body}");
    let initialized =
        post(serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", version)
            .send()
            .await
            .unwrap();
    assert_eq!(initialized.status(), 202);
    session
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Server options for tests: the defaults, with a rate limit no test hits by accident.
pub fn test_options() -> HttpOptions {
    HttpOptions {
        rate_limit: 100_000,
        ..HttpOptions::default()
    }
}

/// An in-process HTTP server on an ephemeral port.
pub struct HttpServer {
    pub base: String,
    pub ares: Arc<Ares>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    pub async fn start(url: &str) -> HttpServer {
        Self::start_with(url, test_options()).await
    }

    pub async fn start_with(url: &str, mut options: HttpOptions) -> HttpServer {
        if options.admin_token.is_none() {
            options.admin_token = Some(ares::config::Secret::new(ADMIN_TOKEN));
        }
        let store = ares::store::connect(url).await.expect("open store");
        let ares = Arc::new(Ares::new(store));
        Self::serving(ares, options).await
    }

    pub async fn serving(ares: Arc<Ares>, mut options: HttpOptions) -> HttpServer {
        if options.admin_token.is_none() {
            options.admin_token = Some(ares::config::Secret::new(ADMIN_TOKEN));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let app = server::router(ares.clone(), &options, shutdown.clone());
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            server::serve_http(listener, app, server::IDLE_TIMEOUT, token)
                .await
                .expect("serve");
        });
        HttpServer {
            base,
            ares,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.task).await;
    }
}

/// Starts the built binary as `ares serve --http` on a free loopback port with `env`, and
/// waits (bounded) until it answers `/health`. Returns the child (stderr piped) and the base
/// URL.
pub async fn spawn_http(db_url: &str, env: &[(&str, &str)]) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares"));
    cmd.args(["serve", "--http", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", db_url)
        .env_remove("ARES_ADMIN_TOKEN")
        .stderr(std::process::Stdio::piped())
        // A test that fails before it stops the server must not leave it running.
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..300 {
        if reqwest::get(format!("{base}/health")).await.is_ok() {
            return (child, base);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("ares serve --http never answered /health at {base}");
}

/// Sends SIGTERM and returns what the process wrote to stderr and its exit code.
pub async fn terminate(child: tokio::process::Child) -> (Option<i32>, String) {
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("exits promptly after SIGTERM")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
