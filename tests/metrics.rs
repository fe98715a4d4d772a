//! `/metrics` as Prometheus scrapes it: real tool calls over HTTP and stdio, then the text
//! format read back series by series; and the deploy kit checked against what ARES exports.

mod common;

use ares::Ares;
use common::{ADMIN_TOKEN, HttpServer, Mcp, db::TestDatabase, scenarios, test_options};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// One scrape, parsed: `name{labels}` → value.
struct Scrape(Vec<(String, BTreeMap<String, String>, f64)>);

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .filter(|p| !p.is_empty())
                        .map(|pair| {
                            let (k, v) = pair.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
            };
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().expect("a number"),
            };
            samples.push((name, labels, value));
        }
        Scrape(samples)
    }

    /// The value of the series named `name` with (at least) these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
    }
}

async fn scrape_text(base: &str, key: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("GET /metrics")
}

async fn scrape(base: &str, key: Option<&str>) -> Scrape {
    let res = scrape_text(base, key).await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scrape::parse(&res.text().await.unwrap())
}

/// Scrapes until `ready` holds (the event feed counts asynchronously), bounded.
async fn scrape_until(base: &str, key: Option<&str>, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    for _ in 0..100 {
        let s = scrape(base, key).await;
        if ready(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    scrape(base, key).await
}

fn tool_calls(s: &Scrape, tool: &str) -> Option<f64> {
    s.get(
        "ares_response_time_seconds_count",
        &[("endpoint", "tools/call"), ("method", tool)],
    )
}

fn passing_task(cap: &str) -> Value {
    json!({
        "description": "implement the parser",
        "required_capabilities": [cap],
        "criteria": [{ "type": "tests_pass", "min_passed": 1 }]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_task_and_a_warning_show_in_the_counters_on_sqlite() {
    a_verified_task_and_a_warning_show_in_the_counters(TestDatabase::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_task_and_a_warning_show_in_the_counters_on_postgres() {
    a_verified_task_and_a_warning_show_in_the_counters(TestDatabase::postgres().await).await;
}

async fn a_verified_task_and_a_warning_show_in_the_counters(db: TestDatabase) {
    let server = HttpServer::start(&db.url).await;
    let mcp = Mcp::http(&server.base).await;
    let agent = scenarios::register(&mcp, &["metrics"]).await;
    let name = agent["name"].as_str().unwrap().to_string();
    let task = mcp.call("create_task", passing_task("metrics")).await;
    mcp.call(
        "assign_task",
        json!({ "task_id": task["id"], "agent_id": agent["id"] }),
    )
    .await;
    mcp.call(
        "submit_evidence",
        json!({
            "task_id": task["id"], "agent_id": agent["id"],
            "evidence": [{ "kind": "test_results", "passed": 3, "failed": 0, "skipped": 0 }]
        }),
    )
    .await;
    let verdict = mcp
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(verdict["task_status"], "verified");
    mcp.call(
        "enforce",
        json!({ "agent_id": agent["id"], "action": "warning", "reason": "a test" }),
    )
    .await;
    mcp.invalid("no_such_tool", json!({})).await;
    let score = mcp
        .call("get_agent", json!({ "agent_id": agent["id"] }))
        .await["reliability_score"]
        .as_f64()
        .unwrap();

    let s = scrape_until(&server.base, Some(ADMIN_TOKEN), |s| {
        s.get("ares_enforcement_actions_total", &[("action", "warning")]) == Some(1.0)
    })
    .await;
    assert_eq!(tool_calls(&s, "verify_task"), Some(1.0));
    assert_eq!(tool_calls(&s, "register_agent"), Some(1.0));
    assert_eq!(
        tool_calls(&s, "unknown"),
        Some(1.0),
        "unknown names share one series"
    );
    assert_eq!(tool_calls(&s, "no_such_tool"), None);
    assert_eq!(
        s.get("ares_verifications_total", &[("outcome", "verified")]),
        Some(1.0)
    );
    assert_eq!(s.get("ares_discrepancies_total", &[]), Some(0.0));
    assert_eq!(
        s.get(
            "ares_tasks_completed_total",
            &[("agent_name", &name), ("status", "verified")]
        ),
        Some(1.0)
    );
    assert_eq!(
        s.get("ares_enforcement_actions_total", &[("action", "warning")]),
        Some(1.0)
    );
    assert_eq!(
        s.get(
            "ares_events_published_total",
            &[("event_type", "verification.completed")]
        ),
        Some(1.0)
    );
    let gauge = s
        .get("ares_agent_reliability_score", &[("agent_name", &name)])
        .expect("the agent's score");
    assert!(
        (gauge - score).abs() < 1e-9,
        "gauge {gauge} vs get_agent {score}"
    );
    assert!(
        s.get("ares_store_pool_connections", &[("state", "max")])
            .unwrap()
            >= 1.0
    );
    assert!(
        s.get("ares_store_pool_connections", &[("state", "open")])
            .is_some()
    );
    assert!(
        s.get("ares_store_pool_connections", &[("state", "idle")])
            .is_some()
    );
    assert_eq!(
        s.get("ares_mcp_sessions_open", &[("transport", "http")]),
        Some(1.0)
    );
    mcp.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_verification_counts_its_outcome_and_the_agents_rejection() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let mcp = Mcp::http(&server.base).await;
    let agent = scenarios::register(&mcp, &["metrics"]).await;
    let name = agent["name"].as_str().unwrap().to_string();
    let task = mcp.call("create_task", passing_task("metrics")).await;
    mcp.call(
        "assign_task",
        json!({ "task_id": task["id"], "agent_id": agent["id"] }),
    )
    .await;
    mcp.call(
        "submit_evidence",
        json!({
            "task_id": task["id"], "agent_id": agent["id"],
            "evidence": [{ "kind": "test_results", "passed": 0, "failed": 4, "skipped": 0 }]
        }),
    )
    .await;
    let verdict = mcp
        .call("verify_task", json!({ "task_id": task["id"] }))
        .await;
    assert_eq!(verdict["task_status"], "rejected");

    let s = scrape_until(&server.base, Some(ADMIN_TOKEN), |s| {
        s.get("ares_verifications_total", &[("outcome", "rejected")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        s.get("ares_verifications_total", &[("outcome", "rejected")]),
        Some(1.0)
    );
    assert_eq!(
        s.get("ares_verifications_total", &[("outcome", "verified")]),
        None
    );
    assert_eq!(
        s.get(
            "ares_tasks_completed_total",
            &[("agent_name", &name), ("status", "rejected")]
        ),
        Some(1.0)
    );
    mcp.close().await;
    server.stop().await;
}

#[tokio::test]
async fn metrics_without_a_valid_key_get_401() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    assert_eq!(scrape_text(&server.base, None).await.status(), 401);
    assert_eq!(
        scrape_text(&server.base, Some("ares_nope_wrong"))
            .await
            .status(),
        401
    );
    assert_eq!(
        scrape_text(&server.base, Some(ADMIN_TOKEN)).await.status(),
        200
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_counts_while_open_and_per_request_clients_open_none() {
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let open = |n: f64| {
        move |s: &Scrape| s.get("ares_mcp_sessions_open", &[("transport", "http")]) == Some(n)
    };
    let mcp = Mcp::http(&server.base).await;
    let s = scrape_until(&server.base, Some(ADMIN_TOKEN), open(1.0)).await;
    assert!(open(1.0)(&s), "one session while the client is connected");
    mcp.close().await;
    let s = scrape_until(&server.base, Some(ADMIN_TOKEN), open(0.0)).await;
    assert!(open(0.0)(&s), "none once it hung up");

    let per_request = Mcp::http_per_request(&server.base).await;
    assert_eq!(
        per_request.call("health", json!({})).await["status"],
        "healthy"
    );
    let s = scrape(&server.base, Some(ADMIN_TOKEN)).await;
    assert!(open(0.0)(&s), "a per-request client has no session");
    assert_eq!(
        tool_calls(&s, "health"),
        Some(1.0),
        "but its calls are timed"
    );
    per_request.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scores_are_seeded_from_the_store_at_start() {
    let db = TestDatabase::sqlite().await;
    let first = HttpServer::start(&db.url).await;
    let mcp = Mcp::http(&first.base).await;
    let agent = scenarios::register(&mcp, &["metrics"]).await;
    let name = agent["name"].as_str().unwrap().to_string();
    mcp.close().await;
    first.stop().await;

    let second = HttpServer::start(&db.url).await;
    // A gauge series exists (at 0) a moment before its value is set: wait for the value.
    let s = scrape_until(&second.base, Some(ADMIN_TOKEN), |s| {
        s.get("ares_agent_reliability_score", &[("agent_name", &name)])
            == agent["reliability_score"].as_f64()
    })
    .await;
    assert_eq!(
        s.get("ares_agent_reliability_score", &[("agent_name", &name)]),
        agent["reliability_score"].as_f64()
    );
    assert_eq!(
        s.get(
            "ares_events_published_total",
            &[("event_type", "agent.registered")]
        ),
        None,
        "counters start at zero on a new instance"
    );
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downstream_servers_report_up_and_down() {
    let db = TestDatabase::sqlite().await;
    let root = tempfile::tempdir().unwrap();
    let config = json!({ "mcpServers": {
        "checker": {
            "command": env!("CARGO_BIN_EXE_ares"),
            "args": ["code-checker", "--root", root.path(), "--allow", "true"],
            "role": "code_checker",
            "env": { "ARES_LOG": "warn" }
        },
        "missing": { "command": "/nonexistent/mcp-server", "role": "filesystem" }
    }});
    let config =
        ares::downstream::DownstreamConfig::parse(&config.to_string(), root.path()).unwrap();
    let store = ares::store::connect(&db.url).await.unwrap();
    let downstream =
        ares::downstream::Downstream::start(config, store.clone(), Default::default()).await;
    let ares = Arc::new(Ares::new(store).with_downstream(Some(downstream.clone())));
    let server = HttpServer::serving(ares, test_options()).await;

    let s = scrape_until(&server.base, Some(ADMIN_TOKEN), |s| {
        s.get("ares_downstream_up", &[("server", "checker")]) == Some(1.0)
    })
    .await;
    assert_eq!(
        s.get("ares_downstream_up", &[("server", "checker")]),
        Some(1.0)
    );
    assert_eq!(
        s.get("ares_downstream_up", &[("server", "missing")]),
        Some(0.0)
    );
    let latency = s
        .get("ares_downstream_latency_seconds", &[("server", "checker")])
        .expect("the checker's handshake time");
    assert!(latency > 0.0 && latency < 20.0, "{latency}");
    downstream.shutdown();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_serves_a_stdio_server_without_a_key() {
    let db = TestDatabase::sqlite().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mcp = Mcp::stdio_with(&db.url, &[("ARES_METRICS_ADDR", &addr)]).await;
    let agent = scenarios::register(&mcp, &["metrics"]).await;
    let name = agent["name"].as_str().unwrap().to_string();
    let base = format!("http://{addr}");

    let s = scrape_until(&base, None, |s| {
        s.get("ares_agent_reliability_score", &[("agent_name", &name)])
            .is_some()
    })
    .await;
    assert_eq!(tool_calls(&s, "register_agent"), Some(1.0));
    assert_eq!(
        s.get("ares_mcp_sessions_open", &[("transport", "stdio")]),
        Some(1.0)
    );
    assert_eq!(
        s.get("ares_agent_reliability_score", &[("agent_name", &name)]),
        agent["reliability_score"].as_f64()
    );
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), 200);
    let mcp_route = reqwest::get(format!("{base}/mcp")).await.unwrap();
    assert_eq!(
        mcp_route.status(),
        404,
        "the private listener serves no MCP"
    );
    mcp.close().await;
}

/// Every `ares_…` name in `text`, histogram series reduced to their metric's name.
fn referenced(text: &str, histograms: &[&str]) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bares_[a-z0-9_]+").unwrap();
    re.find_iter(text)
        .map(|m| {
            let name = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| histograms.contains(base))
                })
                .unwrap_or(name)
                .to_string()
        })
        .collect()
}

#[test]
fn the_deploy_kit_uses_only_metrics_ares_exports() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let exported: BTreeSet<String> = ares::metrics::Metrics::new()
        .names()
        .iter()
        .cloned()
        .collect();
    let histograms = ["ares_response_time_seconds"];

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/ares-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard queries: {exprs:?}");
    let in_dashboard = referenced(&exprs.join("\n"), &histograms);

    let alerts = std::fs::read_to_string(root.join("prometheus/alerts.yml")).unwrap();
    let expr_lines: String = alerts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let in_alerts = referenced(&expr_lines, &histograms);
    assert!(in_alerts.len() >= 5, "the alerts use {in_alerts:?}");

    for (file, names) in [("dashboard", &in_dashboard), ("alerts", &in_alerts)] {
        let unknown: Vec<_> = names.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "the {file} uses metrics ARES does not export: {unknown:?}"
        );
    }
    let unused: Vec<_> = exported.difference(&in_dashboard).collect();
    assert!(
        unused.is_empty(),
        "the dashboard shows nothing of {unused:?}"
    );
}

fn collect_exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", Value::String(s)) => out.push(s.clone()),
                    _ => collect_exprs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, out)),
        _ => {}
    }
}
