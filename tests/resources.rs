//! Live MCP resources over real transports: listing and reading them, subscribing the way
//! each protocol generation does (`resources/subscribe` after the handshake,
//! `subscriptions/listen` per request), progress of a verification, and the event feed
//! that tells who escalated what to whom.
// `resources/subscribe` is what handshake-era clients use; rmcp marks it deprecated in
// favour of `subscriptions/listen`, and ARES must serve both.
#![allow(deprecated)]

mod common;

use common::db::TestDatabase;
use common::scenarios::{assigned_task, register};
use common::{ADMIN_TOKEN, HttpServer, Mcp, transport};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, ErrorCode, Implementation,
    ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams, RequestMetaObject,
    ResourceContents, ResourceUpdatedNotificationParam, ServerNotification, SubscribeRequestParams,
    SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RunningService, ServiceError};
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::sync::mpsc;

/// What the server told this client on its own.
#[derive(Debug)]
enum Told {
    Updated(String),
    Progress(ProgressNotificationParam),
}

/// A client that records resource updates and progress.
#[derive(Clone)]
struct Recorder(mpsc::UnboundedSender<Told>);

impl ClientHandler for Recorder {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Told::Updated(params.uri));
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Told::Progress(params));
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("ares-resources-test", "1"),
        )
    }
}

type Client = RunningService<RoleClient, Recorder>;

fn recorder() -> (Recorder, mpsc::UnboundedReceiver<Told>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Recorder(tx), rx)
}

async fn over_http(base: &str) -> (Client, mpsc::UnboundedReceiver<Told>) {
    let (handler, told) = recorder();
    let client = handler
        .serve(transport(base, ADMIN_TOKEN))
        .await
        .expect("initialize over HTTP");
    (client, told)
}

async fn over_stdio(url: &str) -> (Client, mpsc::UnboundedReceiver<Told>) {
    let (handler, told) = recorder();
    let cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ares")).configure(|c| {
        c.arg("serve")
            .env("DATABASE_URL", url)
            .env("ARES_LOG", "warn");
    });
    let client = handler
        .serve(TokioChildProcess::new(cmd).expect("spawn ares"))
        .await
        .expect("initialize over stdio");
    (client, told)
}

async fn call(client: &Client, tool: &str, args: Value) -> Value {
    let Value::Object(args) = args else {
        panic!("arguments are an object")
    };
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool} failed: {e}"));
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    result.structured_content.expect("structured content")
}

async fn read(client: &Client, uri: &str) -> Result<Value, ServiceError> {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await?;
    let [
        ResourceContents::TextResourceContents {
            uri: got,
            mime_type,
            text,
            ..
        },
    ] = result.contents.as_slice()
    else {
        panic!("one text content for {uri}: {result:?}")
    };
    assert_eq!(got, uri);
    assert_eq!(mime_type.as_deref(), Some("application/json"));
    Ok(serde_json::from_str(text).expect("resource text is JSON"))
}

fn error_code(e: ServiceError) -> (ErrorCode, String) {
    match e {
        ServiceError::McpError(e) => (e.code, e.message.to_string()),
        other => panic!("expected an MCP error, got {other}"),
    }
}

/// Waits up to `within` for an update of `uri`, skipping other notifications.
async fn updated(told: &mut mpsc::UnboundedReceiver<Told>, uri: &str, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        while let Some(t) = told.recv().await {
            if matches!(&t, Told::Updated(u) if u == uri) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_listed_and_read_as_the_tools_show_them() {
    let db = TestDatabase::sqlite().await;
    let (client, _told) = over_stdio(&db.url).await;
    let listed = client.list_all_resources().await.unwrap();
    let uris: Vec<&str> = listed.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(
        uris,
        [
            "ares://agents",
            "ares://enforcement/actions",
            "ares://system/metrics",
            "ares://reports/reliability",
            "ares://events"
        ]
    );
    let templates = client.list_all_resource_templates().await.unwrap();
    let templates: Vec<&str> = templates.iter().map(|t| t.uri_template.as_str()).collect();
    assert_eq!(templates, ["ares://agents/{id}", "ares://tasks/{id}"]);

    let agent = call(
        &client,
        "register_agent",
        json!({ "name": "reader", "capabilities": ["rust"] }),
    )
    .await;
    let id = agent["id"].as_str().unwrap();
    let agents = read(&client, "ares://agents").await.unwrap();
    assert_eq!(agents["agents"][0]["name"], "reader", "{agents:#}");
    let one = read(&client, &format!("ares://agents/{id}")).await.unwrap();
    assert_eq!(one["agent"]["name"], "reader");
    assert!(
        one["reliability"]["reliability_score"].is_number(),
        "{one:#}"
    );
    let metrics = read(&client, "ares://system/metrics").await.unwrap();
    assert_eq!(metrics["health"]["status"], "healthy", "{metrics:#}");
    let report = read(&client, "ares://reports/reliability").await.unwrap();
    assert_eq!(report["report"], "reliability");

    let events = read(&client, "ares://events").await.unwrap();
    let registered = &events["events"][0];
    assert_eq!(registered["event_type"], "agent.registered", "{events:#}");
    assert_eq!(registered["agent_id"], agent["id"]);
    assert_eq!(registered["data"]["name"], "reader");
    assert!(registered["metadata"]["correlation_id"].is_string());
    assert!(registered["timestamp"].is_string());

    // Bad URIs: named, and nothing breaks.
    let missing = format!("ares://tasks/{}", uuid::Uuid::now_v7());
    let (code, message) = error_code(read(&client, &missing).await.unwrap_err());
    assert_eq!(code, ErrorCode(-32002), "{message}");
    assert!(message.contains("not found"), "{message}");
    let (code, message) = error_code(read(&client, "ares://nothing").await.unwrap_err());
    assert_eq!(code, ErrorCode(-32002));
    assert!(message.contains("ares://agents/{id}"), "{message}");
    let (code, message) = error_code(read(&client, "ares://agents/7").await.unwrap_err());
    assert_eq!(code, ErrorCode::INVALID_PARAMS);
    assert!(message.starts_with("uri:"), "{message}");
    let still = read(&client, "ares://agents").await.unwrap();
    assert_eq!(still["agents"].as_array().unwrap().len(), 1);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_sees_a_suspension_within_a_second() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let (watcher, mut told) = over_http(&server.base).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["rust"]).await;
    let uri = format!("ares://agents/{}", agent["id"].as_str().unwrap());
    watcher
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    watcher
        .subscribe(SubscribeRequestParams::new("ares://enforcement/actions"))
        .await
        .unwrap();

    let suspended_at = std::time::Instant::now();
    suspend(&admin, &agent).await;
    assert!(
        updated(&mut told, &uri, Duration::from_secs(1)).await,
        "no update of {uri} within a second of the suspension"
    );
    assert!(suspended_at.elapsed() < Duration::from_secs(1));
    let now = read(&watcher, &uri).await.unwrap();
    assert_eq!(now["agent"]["status"], "suspended", "{now:#}");

    // After unsubscribing, that resource is no longer told; the other still is.
    watcher
        .unsubscribe(UnsubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    while told.try_recv().is_ok() {}
    admin
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "reinstate", "reason": "cleared" }),
        )
        .await;
    let mut seen = Vec::new();
    while let Ok(Some(t)) = tokio::time::timeout(Duration::from_millis(500), told.recv()).await {
        if let Told::Updated(u) = t {
            seen.push(u);
        }
    }
    assert_eq!(seen, ["ares://enforcement/actions"]);

    // Subscribing to something that does not exist is refused, naming it.
    let missing = format!("ares://agents/{}", uuid::Uuid::now_v7());
    let refused = watcher
        .subscribe(SubscribeRequestParams::new(missing))
        .await
        .unwrap_err();
    assert_eq!(error_code(refused).0, ErrorCode(-32002));
    watcher.cancel().await.unwrap();
    admin.close().await;
    server.stop().await;
}

/// Suspends `agent` for half an hour.
async fn suspend(admin: &Mcp, agent: &Value) {
    admin
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "suspend", "reason": "audit", "duration_minutes": 30 }),
        )
        .await;
}

/// Reads from `connection` until the server closes it; false if it is still open after
/// `within`.
async fn closed_within(connection: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match connection.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// With `--idle-timeout-secs 1`, a connection that sends nothing and a kept-alive one whose
/// answer is out are both closed, while a session's open stream is not: a subscriber is
/// still told of a change after several timeouts have passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_but_open_streams_are_not() {
    use tokio::io::AsyncWriteExt;
    let db = TestDatabase::sqlite().await;
    let (child, base) = common::spawn_http(
        &db.url,
        &[
            ("ARES_ADMIN_TOKEN", ADMIN_TOKEN),
            ("ARES_IDLE_TIMEOUT_SECS", "1"),
        ],
    )
    .await;
    let address = base.trim_start_matches("http://");

    let mut silent = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut kept = tokio::net::TcpStream::connect(address).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)).await,
        "a connection that never sent a request is still open"
    );
    assert!(
        closed_within(&mut kept, Duration::from_secs(5)).await,
        "a kept-alive connection is still open after its answer"
    );

    let (watcher, mut told) = over_http(&base).await;
    let admin = Mcp::http(&base).await;
    let agent = register(&admin, &["rust"]).await;
    let uri = format!("ares://agents/{}", agent["id"].as_str().unwrap());
    watcher
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    suspend(&admin, &agent).await;
    assert!(
        updated(&mut told, &uri, Duration::from_secs(2)).await,
        "the subscriber's stream did not outlast the idle timeout"
    );
    watcher.cancel().await.unwrap();
    admin.close().await;
    let (code, _) = common::terminate(child).await;
    assert_eq!(code, Some(0), "graceful shutdown exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_sessions_subscribe_too() {
    let db = TestDatabase::sqlite().await;
    let (client, mut told) = over_stdio(&db.url).await;
    client
        .subscribe(SubscribeRequestParams::new("ares://agents"))
        .await
        .unwrap();
    call(
        &client,
        "register_agent",
        json!({ "name": "newcomer", "capabilities": ["go"] }),
    )
    .await;
    assert!(updated(&mut told, "ares://agents", Duration::from_secs(1)).await);
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_request_clients_listen_for_changes() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let (handler, _told) = recorder();
    let client = handler
        .serve_with_lifecycle(
            transport(&server.base, ADMIN_TOKEN),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover over HTTP");
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["rust"]).await;
    let agent_uri = format!("ares://agents/{}", agent["id"].as_str().unwrap());

    let filter = SubscriptionFilter::builder()
        .resource_subscriptions([
            "ares://enforcement/actions",
            agent_uri.as_str(),
            "file:///etc",
        ])
        .build();
    let mut subscription = client.peer().listen(filter).await.unwrap();
    assert_eq!(
        subscription.acknowledged().resource_subscriptions,
        Some(vec![
            "ares://enforcement/actions".to_string(),
            agent_uri.clone()
        ]),
        "resources ARES does not serve are left out"
    );
    admin
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "warning", "reason": "late twice" }),
        )
        .await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while seen.len() < 2 {
        let next = tokio::time::timeout_at(deadline, subscription.next()).await;
        match next {
            Ok(Ok(Some(ServerNotification::ResourceUpdatedNotification(n)))) => {
                seen.push(n.params.uri)
            }
            Ok(Ok(Some(_))) => {}
            other => panic!("no update within a second: {other:?}, seen {seen:?}"),
        }
    }
    seen.sort();
    let mut expected = vec!["ares://enforcement/actions".to_string(), agent_uri];
    expected.sort();
    assert_eq!(seen, expected);
    subscription.cancel().await.unwrap();
    admin.close().await;
    server.stop().await;
}

/// Submits evidence that meets the three criteria of `assigned_task`'s tasks.
async fn submit_passing(admin: &Mcp, task: &Value, agent: &Value) {
    admin
        .call(
            "submit_evidence",
            json!({
                "task_id": task["id"], "agent_id": agent["id"],
                "evidence": [
                    { "kind": "diff", "content": "+fn parse() {}" },
                    { "kind": "test_results", "passed": 12, "failed": 0 },
                    { "kind": "metrics", "values": { "p95_ms": 120.0 } }
                ]
            }),
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_reports_progress_per_criterion() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let (client, mut told) = over_http(&server.base).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["rust"]).await;
    let task = assigned_task(&admin, &agent["id"], &["rust"]).await;
    submit_passing(&admin, &task, &agent).await;
    let mut meta = RequestMetaObject::new();
    meta.set_progress_token(rmcp::model::ProgressToken(
        rmcp::model::NumberOrString::String("verify-1".into()),
    ));
    let mut request = CallToolRequestParams::new("verify_task").with_arguments(
        json!({ "task_id": task["id"] })
            .as_object()
            .unwrap()
            .clone(),
    );
    request.meta = Some(meta);
    let result = client.call_tool(request).await.unwrap();
    assert_eq!(
        result.structured_content.as_ref().unwrap()["outcome"],
        "verified",
        "{result:?}"
    );
    let mut progress = Vec::new();
    // Notifications go out before the result; on a loaded machine one may still be in
    // transit, so wait for a quiet 2 s.
    while let Ok(Some(t)) = tokio::time::timeout(Duration::from_secs(2), told.recv()).await {
        if let Told::Progress(p) = t {
            progress.push(p);
        }
    }
    // Three criteria, then the verdict. rmcp's client hands each notification to the
    // handler on a task of its own, so they can reach it out of order; the order on the
    // wire is checked below.
    progress.sort_by(|a, b| a.progress.total_cmp(&b.progress));
    let steps: Vec<(f64, Option<f64>)> = progress.iter().map(|p| (p.progress, p.total)).collect();
    assert_eq!(
        steps,
        [
            (1.0, Some(4.0)),
            (2.0, Some(4.0)),
            (3.0, Some(4.0)),
            (4.0, Some(4.0))
        ]
    );
    assert!(
        progress[0]
            .message
            .as_deref()
            .unwrap()
            .contains("tests_pass"),
        "{progress:?}"
    );
    assert_eq!(
        progress[3].message.as_deref(),
        Some("verdict recorded: verified")
    );

    // On the wire, in one response stream: the progress in order, then the result.
    let task = assigned_task(&admin, &agent["id"], &["rust"]).await;
    submit_passing(&admin, &task, &agent).await;
    let http = reqwest::Client::new();
    let version = "2025-11-25";
    let session = common::raw_session(&http, &server.base, version).await;
    let body = http
        .post(format!("{}/mcp", server.base))
        .bearer_auth(ADMIN_TOKEN)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", version)
        .json(
            &json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
            "name": "verify_task", "arguments": { "task_id": task["id"] },
            "_meta": { "progressToken": "verify-2" } } }),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let messages: Vec<Value> = body
        .lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter(|data| !data.trim().is_empty())
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect();
    let wire: Vec<f64> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            assert_eq!(m["params"]["progressToken"], "verify-2", "{m}");
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(wire, [1.0, 2.0, 3.0, 4.0], "{body}");
    let last = messages.last().unwrap();
    assert_eq!(last["id"], 7, "the result comes last: {body}");
    assert_eq!(
        last["result"]["structuredContent"]["outcome"], "verified",
        "{body}"
    );

    client.cancel().await.unwrap();
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_is_published_with_who_handed_what_to_whom() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let (watcher, mut told) = over_http(&server.base).await;
    watcher
        .subscribe(SubscribeRequestParams::new("ares://events"))
        .await
        .unwrap();
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["sql"]).await;
    let backup = register(&admin, &["sql"]).await;
    let open = assigned_task(&admin, &agent["id"], &["sql"]).await;
    while told.try_recv().is_ok() {}
    admin
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "escalate", "reason": "on leave" }),
        )
        .await;
    assert!(updated(&mut told, "ares://events", Duration::from_secs(1)).await);
    let events = read(&watcher, "ares://events").await.unwrap();
    let escalation = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "enforcement.escalate")
        .unwrap_or_else(|| panic!("no escalation event: {events:#}"));
    assert_eq!(escalation["agent_id"], agent["id"]);
    let moves = &escalation["data"]["details"]["moves"];
    assert_eq!(moves[0]["task_id"], open["id"], "{escalation:#}");
    assert_eq!(moves[0]["from"], agent["id"]);
    assert_eq!(moves[0]["to"], backup["id"]);
    // The task's move is an event of the same call.
    let moved = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "task.updated" && e["task_id"] == open["id"])
        .expect("the moved task's event");
    assert_eq!(moved["agent_id"], backup["id"]);
    assert_eq!(
        moved["metadata"]["correlation_id"],
        escalation["metadata"]["correlation_id"]
    );
    watcher.cancel().await.unwrap();
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keys_read_only_their_own_resources() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["rust"]).await;
    let other = register(&admin, &["rust"]).await;
    let key = admin
        .call(
            "create_api_key",
            json!({ "role": "agent", "agent_id": agent["id"] }),
        )
        .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let (handler, _told) = recorder();
    let client = handler
        .serve(transport(&server.base, &key))
        .await
        .expect("initialize as the agent");
    let own = read(
        &client,
        &format!("ares://agents/{}", agent["id"].as_str().unwrap()),
    )
    .await
    .unwrap();
    assert_eq!(own["agent"]["id"], agent["id"]);
    let (code, message) = error_code(
        read(
            &client,
            &format!("ares://agents/{}", other["id"].as_str().unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, ErrorCode::INVALID_REQUEST);
    assert!(message.contains("forbidden"), "{message}");
    let (_, message) = error_code(read(&client, "ares://agents").await.unwrap_err());
    assert!(message.contains("forbidden"), "{message}");
    let refused = client
        .subscribe(SubscribeRequestParams::new("ares://agents"))
        .await
        .unwrap_err();
    assert!(error_code(refused).1.contains("forbidden"));

    // Listening (2026-07-28) to a resource the key may not read ends with the refusal.
    let (handler, _told) = recorder();
    let per_request = handler
        .serve_with_lifecycle(
            transport(&server.base, &key),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .expect("discover as the agent");
    let filter = SubscriptionFilter::builder()
        .resource_subscriptions(["ares://agents"])
        .build();
    let refusal = match per_request.peer().listen(filter).await {
        Err(e) => e.to_string(),
        Ok(mut subscription) => {
            let end = tokio::time::timeout(Duration::from_secs(2), subscription.next()).await;
            format!("{end:?}")
        }
    };
    assert!(refusal.contains("forbidden"), "{refusal}");
    per_request.cancel().await.unwrap();
    client.cancel().await.unwrap();
    admin.close().await;
    server.stop().await;
}
