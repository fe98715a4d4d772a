//! At-least-once event delivery across a crash. A failpoint aborts `ares serve` right after
//! a `create_task` call commits, before its events are published and before the caller
//! hears back — the narrowest window there is. The event must still reach listeners: a
//! client that reconnects with `Last-Event-ID` gets it from the store, and a listener on
//! another instance gets it from that instance's outbox relay. Each arrives once by
//! `event_id`.

mod common;

use common::db::TestDatabase;
use common::redis::PrivateRedis;
use common::scenarios::register;
use common::sse::{EventStream, Message};
use common::{ADMIN_TOKEN, Mcp, spawn_http};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::Duration;

const CRASH_AFTER_CREATE: (&str, &str) = ("ARES_FAILPOINT", "crash-after-commit:create_task");

fn event(message: &Message) -> Value {
    serde_json::from_str(&message.data).unwrap()
}

/// Calls `create_task` on a server set to die once it commits; the caller gets no answer.
async fn create_task_and_crash(admin: &Mcp, mut server: tokio::process::Child, description: &str) {
    let args = json!({ "description": description, "required_capabilities": ["rust"],
                       "criteria": [{ "type": "tests_pass" }] });
    let Value::Object(args) = args else {
        unreachable!()
    };
    let call = admin
        .client
        .call_tool(CallToolRequestParams::new("create_task").with_arguments(args));
    // The client may wait for an answer that never comes; either way there is none.
    let answer = tokio::time::timeout(Duration::from_secs(10), call).await;
    assert!(
        !matches!(answer, Ok(Ok(_))),
        "the server died before answering: {answer:?}"
    );
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("the failpoint stops the server")
        .unwrap();
    assert!(!status.success(), "aborted, not exited cleanly: {status}");
}

/// The `task.created` events among `messages` (each test creates one task).
fn created(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .map(event)
        .filter(|e| e["event_type"] == "task.created")
        .collect()
}

/// Every message up to the stream's `ready`, which follows the replay.
async fn until_ready(stream: &mut EventStream) -> Vec<Message> {
    let mut replayed = Vec::new();
    loop {
        let message = stream.next().await;
        match message.event.as_str() {
            "ready" => return replayed,
            "message" => replayed.push(message),
            other => panic!("unexpected {other} event: {}", message.data),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_committed_just_before_a_crash_is_replayed_to_a_reconnecting_client() {
    let db = TestDatabase::sqlite().await;
    let token = ("ARES_ADMIN_TOKEN", ADMIN_TOKEN);
    let quiet = ("ARES_LOG", "warn");
    let (server, base) = spawn_http(&db.url, &[token, quiet, CRASH_AFTER_CREATE]).await;
    let mut live = EventStream::open(&base, ADMIN_TOKEN).await;
    assert_eq!(live.next().await.event, "ready");
    let admin = Mcp::http(&base).await;
    let agent = register(&admin, &["rust"]).await;
    let registered = live.next().await;
    assert_eq!(event(&registered)["event_type"], "agent.registered");
    assert_eq!(event(&registered)["agent_id"], agent["id"]);
    let last_seen = registered.id.expect("events carry their id");

    create_task_and_crash(&admin, server, "committed, then the lights went out").await;
    // The premise: the live stream ended without the event.
    while let Some(message) = live.next_within(Duration::from_secs(2)).await {
        assert_ne!(
            event(&message)["event_type"],
            "task.created",
            "published before the crash, so the failpoint missed its window"
        );
    }

    let (_server, base) = spawn_http(&db.url, &[token, quiet]).await;
    let mut resumed = EventStream::resume(&base, ADMIN_TOKEN, &last_seen).await;
    let replayed = until_ready(&mut resumed).await;
    let tasks = created(&replayed);
    assert_eq!(tasks.len(), 1, "replayed once: {tasks:?}");
    let task_id = tasks[0]["task_id"].clone();
    assert_eq!(tasks[0]["metadata"]["source"], "create_task");
    // The change the event announces is there too.
    let admin = Mcp::http(&base).await;
    let task = admin.call("get_task", json!({ "task_id": task_id })).await;
    assert_eq!(task["description"], "committed, then the lights went out");
    // Reconnecting again from the same point gets the same events, each once.
    let again = until_ready(&mut EventStream::resume(&base, ADMIN_TOKEN, &last_seen).await).await;
    let ids: Vec<_> = again.iter().map(|m| m.id.clone().unwrap()).collect();
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no event twice in one replay");
    assert!(ids.contains(&tasks[0]["event_id"].as_str().unwrap().to_string()));

    // An id the store does not know asks the client to start over.
    let mut unknown =
        EventStream::resume(&base, ADMIN_TOKEN, &uuid::Uuid::now_v7().to_string()).await;
    let first = unknown.next().await;
    println!(
        "FIGURES: delivery_replay faults=1 (abort after commit, before publish) \
         replayed_after_restart=1 duplicates=0 events_lost=0"
    );
    assert_eq!(first.event, "resync");
    assert!(first.data.contains("Last-Event-ID"), "{}", first.data);
    assert_eq!(unknown.next().await.event, "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_relays_an_event_whose_committer_crashed_before_publishing() {
    let db = TestDatabase::postgres().await;
    let redis = PrivateRedis::start().await;
    let shared = [
        ("ARES_ADMIN_TOKEN", ADMIN_TOKEN),
        ("REDIS_URL", redis.url.as_str()),
    ];
    let (_survivor, survivor_base) = spawn_http(&db.url, &shared).await;
    let mut doomed_env = shared.to_vec();
    doomed_env.push(CRASH_AFTER_CREATE);
    let (doomed, doomed_base) = spawn_http(&db.url, &doomed_env).await;

    let mut listener = EventStream::open(&survivor_base, ADMIN_TOKEN).await;
    assert_eq!(listener.next().await.event, "ready");
    let admin = Mcp::http(&doomed_base).await;
    let agent = register(&admin, &["rust"]).await;
    // Published normally: through Redis to the survivor.
    let registered = event(&listener.next().await);
    assert_eq!(registered["event_type"], "agent.registered");
    assert_eq!(registered["agent_id"], agent["id"]);

    create_task_and_crash(&admin, doomed, "relayed by the survivor").await;
    // The survivor's relay publishes what the dead instance could not, within its grace
    // period (3 s) and a tick; then it stays quiet about it.
    let mut heard = Vec::new();
    while let Some(message) = listener.next_within(Duration::from_secs(8)).await {
        heard.push(message);
        if !created(&heard).is_empty() {
            break;
        }
    }
    let relayed = created(&heard);
    assert_eq!(relayed.len(), 1, "relayed within 8 s: {heard:?}");
    assert_ne!(
        relayed[0]["metadata"]["instance"], "",
        "names its committer"
    );
    while let Some(message) = listener.next_within(Duration::from_secs(3)).await {
        assert_ne!(
            event(&message)["event_id"],
            relayed[0]["event_id"],
            "delivered twice"
        );
    }
    println!(
        "FIGURES: delivery_relay instances=2 faults=1 (committer aborted before publish) \
         relayed_by_survivor=1 duplicates=0 events_lost=0"
    );
}
