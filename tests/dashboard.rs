//! The dashboard over real HTTP: the page shell and its headers, the data behind the key
//! gate, the live event stream, report downloads, and — in Debian's chromium driven by
//! Playwright's MCP server — the page updating itself when an agent is suspended.

mod common;

use common::ground_truth::{chromium, node_bin};
use common::sse::EventStream;
use common::{HttpServer, Mcp, db::TestDatabase, scenarios::register};
use reqwest::StatusCode;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt, service::RunningService};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn key(admin: &Mcp, role: &str, agent: Option<&Value>) -> String {
    let mut args = json!({ "role": role });
    if let Some(a) = agent {
        args["agent_id"] = a["id"].clone();
    }
    let created = admin.call("create_api_key", args).await;
    created["key"].as_str().unwrap().to_string()
}

async fn get(url: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(url);
    if let Some(k) = key {
        request = request.bearer_auth(k);
    }
    request.send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header on {}", response.url()))
        .to_str()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shell_is_served_without_a_key_under_a_strict_policy() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;

    let page = get(&format!("{}/", server.base), None).await;

    assert_eq!(page.status(), StatusCode::OK);
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy").to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"<script src="/assets/app.js" defer></script>"#));
    assert_eq!(
        html.matches("<script").count(),
        1,
        "no inline script: {html}"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing loads from another origin"
    );
    assert!(html.contains(r#"<input id="api-key""#));

    let script = get(&format!("{}/assets/app.js", server.base), None).await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(header(&script, "content-type").starts_with("text/javascript"));
    assert_eq!(header(&script, "x-content-type-options"), "nosniff");
    assert!(script.text().await.unwrap().contains("/api/events"));
    let style = get(&format!("{}/assets/app.css", server.base), None).await;
    assert!(header(&style, "content-type").starts_with("text/css"));
    assert!(
        style
            .text()
            .await
            .unwrap()
            .contains("prefers-color-scheme: dark")
    );
    for unknown in ["secrets.js", "index.html", "app.js.map"] {
        let missing = get(&format!("{}/assets/{unknown}", server.base), None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND, "{unknown}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_data_needs_an_observer_or_admin_key() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["rust"]).await;
    let agent_key = key(&admin, "agent", Some(&agent)).await;
    let observer = key(&admin, "observer", None).await;
    let url = format!("{}/api/dashboard", server.base);

    let anonymous = get(&url, None).await;
    let as_agent = get(&url, Some(&agent_key)).await;
    let as_observer = get(&url, Some(&observer)).await;

    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("www-authenticate"));
    assert_eq!(as_agent.status(), StatusCode::FORBIDDEN);
    assert!(
        as_agent
            .text()
            .await
            .unwrap()
            .contains("needs an observer or admin key")
    );
    assert_eq!(as_observer.status(), StatusCode::OK);
    assert_eq!(header(&as_observer, "x-content-type-options"), "nosniff");
    let data: Value = as_observer.json().await.unwrap();
    let listed = data["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == agent["id"])
        .unwrap_or_else(|| panic!("the agent is not listed: {data:#}"));
    assert_eq!(listed["name"], agent["name"]);
    assert_eq!(listed["status"], "active");
    assert_eq!(listed["effective_limit"], 3);
    assert!(listed["reliability_score"].is_number());
    assert_eq!(
        data["events"][0]["event_type"], "agent.registered",
        "{data:#}"
    );
    assert!(
        data["health"]["dependencies"][0]["name"]
            .as_str()
            .unwrap()
            .starts_with("store")
    );
    for path in [
        "/api/events",
        &format!("/api/agents/{}/trend", agent["id"].as_str().unwrap()),
    ] {
        let refused = get(&format!("{}{path}", server.base), Some(&agent_key)).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{path}");
        let refused = get(&format!("{}{path}", server.base), None).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // Only the dashboard's own routes refuse agent keys; elsewhere nothing changes.
    let elsewhere = get(&format!("{}/no-such-page", server.base), Some(&agent_key)).await;
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_tasks_actions_and_a_trend_after_a_verdict_on_sqlite() {
    lists_tasks_actions_and_a_trend_after_a_verdict(&TestDatabase::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_lists_tasks_actions_and_a_trend_after_a_verdict_on_postgres() {
    lists_tasks_actions_and_a_trend_after_a_verdict(&TestDatabase::postgres().await).await;
}

async fn lists_tasks_actions_and_a_trend_after_a_verdict(db: &TestDatabase) {
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["rust"]).await;
    let task = admin
        .call(
            "create_task",
            json!({
                "description": "add a parser",
                "criteria": [{ "type": "evidence_present", "kind": "diff" }],
                "agent_id": agent["id"],
            }),
        )
        .await;
    admin
        .call(
            "submit_evidence",
            json!({
                "task_id": task["id"], "agent_id": agent["id"],
                "evidence": [{ "kind": "diff", "content": "+fn parse() {}" }],
            }),
        )
        .await;
    admin
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await;
    admin
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "throttle", "reason": "too many open tasks", "limit": 1 }),
        )
        .await;
    let observer = key(&admin, "observer", None).await;

    let data: Value = get(&format!("{}/api/dashboard", server.base), Some(&observer))
        .await
        .json()
        .await
        .unwrap();
    let trend = get(
        &format!(
            "{}/api/agents/{}/trend",
            server.base,
            agent["id"].as_str().unwrap()
        ),
        Some(&observer),
    )
    .await;

    assert_eq!(data["tasks"][0]["id"], task["id"], "{data:#}");
    assert_eq!(data["tasks"][0]["status"], "verified");
    let action = &data["actions"][0];
    assert_eq!(action["action"], "throttle", "{data:#}");
    assert_eq!(action["reason"], "too many open tasks");
    assert_eq!(data["agents"][0]["throttle_limit"], 1);
    assert_eq!(data["agents"][0]["effective_limit"], 1);
    assert_eq!(trend.status(), StatusCode::OK);
    let trend: Value = trend.json().await.unwrap();
    assert_eq!(trend["agent_name"], agent["name"]);
    let points = trend["points"].as_array().unwrap();
    assert_eq!(points.len(), 1, "one snapshot per verdict: {trend:#}");
    assert_eq!(points[0]["verifications"], 1);
    assert!(points[0]["reliability_score"].as_f64().unwrap() > 0.0);

    let unknown = get(
        &format!("{}/api/agents/{}/trend", server.base, uuid::Uuid::new_v4()),
        Some(&observer),
    )
    .await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let bad = get(
        &format!("{}/api/agents/not-an-id/trend", server.base),
        Some(&observer),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("`id`"));
    let bad = get(
        &format!(
            "{}/api/agents/{}/trend?limit=0",
            server.base,
            agent["id"].as_str().unwrap()
        ),
        Some(&observer),
    )
    .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("`limit`"));
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_a_registration_made_over_mcp() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let observer = key(&admin, "observer", None).await;
    let mut stream = EventStream::open(&server.base, &observer).await;
    assert_eq!(stream.next().await.event, "ready");

    let agent = register(&admin, &["docs"]).await;

    let message = loop {
        let message = stream.next().await;
        if message.event == "message" && message.data.contains("agent.registered") {
            break message;
        }
    };
    let event: Value = serde_json::from_str(&message.data).unwrap();
    assert_eq!(event["event_type"], "agent.registered");
    assert_eq!(event["agent_id"], agent["id"]);
    assert_eq!(event["data"]["name"], agent["name"]);
    assert_eq!(event["metadata"]["source"], "register_agent");
    assert_eq!(message.id.as_deref(), event["event_id"].as_str());
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_falls_behind_is_told_to_resync() {
    let db = TestDatabase::sqlite().await;
    let store = ares::store::connect(&db.url).await.unwrap();
    let mut ares = ares::Ares::new(store);
    ares.events = ares::events::EventBus::new(2);
    let server = HttpServer::serving(std::sync::Arc::new(ares), common::test_options()).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["docs"]).await;
    let observer = key(&admin, "observer", None).await;
    let mut stream = EventStream::open(&server.base, &observer).await;
    assert_eq!(stream.next().await.event, "ready");
    let event = ares::events::Event {
        event_id: uuid::Uuid::now_v7(),
        event_type: "agent.updated".into(),
        timestamp: chrono::Utc::now(),
        agent_id: serde_json::from_value(agent["id"].clone()).unwrap(),
        task_id: None,
        data: json!({}),
        metadata: ares::events::EventMetadata {
            correlation_id: uuid::Uuid::now_v7(),
            source: "test".into(),
            instance: "test".into(),
        },
    };

    // Far more at once than the bus keeps for a listener (each its own event: the bus
    // carries an event once).
    for _ in 0..200 {
        let event = ares::events::Event {
            event_id: uuid::Uuid::now_v7(),
            ..event.clone()
        };
        assert!(server.ares.events.publish(std::sync::Arc::new(event)));
    }

    let resync = loop {
        let message = stream.next().await;
        if message.event == "resync" {
            break message;
        }
    };
    let missed: Value = serde_json::from_str(&resync.data).unwrap();
    assert!(missed["missed"].as_u64().unwrap() > 0, "{missed}");
    admin.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_event_stream_does_not_hold_up_shutdown() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let observer = {
        let admin = Mcp::http(&server.base).await;
        let observer = key(&admin, "observer", None).await;
        admin.close().await;
        observer
    };
    let mut stream = EventStream::open(&server.base, &observer).await;
    assert_eq!(stream.next().await.event, "ready");

    let started = Instant::now();
    server.stop().await;

    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited on the stream for {:?}",
        started.elapsed()
    );
    let end = tokio::time::timeout(Duration::from_secs(5), stream.response.chunk())
        .await
        .expect("the stream ends with the server");
    assert!(!matches!(end, Ok(Some(_))), "the stream went on: {end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_download_in_each_format_and_bad_parameters_are_named() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let agent = register(&admin, &["rust"]).await;
    let other = register(&admin, &["rust"]).await;
    admin
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "warning", "reason": "late, twice" }),
        )
        .await;
    let observer = key(&admin, "observer", None).await;
    let agent_key = key(&admin, "agent", Some(&other)).await;
    let base = &server.base;

    let csv = get(
        &format!("{base}/reports/enforcement?format=csv"),
        Some(&observer),
    )
    .await;
    assert_eq!(csv.status(), StatusCode::OK);
    assert_eq!(header(&csv, "content-type"), "text/csv; charset=utf-8");
    let disposition = header(&csv, "content-disposition").to_string();
    assert!(
        disposition.starts_with("attachment; filename=\"ares-enforcement-report-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    let csv = csv.text().await.unwrap();
    assert!(csv.lines().next().unwrap().contains("reason"), "{csv}");
    assert!(csv.contains("\"late, twice\""), "{csv}");

    let markdown = get(
        &format!("{base}/reports/reliability?format=markdown"),
        Some(&observer),
    )
    .await;
    assert_eq!(
        header(&markdown, "content-type"),
        "text/markdown; charset=utf-8"
    );
    assert!(header(&markdown, "content-disposition").ends_with(".md\""));
    let markdown = markdown.text().await.unwrap();
    assert!(markdown.starts_with("| agent_id |"), "{markdown}");
    assert!(
        markdown.contains(agent["name"].as_str().unwrap()),
        "{markdown}"
    );

    let json = get(
        &format!(
            "{base}/reports/reliability?agent_id={}&since=2020-01-01T00:00:00Z",
            agent["id"].as_str().unwrap()
        ),
        Some(&observer),
    )
    .await;
    assert_eq!(header(&json, "content-type"), "application/json");
    assert!(header(&json, "content-disposition").ends_with(".json\""));
    let rows: Value = json.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1, "{rows:#}");
    assert_eq!(rows[0]["agent_name"], agent["name"]);

    // An agent key reads only its own agent's report, as over MCP.
    let own: Value = get(&format!("{base}/reports/reliability"), Some(&agent_key))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(own.as_array().unwrap().len(), 1, "{own:#}");
    assert_eq!(own[0]["agent_id"], other["id"]);
    let foreign = get(
        &format!(
            "{base}/reports/reliability?agent_id={}",
            agent["id"].as_str().unwrap()
        ),
        Some(&agent_key),
    )
    .await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);

    for (path, parameter) in [
        ("/reports/enforcement?format=xml", "`format`"),
        ("/reports/enforcement?since=yesterday", "`since`"),
        (
            "/reports/enforcement?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "`until`",
        ),
        ("/reports/enforcement?agent_id=nobody", "`agent_id`"),
        ("/reports/enforcement?fromat=csv", "`fromat`"),
        ("/reports/audit", "`report`"),
    ] {
        let refused = get(&format!("{base}{path}"), Some(&observer)).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{path}");
        let message = refused.text().await.unwrap();
        assert!(message.contains(parameter), "{path}: {message}");
        assert!(message.contains("expected"), "{path}: {message}");
    }
    let anonymous = get(&format!("{base}/reports/enforcement"), None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    admin.close().await;
    server.stop().await;
}

// ---------------------------------------------------------------- in a real browser

/// Playwright's MCP server driving Debian's chromium, as a person's browser.
struct Browser {
    client: RunningService<RoleClient, ()>,
    _out: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let out = tempfile::tempdir().unwrap();
        let dir = out.path().to_path_buf();
        let cmd = tokio::process::Command::new(node_bin("playwright-mcp")).configure(|c| {
            c.args(["--headless", "--browser", "chromium", "--executable-path"])
                .arg(chromium())
                .args(["--isolated", "--no-sandbox", "--output-dir"])
                .arg(&dir)
                .current_dir(&dir);
        });
        let client =
            ().serve(TokioChildProcess::new(cmd).expect("spawn playwright-mcp"))
                .await
                .expect("initialize playwright-mcp");
        Browser { client, _out: out }
    }

    /// Calls a browser tool that must succeed; returns its text.
    async fn call(&self, tool: &str, args: Value) -> String {
        let Value::Object(args) = args else {
            panic!("arguments must be an object")
        };
        let result = self
            .client
            .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
            .await
            .unwrap_or_else(|e| panic!("{tool} failed: {e}"));
        let text = common::text(&result);
        assert_ne!(result.is_error, Some(true), "{tool} was refused: {text}");
        text
    }

    /// The value a `() => string` function returns in the page.
    async fn evaluate(&self, function: &str) -> String {
        let raw = self
            .call("browser_evaluate", json!({ "function": function }))
            .await;
        let body = raw.split("### Result").nth(1).unwrap_or(&raw);
        let body = body.split("\n### ").next().unwrap_or(body).trim();
        serde_json::from_str::<String>(body).unwrap_or_else(|_| body.to_string())
    }

    /// Polls `function` in the page until its answer satisfies `done` (at most 20 s).
    async fn wait_until(&self, what: &str, function: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.evaluate(function).await;
            if done(&answer) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "{what} never happened; the page says {answer:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn close(self) {
        let _ = self.client.cancel().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_a_suspension_as_it_happens_without_a_reload() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let admin = Mcp::http(&server.base).await;
    let observer = key(&admin, "observer", None).await;
    let browser = Browser::start().await;

    browser
        .call(
            "browser_navigate",
            json!({ "url": format!("{}/", server.base) }),
        )
        .await;
    browser
        .call(
            "browser_type",
            json!({ "element": "API key field", "target": "#api-key", "text": observer, "submit": true }),
        )
        .await;
    browser
        .wait_until(
            "the live stream connecting",
            "() => document.getElementById('connection').textContent",
            |s| s == "Live",
        )
        .await;
    // Marks this page load: a reload would lose it.
    browser
        .evaluate("() => { window.sameLoad = 'yes'; return 'marked'; }")
        .await;

    let agent = register(&admin, &["rust"]).await;
    let name = agent["name"].as_str().unwrap().to_string();
    let id = agent["id"].as_str().unwrap().to_string();
    let row = format!("document.querySelector('tr[data-agent-id=\"{id}\"]')");
    let seen = browser
        .wait_until(
            "the new agent appearing",
            &format!("() => {row} ? {row}.textContent : 'absent'"),
            |s| s != "absent",
        )
        .await;
    assert!(seen.contains(&name) && seen.contains("active"), "{seen}");

    admin
        .call(
            "enforce",
            json!({ "agent_id": id, "action": "suspend", "reason": "claimed tests it never ran", "duration_minutes": 0 }),
        )
        .await;

    let status = browser
        .wait_until(
            "the agent's row showing the suspension",
            &format!(
                "() => {row}.dataset.status + ': ' + {row}.querySelector('.status').textContent"
            ),
            |s| s.starts_with("suspended"),
        )
        .await;
    assert!(status.contains("suspended"), "{status}");
    let feed = browser
        .wait_until(
            "the enforcement feed showing the action",
            "() => { const a = document.querySelector('#actions li[data-action=\"suspend\"]'); return a ? a.textContent : 'absent'; }",
            |s| s != "absent",
        )
        .await;
    assert!(
        feed.contains("claimed tests it never ran") && feed.contains(&name),
        "{feed}"
    );
    assert!(feed.contains("manual"), "{feed}");
    let events = browser
        .evaluate("() => document.getElementById('events').textContent")
        .await;
    assert!(events.contains("enforcement.suspend"), "{events}");
    assert_eq!(
        browser
            .evaluate("() => window.sameLoad || 'reloaded'")
            .await,
        "yes"
    );
    assert_eq!(
        browser
            .evaluate("() => sessionStorage.getItem('ares.apiKey') === null ? 'no' : 'kept'")
            .await,
        "kept"
    );

    browser.close().await;
    admin.close().await;
    server.stop().await;
}
