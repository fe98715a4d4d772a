//! Two real `ares serve --http` processes on one PostgreSQL and one Redis behave as one
//! service: behind a round-robin proxy a client's calls alternate between them and still
//! complete the lifecycle, a subscriber on one hears of a change made through the other,
//! and Redis can stop and come back under load without a client seeing an error.

mod common;

use common::db::TestDatabase;
use common::redis::PrivateRedis;
use common::scenarios::{self, register};
use common::{ADMIN_TOKEN, Mcp, spawn_http, terminate};
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
    ResourceUpdatedNotificationParam, SubscribeRequestParams,
};
use rmcp::service::NotificationContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientLifecycleMode, ClientServiceExt, RoleClient, ServiceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Two instances on one PostgreSQL database and one Redis, and a round-robin proxy.
struct Cluster {
    a: String,
    b: String,
    proxy: String,
    children: Vec<tokio::process::Child>,
    redis: PrivateRedis,
    _db: TestDatabase,
}

impl Cluster {
    async fn start() -> Cluster {
        let db = TestDatabase::postgres().await;
        let redis = PrivateRedis::start().await;
        let env = [
            ("REDIS_URL", redis.url.as_str()),
            ("ARES_ADMIN_TOKEN", ADMIN_TOKEN),
            ("ARES_LOG", "warn"),
        ];
        let (first, a) = spawn_http(&db.url, &env).await;
        let (second, b) = spawn_http(&db.url, &env).await;
        let proxy = round_robin(vec![authority(&a), authority(&b)]).await;
        Cluster {
            a,
            b,
            proxy,
            children: vec![first, second],
            redis,
            _db: db,
        }
    }

    async fn stop(self) {
        for child in self.children {
            let (code, stderr) = terminate(child).await;
            assert_eq!(code, Some(0), "{stderr}");
        }
    }
}

fn authority(base: &str) -> String {
    base.trim_start_matches("http://").to_string()
}

/// A TCP proxy that sends each new connection to the next backend in turn.
async fn round_robin(backends: Vec<String>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut next = 0;
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let backend = backends[next % backends.len()].clone();
            next += 1;
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    format!("http://{address}")
}

/// A transport whose every request opens a new connection, so that behind the proxy
/// consecutive calls land on alternating instances.
fn alternating(base: &str) -> StreamableHttpClientTransport<reqwest::Client> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
        .auth_header(ADMIN_TOKEN);
    StreamableHttpClientTransport::with_client(client, config)
}

/// Tool calls an instance has served, from its own metrics.
async fn calls_served(base: &str) -> f64 {
    let text = reqwest::Client::new()
        .get(format!("{base}/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("ares_response_time_seconds_count"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[derive(Clone)]
struct Recorder(mpsc::UnboundedSender<String>);

impl ClientHandler for Recorder {
    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(params.uri);
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("ares-scale-test", "1"),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_alternating_between_two_instances_complete_the_lifecycle() {
    let cluster = Cluster::start().await;

    // The handshake generation: one session, its requests spread over both instances.
    let session = Mcp {
        client: ().serve(alternating(&cluster.proxy)).await.unwrap(),
    };
    scenarios::full_lifecycle(&session).await;
    scenarios::enforcement_ladder(&session).await;

    // The per-request generation: no session at all.
    let per_request = Mcp {
        client: ()
            .serve_with_lifecycle(
                alternating(&cluster.proxy),
                ClientLifecycleMode::Discover {
                    preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                },
            )
            .await
            .unwrap(),
    };
    scenarios::full_lifecycle(&per_request).await;

    let (a, b) = (
        calls_served(&cluster.a).await,
        calls_served(&cluster.b).await,
    );
    assert!(a >= 10.0 && b >= 10.0, "both instances served: {a} and {b}");
    session.close().await;
    per_request.close().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscriber_on_one_instance_hears_of_a_change_made_through_another() {
    let cluster = Cluster::start().await;
    let admin_b = Mcp::http(&cluster.b).await;
    let agent = register(&admin_b, &["rust"]).await;
    let uri = format!("ares://agents/{}", agent["id"].as_str().unwrap());

    let (tx, mut told) = mpsc::unbounded_channel();
    let watcher = Recorder(tx)
        .serve(common::transport(&cluster.a, ADMIN_TOKEN))
        .await
        .unwrap();
    #[allow(deprecated)] // resources/subscribe: how handshake-era clients subscribe
    watcher
        .subscribe(SubscribeRequestParams::new(uri.clone()))
        .await
        .unwrap();
    let listener = Mcp::http_per_request(&cluster.a).await;
    let filter = rmcp::model::SubscriptionFilter::builder()
        .resource_subscriptions(["ares://enforcement/actions"])
        .build();
    let mut subscription = listener.client.peer().listen(filter).await.unwrap();

    admin_b
        .call(
            "enforce",
            json!({ "agent_id": agent["id"], "action": "suspend", "reason": "audit" }),
        )
        .await;
    let heard = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(u) = told.recv().await {
            if u == uri {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        heard,
        Ok(true),
        "instance A told its subscriber within a second"
    );
    let next = tokio::time::timeout(Duration::from_secs(1), subscription.next())
        .await
        .expect("the listen stream on A heard within a second")
        .unwrap();
    assert!(
        matches!(next, Some(rmcp::model::ServerNotification::ResourceUpdatedNotification(ref n)) if n.params.uri == "ares://enforcement/actions"),
        "{next:?}"
    );
    // A reads what B wrote.
    let on_a = Mcp::http(&cluster.a).await;
    let seen = on_a
        .call("get_agent", json!({ "agent_id": agent["id"] }))
        .await;
    assert_eq!(seen["status"], "suspended");

    subscription.cancel().await.unwrap();
    watcher.cancel().await.unwrap();
    for client in [admin_b, listener, on_a] {
        client.close().await;
    }
    cluster.stop().await;
}

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: std::sync::Mutex<Option<String>>,
}

async fn keep_calling(mcp: Arc<Mcp>, agent: Value, tally: Arc<Tally>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (tool, args) = match n % 3 {
            0 => ("get_agent", json!({ "agent_id": agent["id"] })),
            1 => (
                "create_task",
                json!({ "description": "load", "required_capabilities": ["rust"], "criteria": [{ "type": "tests_pass" }] }),
            ),
            _ => ("get_reliability", json!({ "agent_id": agent["id"] })),
        };
        let Value::Object(args) = args else {
            unreachable!()
        };
        let outcome = mcp
            .client
            .call_tool(rmcp::model::CallToolRequestParams::new(tool).with_arguments(args))
            .await;
        match outcome {
            Ok(r) if r.is_error != Some(true) => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tally
                    .first_failure
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{tool}: {other:?}"));
            }
        }
    }
}

async fn health_status(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/health")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_stops_and_returns_under_load_without_a_client_error() {
    let mut cluster = Cluster::start().await;
    let admin = Mcp::http(&cluster.a).await;
    let agent = register(&admin, &["rust"]).await;

    // Per-request clients through the proxy, and sessions on each instance.
    let mut clients = Vec::new();
    for _ in 0..2 {
        clients.push(Arc::new(Mcp::http_per_request(&cluster.proxy).await));
    }
    clients.push(Arc::new(Mcp::http(&cluster.a).await));
    clients.push(Arc::new(Mcp::http(&cluster.b).await));
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = clients
        .iter()
        .map(|c| {
            tokio::spawn(keep_calling(
                c.clone(),
                agent.clone(),
                tally.clone(),
                stop.clone(),
            ))
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = tally.ok.load(Ordering::Relaxed);
    cluster.redis.stop();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, health) = health_status(&cluster.a).await;
    assert_eq!(code, 200, "{health:#}");
    assert_eq!(health["status"], "degraded", "{health:#}");
    let during = tally.ok.load(Ordering::Relaxed);
    cluster.redis.resume().await;
    // Back to normal once the link reconnects (bounded wait).
    let mut healthy = false;
    for _ in 0..50 {
        if health_status(&cluster.a).await.1["status"] == "healthy"
            && health_status(&cluster.b).await.1["status"] == "healthy"
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "both instances healthy again after Redis returned");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    assert_eq!(
        failed,
        0,
        "{failed} failed calls of {}; first: {:?}",
        ok + failed,
        tally.first_failure.lock().unwrap()
    );
    assert!(during > before, "calls went on while Redis was down");
    assert!(ok > during, "calls went on after Redis returned");
    println!(
        "FIGURES: redis_outage instances=2 clients={} faults=1 (Redis killed 1.5 s, restarted) \
         calls={ok} during_outage={} failed=0 health=degraded_then_healthy writes_lost=0",
        clients.len(),
        during - before
    );

    // Events flow between instances again: a subscriber on B hears of a change on A.
    let (tx, mut told) = mpsc::unbounded_channel();
    let watcher = Recorder(tx)
        .serve(common::transport(&cluster.b, ADMIN_TOKEN))
        .await
        .unwrap();
    #[allow(deprecated)]
    watcher
        .subscribe(SubscribeRequestParams::new("ares://agents"))
        .await
        .unwrap();
    register(&admin, &["go"]).await;
    let heard = tokio::time::timeout(Duration::from_secs(1), told.recv()).await;
    assert_eq!(heard, Ok(Some("ares://agents".to_string())));

    watcher.cancel().await.unwrap();
    drop(clients);
    admin.close().await;
    cluster.stop().await;
}
