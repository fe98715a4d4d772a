//! The cache and the rate limit shared through Redis: two in-process instances on one
//! database and one private Redis (which a test may stop and resume). A read is served from
//! Redis, a write through either instance empties what it changed before it returns, Redis
//! going away costs no client an error, and N instances together allow one key's rate.

mod common;

use ares::Ares;
use ares::redis_link::RedisLink;
use ares::server::HttpOptions;
use common::db::TestDatabase;
use common::redis::PrivateRedis;
use common::{ADMIN_TOKEN, HttpServer, Mcp};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// One instance on `db` sharing `redis`, limiting each key to `rate_limit` requests a second.
async fn instance(db: &TestDatabase, redis: &PrivateRedis, rate_limit: u32) -> HttpServer {
    let store = ares::store::connect(&db.url).await.expect("open store");
    let link = RedisLink::open(&redis.url).expect("a Redis URL");
    link.ping().await.expect("the private Redis answers");
    let ares = Arc::new(Ares::new(store).with_redis(Some(link)));
    let options = HttpOptions {
        rate_limit,
        ..common::test_options()
    };
    HttpServer::serving(ares, options).await
}

/// A connection of the test's own, to look inside Redis.
async fn inspect(redis: &PrivateRedis) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the private Redis")
}

async fn exists(redis: &PrivateRedis, key: &str) -> bool {
    let mut connection = inspect(redis).await;
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(&mut connection)
        .await
        .unwrap()
        == 1
}

async fn register(mcp: &Mcp, name: &str) -> String {
    let agent = mcp
        .call(
            "register_agent",
            json!({ "name": name, "capabilities": ["ops"] }),
        )
        .await;
    agent["id"].as_str().unwrap().to_string()
}

async fn reliability(mcp: &Mcp, agent: &str) -> Value {
    mcp.call("get_reliability", json!({ "agent_id": agent }))
        .await
}

async fn give_task(mcp: &Mcp, agent: &str) -> Value {
    mcp.call(
        "create_task",
        json!({
            "description": "rotate the logs",
            "required_capabilities": ["ops"],
            "criteria": [{ "type": "evidence_present", "kind": "log" }],
            "agent_id": agent,
        }),
    )
    .await
}

async fn health(base: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{base}/health")).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn redis_status(health: &Value) -> String {
    health["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"].as_str().unwrap().starts_with("redis"))
        .map(|d| d["status"].as_str().unwrap().to_string())
        .expect("health lists Redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_is_cached_in_redis_and_a_write_through_another_instance_empties_it() {
    let db = TestDatabase::sqlite().await;
    let redis = PrivateRedis::start().await;
    let (a, b) = (
        instance(&db, &redis, 100_000).await,
        instance(&db, &redis, 100_000).await,
    );
    let (via_a, via_b) = (Mcp::http(&a.base).await, Mcp::http(&b.base).await);
    let agent = register(&via_a, "cached-agent").await;
    let key = format!("ares:cache:reliability:{agent}:all");

    let first = reliability(&via_a, &agent).await;
    assert!(
        exists(&redis, &key).await,
        "get_reliability left {key} in Redis"
    );
    let again = reliability(&via_b, &agent).await;
    assert_eq!(
        again["computed_at"], first["computed_at"],
        "the other instance is served the same computation from Redis"
    );

    give_task(&via_b, &agent).await;
    assert!(
        !exists(&redis, &key).await,
        "the write emptied the entry before it returned"
    );
    let after = reliability(&via_a, &agent).await;
    assert_eq!(first["tasks_assigned"], 0);
    assert_eq!(
        after["tasks_assigned"], 1,
        "the read sees the write: {after}"
    );
    assert_ne!(after["computed_at"], first["computed_at"]);

    // The agent's record too: read (and cached) through one, changed through the other.
    let record = format!("ares:cache:agent:{agent}");
    via_a.call("get_agent", json!({ "agent_id": agent })).await;
    assert!(exists(&redis, &record).await);
    via_b
        .call(
            "update_agent",
            json!({ "agent_id": agent, "capabilities": ["ops", "db"] }),
        )
        .await;
    let updated = via_a.call("get_agent", json!({ "agent_id": agent })).await;
    assert_eq!(updated["capabilities"], json!(["ops", "db"]));

    via_a.close().await;
    via_b.close().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_every_call_still_succeeds_and_the_cache_returns_with_it() {
    let db = TestDatabase::sqlite().await;
    let mut redis = PrivateRedis::start().await;
    let (a, b) = (
        instance(&db, &redis, 100_000).await,
        instance(&db, &redis, 100_000).await,
    );
    let (via_a, via_b) = (Mcp::http(&a.base).await, Mcp::http(&b.base).await);
    let agent = register(&via_a, "steady-agent").await;
    let before = reliability(&via_a, &agent).await;
    let (code, healthy) = health(&a.base).await;
    assert_eq!((code, healthy["status"].as_str()), (200, Some("healthy")));

    redis.stop();
    let started = std::time::Instant::now();
    give_task(&via_b, &agent).await;
    let during = reliability(&via_a, &agent).await;
    assert_eq!(
        during["tasks_assigned"], 1,
        "with Redis gone the database answers, and nothing stale: {during}"
    );
    assert_ne!(during["computed_at"], before["computed_at"]);
    via_a.call("get_agent", json!({ "agent_id": agent })).await;
    register(&via_b, "registered-during-the-outage").await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "calls do not wait on the missing Redis ({:?})",
        started.elapsed()
    );
    let (code, degraded) = health(&a.base).await;
    assert_eq!(code, 200, "serving without Redis: {degraded}");
    assert_eq!(degraded["status"], "degraded");
    assert_eq!(redis_status(&degraded), "down");

    redis.resume().await;
    let mut back = Value::Null;
    for _ in 0..50 {
        back = health(&a.base).await.1;
        if back["status"] == "healthy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(back["status"], "healthy", "{back}");
    assert_eq!(redis_status(&back), "ok");

    // The instance that wrote during the outage reads the cache again once Redis has taken
    // its missed invalidations (retried in the background); the other at once.
    let key = format!("ares:cache:reliability:{agent}:all");
    let mut cached = false;
    for _ in 0..50 {
        reliability(&via_b, &agent).await;
        if exists(&redis, &key).await {
            cached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cached, "the cache is used again once Redis is back");
    let served = reliability(&via_a, &agent).await;
    let again = reliability(&via_b, &agent).await;
    assert_eq!(served["computed_at"], again["computed_at"]);
    assert_eq!(served["tasks_assigned"], 1);

    via_a.close().await;
    via_b.close().await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_keeps_a_read_that_a_write_overtook_and_keeps_the_rest_for_their_ttl() {
    use ares::cache::{Cache, Entry};
    let redis = PrivateRedis::start().await;
    let link = RedisLink::open(&redis.url).unwrap();
    link.ping().await.unwrap();
    let cache = Cache::shared(link);
    let now = chrono::Utc::now();
    let (raced, calm) = (
        Entry::Agent(uuid::Uuid::now_v7()),
        Entry::Reliability(uuid::Uuid::now_v7(), ares::reliability::Window::Day),
    );

    let read = cache
        .get_or_load(raced, now, || async {
            // A write commits and empties the entry while this read is in flight.
            cache.invalidate(&[raced]).await;
            Ok("as it was before the write".to_string())
        })
        .await
        .unwrap();
    assert_eq!(read, "as it was before the write");
    assert!(
        !cache.holds(raced).await,
        "the overtaken read was not stored"
    );
    assert!(!exists(&redis, &raced.key()).await);

    cache
        .get_or_load(calm, now, || async { Ok(0.75) })
        .await
        .unwrap();
    assert!(exists(&redis, &calm.key()).await);
    let mut connection = inspect(&redis).await;
    let ttl: i64 = redis::cmd("TTL")
        .arg(calm.key())
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(
        (295..=300).contains(&ttl),
        "reliability is kept 5 minutes: {ttl} s left"
    );
    let served = cache
        .get_or_load(calm, now, || async { Ok(0.1) })
        .await
        .unwrap();
    assert_eq!(served, 0.75, "served from Redis, not loaded again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_taken_back_from_its_agent_empties_that_agents_cached_figures() {
    // In process this time (no Redis): the same invalidation, the other cache.
    let db = TestDatabase::sqlite().await;
    let server = HttpServer::start(&db.url).await;
    let mcp = Mcp::http(&server.base).await;
    let agent = register(&mcp, "holder").await;
    let task = give_task(&mcp, &agent).await;
    let held = reliability(&mcp, &agent).await;
    assert_eq!(held["tasks_assigned"], 1);

    // The rollback's batch names the task, no longer the agent: the agent is found as the
    // task's previous holder.
    mcp.call(
        "rollback_task",
        json!({ "task_id": task["id"], "reason": "wrong host" }),
    )
    .await;
    let after = reliability(&mcp, &agent).await;
    assert_eq!(after["tasks_assigned"], 0, "{after}");
    assert_ne!(after["computed_at"], held["computed_at"]);

    mcp.close().await;
    server.stop().await;
}

/// What a burst of requests met.
struct Burst {
    passed: usize,
    /// The Retry-After of each refused request.
    waits: Vec<u64>,
    /// The most that could pass through one instance at 5 a second with bursts of 10, over
    /// the time the burst took (tokens refill meanwhile).
    one_budget: usize,
}

/// Sends `n` requests with the admin key, alternating between the servers.
async fn hammer(servers: &[&str], n: usize) -> Burst {
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let (mut passed, mut waits) = (0, Vec::new());
    for i in 0..n {
        let response = client
            .get(format!("{}/metrics", servers[i % servers.len()]))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => passed += 1,
            429 => waits.push(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap(),
            ),
            other => panic!("unexpected status {other}"),
        }
    }
    let refilled = (started.elapsed().as_secs_f64() * 5.0).ceil() as usize;
    Burst {
        passed,
        waits,
        one_budget: 10 + refilled,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_sharing_redis_share_one_rate_limit_and_fall_back_to_their_own() {
    let db = TestDatabase::sqlite().await;
    let mut redis = PrivateRedis::start().await;
    // 5 a second with bursts of 10, as one service.
    let (a, b) = (
        instance(&db, &redis, 5).await,
        instance(&db, &redis, 5).await,
    );
    let servers = [a.base.as_str(), b.base.as_str()];

    let shared = hammer(&servers, 30).await;
    assert!(
        shared.passed >= 10 && shared.passed <= shared.one_budget && shared.passed < 20,
        "together the two allow one budget ({}), not two: {} passed",
        shared.one_budget,
        shared.passed
    );
    assert_eq!(shared.waits.len(), 30 - shared.passed);
    assert!(shared.waits.iter().all(|w| *w >= 1), "{:?}", shared.waits);

    // Without Redis each instance counts for itself: a budget each.
    redis.stop();
    let own = hammer(&servers, 40).await;
    assert!(
        own.passed >= 20 && own.passed <= 2 * own.one_budget,
        "each instance falls back to its own limit ({} each): {} passed",
        own.one_budget,
        own.passed
    );
    assert!(!own.waits.is_empty(), "each still limits");

    a.stop().await;
    b.stop().await;
}
